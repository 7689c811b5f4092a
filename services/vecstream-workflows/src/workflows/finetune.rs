//! [`FineTuneWorkflow`]: validate, embed, train, stage, evaluate, await review, register.

use std::time::Duration;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ChildWorkflowOptions, WorkflowContext, WorkflowContextView, WorkflowResult};
use vecstream_core::EventType;

use super::job::{
    Reviewed, lineage, new_review_id, progress, receive_review, review_deadline, signal_json,
    update, wait_for_review,
};
use super::{EvaluateWorkflow, heavy, light, now_ms, training};
use crate::finetune::{FineTuneActivities, FineTuneStep, RegisterInput};
use crate::types::{
    EvalSpec, EvaluateInput, FineTuneInput, FineTunePhase, FineTuneProgress, FineTuneResult,
    HeldOutPairs, JobProgress, ModelTarget, ReviewOutcome,
};
use temporalio_common::data_converters::RawValue;

/// Fine-tunes a linear adapter on labelled pairs; see the module docs. Id
/// `finetune-<base model id>-<dataset hash>`.
#[workflow]
#[derive(Default)]
pub struct FineTuneWorkflow {
    progress: FineTuneProgress,
}

#[workflow_methods]
impl FineTuneWorkflow {
    #[run(name = "FineTuneWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: FineTuneInput,
    ) -> WorkflowResult<FineTuneResult> {
        match finetune_phases(ctx, &input).await {
            Ok(r) => {
                // A review still being checked answers before the run ends.
                ctx.wait_condition(|_| ctx.all_handlers_finished()).await?;
                Ok(r)
            }
            Err(e) => {
                let _ = lineage(ctx, EventType::Fail, "failed", Some(e.to_string())).await;
                Err(e)
            }
        }
    }

    /// The human verdict, signed (see `crate::signing`), as an update: the sender learns
    /// whether it was taken. Refused before it is recorded when no review is open; then
    /// checked by `review.check` and taken only while the job awaits review (the first one
    /// wins), so nobody approves an unevaluated job; a refusal is recorded in `progress`.
    #[update(name = "review")]
    pub async fn review_update(
        ctx: &mut WorkflowContext<Self>,
        request: serde_json::Value,
    ) -> ReviewOutcome {
        receive_review(ctx, request).await
    }

    #[update_validator(review_update)]
    pub fn validate_review(
        &self,
        _ctx: &WorkflowContextView,
        _request: &serde_json::Value,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.review_open()
    }

    /// The same verdict as a signal (`temporal workflow signal --name review`): checked
    /// alike; its outcome shows in `progress` (`review`, `refused_reviews`).
    #[signal(name = "review")]
    pub async fn review(ctx: &mut WorkflowContext<Self>, request: RawValue) {
        receive_review(ctx, signal_json(&request)).await;
    }

    /// Where the job is; answers at any time.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> FineTuneProgress {
        self.progress.clone()
    }
}

impl Reviewed for FineTuneWorkflow {
    type Progress = FineTuneProgress;
    fn job_progress(&self) -> &FineTuneProgress {
        &self.progress
    }
    fn job_progress_mut(&mut self) -> &mut FineTuneProgress {
        &mut self.progress
    }
}

async fn finetune_phases(
    ctx: &WorkflowContext<FineTuneWorkflow>,
    input: &FineTuneInput,
) -> WorkflowResult<FineTuneResult> {
    let heartbeat = Duration::from_secs(input.heartbeat_secs.max(5));
    let step = FineTuneStep {
        job: ctx.workflow_id().to_owned(),
        input: input.clone(),
    };
    let started_at_ms = now_ms(ctx.workflow_time());
    update(ctx, |p| {
        p.gate.started_by = input.starter.clone();
        p.gate.started_at_ms = started_at_ms;
    });
    lineage(ctx, EventType::Start, "validating", None).await?;
    let dataset = ctx
        .execute_activity(FineTuneActivities::validate, input.clone(), light())
        .await?;
    update(ctx, |p| {
        p.dataset = Some(dataset.clone());
        p.phase = FineTunePhase::Embedding;
    });
    ctx.execute_activity(
        FineTuneActivities::embed,
        step.clone(),
        heavy(&input.gpu_queue, heartbeat),
    )
    .await?;
    update(ctx, |p| p.phase = FineTunePhase::Training);
    lineage(ctx, EventType::Running, "training", None).await?;
    let report = ctx
        .execute_activity(
            FineTuneActivities::train,
            step.clone(),
            training(&input.gpu_queue, heartbeat),
        )
        .await?;
    let candidate = ctx
        .execute_activity(FineTuneActivities::stage, step.clone(), light())
        .await?;
    update(ctx, |p| {
        p.training = Some(report.clone());
        p.candidate = Some(candidate.clone());
        p.phase = FineTunePhase::Evaluating;
    });
    lineage(ctx, EventType::Running, "evaluating", None).await?;
    let evaluation = {
        let child = ctx
            .start_child_workflow(
                EvaluateWorkflow::run,
                EvaluateInput {
                    collections: vec![
                        (
                            format!("base {}", dataset.base_model_id),
                            input.base.clone(),
                        ),
                        (
                            format!("adapted {}", candidate.model_id),
                            ModelTarget {
                                model_dir: candidate.model_dir.clone(),
                                ..input.base.clone()
                            },
                        ),
                    ],
                    spec: EvalSpec {
                        suite: input.pairs.clone(),
                        k: input.k,
                        tenant: None,
                        min_recall: None,
                        modes: Vec::new(),
                    },
                    pairs: Some(HeldOutPairs {
                        pairs: input.pairs.clone(),
                        held_out_fraction: input.held_out_fraction,
                    }),
                    gpu_queue: input.gpu_queue.clone(),
                },
                ChildWorkflowOptions::workflow_id(format!("{}-eval", ctx.workflow_id())),
            )
            .await?;
        child.result().await?
    };
    let deadline = review_deadline(ctx, input.review_timeout_secs);
    let review_id = new_review_id(ctx);
    update(ctx, |p| {
        p.evaluation = Some(evaluation.clone());
        p.phase = FineTunePhase::AwaitingReview;
        p.open_review(deadline, review_id);
    });
    lineage(ctx, EventType::Running, "awaiting_review", None).await?;
    let wait = Duration::from_millis((deadline - now_ms(ctx.workflow_time())).max(0) as u64);
    wait_for_review(ctx, wait).await?;
    let review = progress(ctx).gate.review;
    update(ctx, |p| p.close_review());
    let approved = review.as_ref().is_some_and(|r| r.approve);
    if approved {
        update(ctx, |p| p.phase = FineTunePhase::Registering);
        let registered = ctx
            .execute_activity(
                FineTuneActivities::register,
                RegisterInput {
                    job: ctx.workflow_id().to_owned(),
                    candidate: candidate.clone(),
                    base: input.base.clone(),
                    base_model_id: dataset.base_model_id.clone(),
                    training: Some(report.clone()),
                    evaluation: Some(evaluation.clone()),
                    review: review.clone(),
                    time_ms: now_ms(ctx.workflow_time()),
                },
                light(),
            )
            .await?;
        update(ctx, |p| {
            p.registered = Some(registered.clone());
            p.phase = FineTunePhase::Registered;
        });
        lineage(ctx, EventType::Complete, "registered", None).await?;
        return Ok(FineTuneResult {
            approved: true,
            model: Some(registered),
            reason: "approved".into(),
            evaluation: Some(evaluation),
            training: Some(report),
            review,
        });
    }
    ctx.execute_activity(FineTuneActivities::discard, candidate.clone(), light())
        .await?;
    let reason = match &review {
        Some(r) => format!("rejected by {}", r.reviewer),
        None => "review timed out".to_owned(),
    };
    update(ctx, |p| p.phase = FineTunePhase::Rejected);
    lineage(ctx, EventType::Fail, "rejected", Some(reason.clone())).await?;
    Ok(FineTuneResult {
        approved: false,
        model: Some(candidate),
        reason,
        evaluation: Some(evaluation),
        training: Some(report),
        review,
    })
}
