//! What the reviewed jobs ([`super::ReindexWorkflow`], [`super::FineTuneWorkflow`]) share,
//! written once: the state behind the `review` signal and the `progress` query, the wait for
//! the review, and the phase lineage.

use std::time::Duration;

use temporalio_sdk::{WorkflowContext, WorkflowResult};
use vecstream_core::EventType;

use super::{light, now_ms};
use crate::activities::{JobActivities, PhaseEvent};
use crate::types::{JobProgress, ReviewDecision};

/// A workflow whose state is a reviewed job's progress.
pub(crate) trait Reviewed: 'static {
    type Progress: JobProgress;
    fn job_progress(&self) -> &Self::Progress;
    fn job_progress_mut(&mut self) -> &mut Self::Progress;

    /// The body of every job's `review` signal (see [`JobProgress::take_review`]).
    fn on_review(&mut self, decision: ReviewDecision) {
        // Ignored unless awaiting review and undecided; the sender sees it in `progress`.
        self.job_progress_mut().take_review(decision);
    }
}

/// The progress now.
pub(crate) fn progress<W: Reviewed>(ctx: &WorkflowContext<W>) -> W::Progress {
    ctx.state(|s| s.job_progress().clone())
}

/// Changes the progress (wakes conditions waiting on it).
pub(crate) fn update<W: Reviewed>(ctx: &WorkflowContext<W>, f: impl FnOnce(&mut W::Progress)) {
    ctx.state_mut(|s| f(s.job_progress_mut()));
}

/// The review deadline of a review opened now, `timeout_secs` long.
pub(crate) fn review_deadline<W>(ctx: &WorkflowContext<W>, timeout_secs: u64) -> i64 {
    now_ms(ctx.workflow_time()).saturating_add(
        i64::try_from(timeout_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000),
    )
}

/// Waits up to `wait` for a review decision; true when one came.
pub(crate) async fn wait_for_review<W: Reviewed>(
    ctx: &WorkflowContext<W>,
    wait: Duration,
) -> WorkflowResult<bool> {
    let reviewed = temporalio_sdk::workflows::select! {
        r = ctx.wait_condition(|s| s.job_progress().review().is_some()) => { r?; true }
        _ = ctx.timer(wait) => false,
    };
    Ok(reviewed)
}

/// Publishes one phase event of the job to the lineage topic (an activity).
pub(crate) async fn lineage<W: Reviewed>(
    ctx: &WorkflowContext<W>,
    event_type: EventType,
    phase: &str,
    error: Option<String>,
) -> WorkflowResult<()> {
    let p = progress(ctx);
    let event = PhaseEvent {
        workflow_id: ctx.workflow_id().to_owned(),
        run_id: ctx.run_id().to_owned(),
        job: W::Progress::JOB.into(),
        event_type,
        phase: phase.into(),
        model_id: p.lineage_model_id(),
        collection: p.lineage_collection(),
        time_ms: now_ms(ctx.workflow_time()),
        error,
    };
    ctx.execute_activity(JobActivities::lineage, event, light())
        .await?;
    Ok(())
}
