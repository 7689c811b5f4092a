//! The client side of the `review` update: which kind of job a workflow id names (by its
//! workflow type, as Temporal describes the execution), its review state, and the signed
//! decision sent through that workflow's own typed handle.

use sha2::{Digest, Sha256};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionStatus,
    WorkflowGetResultOptions, WorkflowQueryOptions,
};

use crate::TemporalError;
use crate::signing::SignedStatement;
use crate::types::{JobProgress, ReviewDecision, ReviewOutcome};
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
    /// The open (or last) review's id: what a signed decision names.
    pub review_id: String,
}

impl ReviewState {
    fn of<P: JobProgress>(p: &P) -> Self {
        Self {
            phase: p.phase_name(),
            awaiting_review: p.awaiting_review(),
            review: p.review().cloned(),
            review_id: p.gate().review_id.clone(),
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

/// Sends a signed decision as the job's `review` update and returns the job's answer. The
/// update id is derived from the signature, so sending the same signed decision again is
/// answered with the first answer.
pub async fn submit_review(
    client: &Client,
    job: ReviewedJob,
    id: &str,
    signed: &SignedStatement,
) -> Result<ReviewOutcome, TemporalError> {
    let failed = |e| workflow_error(id, format!("the review update: {e}"));
    let (payload, options) = update_of(signed).map_err(failed)?;
    match job {
        ReviewedJob::Reindex => client
            .get_workflow_handle::<ReindexWorkflow>(id)
            .execute_update(ReindexWorkflow::review_update, payload, options)
            .await
            .map_err(|e| failed(update_error(e))),
        ReviewedJob::FineTune => client
            .get_workflow_handle::<FineTuneWorkflow>(id)
            .execute_update(FineTuneWorkflow::review_update, payload, options)
            .await
            .map_err(|e| failed(update_error(e))),
    }
}

/// Sends a signed rollback as the reindex's `rollback` update and returns its answer.
pub async fn submit_rollback(
    client: &Client,
    id: &str,
    signed: &SignedStatement,
) -> Result<ReviewOutcome, TemporalError> {
    let failed = |e| workflow_error(id, format!("the rollback update: {e}"));
    let (payload, options) = update_of(signed).map_err(failed)?;
    client
        .get_workflow_handle::<ReindexWorkflow>(id)
        .execute_update(ReindexWorkflow::rollback_update, payload, options)
        .await
        .map_err(|e| failed(update_error(e)))
}

/// The payload of a signed update, and its options: the update id is derived from the
/// signature, so the same signed request sent again is answered with the first answer.
fn update_of(
    signed: &SignedStatement,
) -> Result<(serde_json::Value, WorkflowExecuteUpdateOptions), String> {
    let payload = serde_json::to_value(signed).map_err(|e| e.to_string())?;
    let digest = Sha256::digest(signed.signature.as_bytes());
    let options = WorkflowExecuteUpdateOptions::builder()
        .update_id(format!("signed-{}", hex::encode(&digest[..12])))
        .build();
    Ok((payload, options))
}

/// The words of an update error: a validator's refusal carries the job's reason.
fn update_error(e: temporalio_client::errors::WorkflowUpdateError) -> String {
    match e {
        temporalio_client::errors::WorkflowUpdateError::Failed(f) => f.message.clone(),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
