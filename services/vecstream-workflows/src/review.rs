//! The client side of the `review` signal: which kind of job a workflow id names (by its
//! workflow type, as Temporal describes the execution), its review state, and the signal
//! sent through that workflow's own typed handle.

use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowGetResultOptions,
    WorkflowQueryOptions, WorkflowSignalOptions,
};

use crate::TemporalError;
use crate::types::{JobProgress, ReviewDecision};
use crate::{FineTuneWorkflow, ReindexWorkflow};

/// A job that takes the `review` signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewedJob {
    /// `ReindexWorkflow`.
    Reindex,
    /// `FineTuneWorkflow`.
    FineTune,
}

impl ReviewedJob {
    /// The job of a workflow type name, if it takes reviews.
    pub fn of_workflow_type(name: &str) -> Option<Self> {
        match name {
            "ReindexWorkflow" => Some(Self::Reindex),
            "FineTuneWorkflow" => Some(Self::FineTune),
            _ => None,
        }
    }

    /// The CLI command of the job (`vecstream <command> status`).
    pub fn command(self) -> &'static str {
        match self {
            Self::Reindex => "reindex",
            Self::FineTune => "finetune",
        }
    }
}

/// A workflow execution as far as the review cares.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The workflow type, as Temporal knows it.
    pub workflow_type: String,
    pub status: WorkflowExecutionStatus,
}

impl Execution {
    pub fn is_running(&self) -> bool {
        self.status == WorkflowExecutionStatus::Running
    }
}

/// The review state of a job's `progress`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewState {
    pub phase: &'static str,
    pub awaiting_review: bool,
    pub review: Option<ReviewDecision>,
    /// The job ended (approved and applied, or rejected).
    pub finished: bool,
}

impl ReviewState {
    fn of<P: JobProgress>(p: &P) -> Self {
        Self {
            phase: p.phase_name(),
            awaiting_review: p.awaiting_review(),
            review: p.review().cloned(),
            finished: p.finished(),
        }
    }
}

fn workflow_error(id: &str, e: impl std::fmt::Display) -> TemporalError {
    TemporalError::Workflow {
        workflow_id: id.to_owned(),
        message: e.to_string(),
    }
}

/// Describes the latest run of `id`: its workflow type and status.
pub async fn describe_execution(client: &Client, id: &str) -> Result<Execution, TemporalError> {
    let d = client
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .map_err(|e| workflow_error(id, format!("describing the execution: {e}")))?;
    Ok(Execution {
        workflow_type: d.workflow_type().to_owned(),
        status: d.status(),
    })
}

/// Why the latest run of `id` did not complete (its failure, cancellation or
/// termination), or `None` when it completed or still runs.
pub async fn failure_of(client: &Client, id: &str) -> Option<String> {
    client
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(id)
        .get_result(WorkflowGetResultOptions::default())
        .await
        .err()
        .map(|e| e.to_string())
}

/// The review state of job `id`, by its own `progress` query.
pub async fn review_state(
    client: &Client,
    job: ReviewedJob,
    id: &str,
) -> Result<ReviewState, TemporalError> {
    let query = |e| workflow_error(id, format!("querying the progress: {e}"));
    match job {
        ReviewedJob::Reindex => client
            .get_workflow_handle::<ReindexWorkflow>(id)
            .query(
                ReindexWorkflow::progress,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map(|p| ReviewState::of(&p))
            .map_err(query),
        ReviewedJob::FineTune => client
            .get_workflow_handle::<FineTuneWorkflow>(id)
            .query(
                FineTuneWorkflow::progress,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map(|p| ReviewState::of(&p))
            .map_err(query),
    }
}

/// Sends the `review` signal through the job's own typed handle.
pub async fn send_review(
    client: &Client,
    job: ReviewedJob,
    id: &str,
    decision: ReviewDecision,
) -> Result<(), TemporalError> {
    let signal = |e| workflow_error(id, format!("signalling the review: {e}"));
    match job {
        ReviewedJob::Reindex => client
            .get_workflow_handle::<ReindexWorkflow>(id)
            .signal(
                ReindexWorkflow::review,
                decision,
                WorkflowSignalOptions::default(),
            )
            .await
            .map_err(signal),
        ReviewedJob::FineTune => client
            .get_workflow_handle::<FineTuneWorkflow>(id)
            .signal(
                FineTuneWorkflow::review,
                decision,
                WorkflowSignalOptions::default(),
            )
            .await
            .map_err(signal),
    }
}

/// The review a closed job ended with, from its result (`None`: none, or it did not
/// complete).
pub async fn final_review(
    client: &Client,
    job: ReviewedJob,
    id: &str,
) -> Result<Option<ReviewDecision>, TemporalError> {
    let result = |e| workflow_error(id, format!("reading the result: {e}"));
    match job {
        ReviewedJob::Reindex => client
            .get_workflow_handle::<ReindexWorkflow>(id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map(|r| r.review)
            .map_err(result),
        ReviewedJob::FineTune => client
            .get_workflow_handle::<FineTuneWorkflow>(id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map(|r| r.review)
            .map_err(result),
    }
}

/// What became of a decision sent to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The job took this decision.
    Accepted(ReviewState),
    /// The job took another decision first (another reviewer).
    Superseded(ReviewState),
    /// The job ignored it: it was not awaiting review (or closed without this decision).
    Ignored(ReviewState),
    /// No answer in time: the job still awaits review (no worker runs it?).
    Pending(ReviewState),
}

/// The verdict that a review state shows for `decision`, once it shows one; `None` while the
/// job has not taken any decision yet and still awaits one.
pub fn verdict_of(state: &ReviewState, decision: &ReviewDecision) -> Option<Verdict> {
    match &state.review {
        Some(r) if r == decision => Some(Verdict::Accepted(state.clone())),
        Some(_) => Some(Verdict::Superseded(state.clone())),
        None if state.awaiting_review => None,
        None => Some(Verdict::Ignored(state.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(approve: bool, reviewer: &str) -> ReviewDecision {
        ReviewDecision {
            approve,
            reviewer: reviewer.into(),
            comment: String::new(),
        }
    }

    fn state(awaiting: bool, review: Option<ReviewDecision>) -> ReviewState {
        ReviewState {
            phase: "awaiting_review",
            awaiting_review: awaiting,
            review,
            finished: false,
        }
    }

    #[test]
    fn job_kinds_come_from_the_workflow_type() {
        assert_eq!(
            ReviewedJob::of_workflow_type("ReindexWorkflow"),
            Some(ReviewedJob::Reindex)
        );
        assert_eq!(
            ReviewedJob::of_workflow_type("FineTuneWorkflow"),
            Some(ReviewedJob::FineTune)
        );
        assert_eq!(ReviewedJob::of_workflow_type("EvaluateWorkflow"), None);
    }

    #[test]
    fn a_verdict_shows_once_the_job_decided() {
        let mine = decision(true, "ana");
        assert_eq!(verdict_of(&state(true, None), &mine), None);
        assert!(matches!(
            verdict_of(&state(false, Some(mine.clone())), &mine),
            Some(Verdict::Accepted(_))
        ));
        assert!(matches!(
            verdict_of(&state(true, Some(decision(false, "bo"))), &mine),
            Some(Verdict::Superseded(_))
        ));
        assert!(matches!(
            verdict_of(&state(false, None), &mine),
            Some(Verdict::Ignored(_))
        ));
    }
}
