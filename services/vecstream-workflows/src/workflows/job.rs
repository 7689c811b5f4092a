//! What the reviewed jobs ([`super::ReindexWorkflow`], [`super::FineTuneWorkflow`]) share,
//! written once: the state behind the `review` signal and the `progress` query, the wait for
//! the review, and the phase lineage.

use std::time::Duration;

use temporalio_sdk::{WorkflowContext, WorkflowResult};
use vecstream_core::EventType;

use super::{light, now_ms, retry};
use crate::activities::{JobActivities, PhaseEvent, ReviewCheck, ReviewCheckInput};
use crate::signing::Purpose;
use crate::types::{JobProgress, RefusedReview, ReviewDecision, ReviewOutcome};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::LocalActivityOptions;

/// Reviews are signed and checked by the `review.check` activity (see [`check_signed`]).
const SIGNED_REVIEW_PATCH: &str = "signed-review-v2";

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

/// A signal's payload as JSON. Signals take raw payloads: one sent without a payload, or in
/// another encoding, would otherwise fail to decode before any handler runs, and fail every
/// workflow task of the run from then on (the signal stays in its history). Here it reads
/// as `null` and is refused (or ignored) like any other malformed request.
pub(crate) fn signal_json(raw: &RawValue) -> serde_json::Value {
    raw.payloads
        .first()
        .and_then(|p| serde_json::from_slice(&p.data).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The id of a review opened now: unique per run and per opening, so a decision signed for
/// another review (or an earlier run of the same workflow id) does not match.
pub(crate) fn new_review_id<W>(ctx: &WorkflowContext<W>) -> String {
    format!("{}/{}", ctx.run_id(), ctx.history_length())
}

/// What [`check_signed`] made of a signed request.
pub(crate) enum Checked {
    /// Replaying a run that took this request unsigned (before signed requests): the
    /// decision as it was sent, if it parses.
    Legacy(Option<ReviewDecision>),
    /// Signed by a trusted key, for this job and `review_id`.
    Verified(ReviewDecision),
    /// Refused, and recorded in `progress.refused_reviews`: the stable code and the reason.
    Refused(String, String),
}

/// Checks a signed `purpose` request bound to `review_id` with the `review.check` activity
/// (signature, trusted key, this job, `review_id`, four-eyes for approvals); a refusal is
/// recorded in `progress.refused_reviews`. Each request received gets its own patch marker
/// `<patch>-<n>`: a request that a run took unsigned before (no marker in its history)
/// replays as it was taken, while every request received live is checked, even in a run
/// whose earlier requests were unsigned (one patch id for all would be answered "no" for
/// the whole run once an old request replayed).
pub(crate) async fn check_signed<W: Reviewed>(
    ctx: &WorkflowContext<W>,
    request: serde_json::Value,
    purpose: Purpose,
    review_id: &str,
    patch: &str,
) -> Checked {
    let n = ctx.state_mut(|s| {
        let gate = s.job_progress_mut().gate_mut();
        gate.reviews_received = gate.reviews_received.saturating_add(1);
        gate.reviews_received
    });
    if !ctx.patched(&format!("{patch}-{n}")) {
        return Checked::Legacy(serde_json::from_value(request).ok());
    }
    let (started_by, started_at_ms) = ctx.state(|s| {
        let g = s.job_progress().gate();
        (g.started_by.clone(), g.started_at_ms)
    });
    // What needs no key is refused here, without an activity (a flood of junk requests
    // costs the history as little as possible).
    let checked = match crate::signing::signed_of(&request) {
        Err(refusal) => Ok(ReviewCheck::Refused {
            code: refusal.code().to_owned(),
            reason: refusal.to_string(),
        }),
        // A local activity: it runs in this worker, and nobody outside it can complete it
        // (a normal activity can be completed by id by any client allowed to).
        Ok(_) => {
            ctx.execute_local_activity(
                JobActivities::check_review,
                ReviewCheckInput {
                    workflow_id: ctx.workflow_id().to_owned(),
                    review_id: review_id.to_owned(),
                    purpose,
                    request,
                    started_by,
                    started_at_ms,
                },
                LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(30))
                    .retry_policy(retry(3))
                    .build(),
            )
            .await
        }
    };
    let (code, reason) = match checked {
        Ok(ReviewCheck::Accepted(decision)) => return Checked::Verified(decision),
        Ok(ReviewCheck::Refused { code, reason }) => (code, reason),
        Err(e) => (
            "check_failed".to_owned(),
            format!("the request could not be checked: {e}"),
        ),
    };
    let time_ms = now_ms(ctx.workflow_time());
    ctx.state_mut(|s| {
        s.job_progress_mut().gate_mut().refuse(RefusedReview {
            code: code.clone(),
            reason: reason.clone(),
            time_ms,
        })
    });
    Checked::Refused(code, reason)
}

/// The body of every job's `review` update and signal: checked by [`check_signed`]; a
/// verified decision is taken while the job awaits the review it was signed for and none
/// was taken (the first one wins).
pub(crate) async fn receive_review<W: Reviewed>(
    ctx: &WorkflowContext<W>,
    request: serde_json::Value,
) -> ReviewOutcome {
    // A signal (updates are refused by the validator) when no review is open: answered
    // without a check, and not a refusal of anyone's key.
    if let Err(e) = ctx.state(|s| s.review_open()) {
        return outcome(ctx, "not_taken", e.to_string());
    }
    let review_id = ctx.state(|s| s.job_progress().gate().review_id.clone());
    let decision = match check_signed(
        ctx,
        request,
        Purpose::Review,
        &review_id,
        SIGNED_REVIEW_PATCH,
    )
    .await
    {
        Checked::Legacy(d) => {
            // Replaying a run that took unsigned reviews: take it as it did then.
            if let Some(d) = d {
                ctx.state_mut(|s| s.job_progress_mut().take_review(d));
            }
            let taken = progress(ctx).review().is_some();
            return outcome(
                ctx,
                if taken { "accepted" } else { "legacy" },
                String::new(),
            );
        }
        Checked::Refused(code, reason) => return outcome(ctx, &code, reason),
        Checked::Verified(d) => d,
    };
    let taken = ctx.state_mut(|s| {
        let p = s.job_progress_mut();
        p.gate().review_id == review_id && p.take_review(decision)
    });
    if taken {
        outcome(ctx, "accepted", String::new())
    } else {
        // Verified, but another decision came first or the review closed meanwhile: not a
        // refusal of the reviewer, so not recorded as one.
        outcome(
            ctx,
            "not_taken",
            "the job is no longer awaiting this review".into(),
        )
    }
}

/// The answer to a signed request: `code` is `accepted`, `not_taken` or a refusal's.
pub(crate) fn outcome<W: Reviewed>(
    ctx: &WorkflowContext<W>,
    code: &str,
    reason: String,
) -> ReviewOutcome {
    let p = progress(ctx);
    ReviewOutcome {
        accepted: code == "accepted",
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
        run_id: p
            .lineage_run_id()
            .unwrap_or_else(|| ctx.run_id().to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use temporalio_common::protos::temporal::api::common::v1::Payload;

    #[test]
    fn any_signal_payload_reads_as_json_or_null() {
        let payload = |data: &[u8]| Payload {
            data: data.to_vec(),
            ..Default::default()
        };
        assert_eq!(signal_json(&RawValue::new(vec![])), serde_json::Value::Null);
        assert_eq!(
            signal_json(&RawValue::new(vec![payload(b"\x00\xffnot json")])),
            serde_json::Value::Null
        );
        assert_eq!(
            signal_json(&RawValue::new(vec![payload(br#"{"approve": true}"#)])),
            serde_json::json!({"approve": true})
        );
    }
}
