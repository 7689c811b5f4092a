//! What the reviewed jobs ([`super::ReindexWorkflow`], [`super::FineTuneWorkflow`]) share,
//! written once: the state behind the `review` signal and the `progress` query, the wait for
//! the review, and the phase lineage.

use std::time::Duration;

use temporalio_sdk::{WorkflowContext, WorkflowResult};
use vecstream_core::EventType;

use super::{light, now_ms};
use crate::activities::{JobActivities, PhaseEvent, ReviewCheck, ReviewCheckInput};
use crate::types::{JobProgress, RefusedReview, ReviewDecision, ReviewOutcome};

/// Reviews are signed and checked by the `review.check` activity. Runs whose history took an
/// unsigned `review` before this (no marker) replay it as they took it.
const SIGNED_REVIEW_PATCH: &str = "signed-review-v1";

/// A workflow whose state is a reviewed job's progress.
pub(crate) trait Reviewed: 'static {
    type Progress: JobProgress;
    fn job_progress(&self) -> &Self::Progress;
    fn job_progress_mut(&mut self) -> &mut Self::Progress;

    /// The `review` update's validator: a job that awaits no review refuses the update
    /// before it is recorded, so the sender learns it at once.
    fn review_open(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let p = self.job_progress();
        match p.review() {
            _ if !p.awaiting_review() => {
                Err(format!("not awaiting review (phase {})", p.phase_name()).into())
            }
            Some(r) => Err(format!(
                "already {} by {}",
                if r.approve { "approved" } else { "rejected" },
                r.reviewer
            )
            .into()),
            None => Ok(()),
        }
    }
}

/// The id of a review opened now: unique per run and per opening, so a decision signed for
/// another review (or an earlier run of the same workflow id) does not match.
pub(crate) fn new_review_id<W>(ctx: &WorkflowContext<W>) -> String {
    format!("{}/{}", ctx.run_id(), ctx.history_length())
}

/// The body of every job's `review` update and signal: the payload is checked by the
/// `review.check` activity (signature, trusted key, this job and review, four-eyes); a
/// verified decision is taken while the job awaits review and none was taken (the first
/// one wins); a refused one is recorded in `progress.refused_reviews`.
pub(crate) async fn receive_review<W: Reviewed>(
    ctx: &WorkflowContext<W>,
    request: serde_json::Value,
) -> ReviewOutcome {
    if !ctx.patched(SIGNED_REVIEW_PATCH) {
        // Replaying a run that took unsigned reviews: take it as it did then.
        let legacy: Option<ReviewDecision> = serde_json::from_value(request).ok();
        if let Some(d) = legacy {
            ctx.state_mut(|s| s.job_progress_mut().take_review(d));
        }
        return outcome(ctx, "legacy", String::new());
    }
    let (review_id, started_by) = ctx.state(|s| {
        let g = s.job_progress().gate();
        (g.review_id.clone(), g.started_by.clone())
    });
    let checked = ctx
        .execute_activity(
            JobActivities::check_review,
            ReviewCheckInput {
                workflow_id: ctx.workflow_id().to_owned(),
                review_id,
                request,
                started_by,
            },
            light(),
        )
        .await;
    let time_ms = now_ms(ctx.workflow_time());
    let (code, reason) = match checked {
        Ok(ReviewCheck::Accepted(decision)) => {
            if ctx.state_mut(|s| s.job_progress_mut().take_review(decision)) {
                return outcome(ctx, "accepted", String::new());
            }
            // Verified, but another decision came first or the review closed meanwhile:
            // not a refusal of the reviewer, so not recorded as one.
            return outcome(
                ctx,
                "not_taken",
                "the job is no longer awaiting this review".into(),
            );
        }
        Ok(ReviewCheck::Refused { code, reason }) => (code, reason),
        Err(e) => (
            "check_failed".to_owned(),
            format!("the review could not be checked: {e}"),
        ),
    };
    ctx.state_mut(|s| {
        s.job_progress_mut().gate_mut().refuse(RefusedReview {
            code: code.clone(),
            reason: reason.clone(),
            time_ms,
        })
    });
    outcome(ctx, &code, reason)
}

fn outcome<W: Reviewed>(ctx: &WorkflowContext<W>, code: &str, reason: String) -> ReviewOutcome {
    let p = progress(ctx);
    ReviewOutcome {
        accepted: code == "accepted" || (code == "legacy" && p.review().is_some()),
        code: code.to_owned(),
        reason,
        phase: p.phase_name().to_owned(),
        review: p.review().cloned(),
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
        // The events that follow from a decision name who took it.
        review: p.review().cloned().filter(|_| {
            matches!(
                phase,
                "approved" | "rollback_window" | "rejected" | "registered"
            )
        }),
    };
    ctx.execute_activity(JobActivities::lineage, event, light())
        .await?;
    Ok(())
}
