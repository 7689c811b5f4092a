//! [`ReindexWorkflow`]: blue/green reindex as a phase machine that continue-as-new resumes.

use std::time::Duration;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ChildWorkflowOptions, ContinueAsNewOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};
use vecstream_core::EventType;

use super::job::{Reviewed, lineage, progress, review_deadline, update, wait_for_review};
use super::{EvaluateWorkflow, heavy, light, now_ms};
use crate::activities::{DropCollection, JobActivities, PrepareInput, ScanRange, SwapAlias};
use crate::types::{
    EvalReport, EvalSpec, EvaluateInput, JobProgress, PartitionProgress, Phase, ReindexInput,
    ReindexProgress, ReindexResult, ReviewDecision, eval_workflow_id,
};

/// Blue/green reindex of an alias to another model; see the module docs.
#[workflow]
#[derive(Default)]
pub struct ReindexWorkflow {
    progress: ReindexProgress,
}

#[workflow_methods]
impl ReindexWorkflow {
    #[run(name = "ReindexWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: ReindexInput,
    ) -> WorkflowResult<ReindexResult> {
        let mut carried = input.carried.clone().unwrap_or_default();
        carried.runs += 1;
        if carried.alias.is_empty() {
            carried.alias = input.alias.clone();
            carried.model_id = input.target_model_id.clone();
        }
        ctx.state_mut(|s| s.progress = carried);
        match phases(ctx, &input).await {
            Ok(result) => Ok(result),
            Err(e) => {
                if !matches!(e, temporalio_sdk::WorkflowTermination::ContinueAsNew(_)) {
                    // Best effort: the failure itself is what the workflow reports.
                    let _ = lineage(ctx, EventType::Fail, "failed", Some(e.to_string())).await;
                }
                Err(e)
            }
        }
    }

    /// The human verdict. Only taken while the reindex awaits review (the first one wins);
    /// earlier or later signals are ignored, so nobody approves an unevaluated index.
    #[signal(name = "review")]
    pub fn review(&mut self, _ctx: &mut SyncWorkflowContext<Self>, decision: ReviewDecision) {
        self.on_review(decision);
    }

    /// Where the reindex is; answers at any time.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> ReindexProgress {
        self.progress.clone()
    }
}

impl Reviewed for ReindexWorkflow {
    type Progress = ReindexProgress;
    fn job_progress(&self) -> &ReindexProgress {
        &self.progress
    }
    fn job_progress_mut(&mut self) -> &mut ReindexProgress {
        &mut self.progress
    }
}

/// Hands over to a new run when the history grew long; resumes at the same phase.
fn maybe_continue(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<()> {
    if ctx.continue_as_new_suggested() || ctx.history_length() > input.history_budget {
        let next = ReindexInput {
            carried: Some(progress(ctx)),
            ..input.clone()
        };
        ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
    }
    Ok(())
}

async fn phases(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<ReindexResult> {
    loop {
        let phase = progress(ctx).phase;
        match phase {
            Phase::Preparing => {
                lineage(ctx, EventType::Start, "preparing", None).await?;
                let prepared = ctx
                    .execute_activity(
                        JobActivities::prepare,
                        PrepareInput {
                            alias: input.alias.clone(),
                            target: input.target.clone(),
                            target_model_id: input.target_model_id.clone(),
                        },
                        light(),
                    )
                    .await?;
                let started = now_ms(ctx.workflow_time());
                update(ctx, |p| {
                    p.target_collection = prepared.target_collection;
                    p.live_collection = prepared.live_collection;
                    p.live_target = prepared.live_target;
                    p.partitions = prepared
                        .bounds
                        .iter()
                        .map(|&(partition, low, high)| PartitionProgress {
                            partition,
                            start: low,
                            done: low,
                            end: high,
                        })
                        .collect();
                    p.scan_started_ms = started;
                    p.phase = Phase::Scanning;
                });
                lineage(ctx, EventType::Running, "scanning", None).await?;
            }
            Phase::Scanning => {
                catch_up(ctx, input).await?;
                update(ctx, |p| p.phase = Phase::Evaluating);
            }
            Phase::Evaluating => {
                let passed = match &input.eval {
                    Some(spec) => {
                        lineage(ctx, EventType::Running, "evaluating", None).await?;
                        let report = evaluate(ctx, input, spec.clone()).await?;
                        let passed = report.passed;
                        update(ctx, |p| p.evaluation = Some(report));
                        passed
                    }
                    None => true,
                };
                if passed {
                    let deadline = review_deadline(ctx, input.review_timeout_secs);
                    update(ctx, |p| {
                        p.phase = Phase::AwaitingReview;
                        p.open_review(deadline);
                    });
                    lineage(ctx, EventType::Running, "awaiting_review", None).await?;
                } else {
                    update(ctx, |p| p.phase = Phase::Dropping);
                }
            }
            Phase::AwaitingReview => {
                await_review(ctx, input).await?;
                let approved = progress(ctx).review.as_ref().is_some_and(|r| r.approve);
                update(ctx, |p| {
                    p.close_review();
                    p.phase = if approved {
                        Phase::Swapping
                    } else {
                        Phase::Dropping
                    };
                });
            }
            Phase::Swapping => {
                // Whatever arrived since the last catch-up goes in before searches move.
                catch_up(ctx, input).await?;
                let p = progress(ctx);
                let previous = ctx
                    .execute_activity(
                        JobActivities::swap_alias,
                        SwapAlias {
                            alias: input.alias.clone(),
                            collection: p.target_collection.clone(),
                        },
                        light(),
                    )
                    .await?;
                update(ctx, |p| p.phase = Phase::Approved);
                lineage(ctx, EventType::Complete, "approved", None).await?;
                return Ok(ReindexResult {
                    approved: true,
                    alias: input.alias.clone(),
                    new_collection: p.target_collection,
                    previous_collection: previous.or(p.live_collection),
                    review: p.review,
                    reason: "approved".into(),
                    documents_embedded: p.documents_embedded,
                });
            }
            Phase::Dropping => {
                let p = progress(ctx);
                ctx.execute_activity(
                    JobActivities::drop_collection,
                    DropCollection {
                        alias: input.alias.clone(),
                        collection: p.target_collection.clone(),
                    },
                    light(),
                )
                .await?;
                let reason = match (&p.review, &p.evaluation) {
                    (Some(r), _) => format!("rejected by {}", r.reviewer),
                    (None, Some(e)) if !e.passed => "evaluation below threshold".to_owned(),
                    _ => "review timed out".to_owned(),
                };
                update(ctx, |p| p.phase = Phase::Rejected);
                lineage(ctx, EventType::Fail, "rejected", Some(reason.clone())).await?;
                return Ok(ReindexResult {
                    approved: false,
                    alias: input.alias.clone(),
                    new_collection: p.target_collection,
                    previous_collection: p.live_collection,
                    review: p.review,
                    reason,
                    documents_embedded: p.documents_embedded,
                });
            }
            Phase::Approved | Phase::Rejected => {
                unreachable_phase(phase)?;
            }
        }
    }
}

/// A finished phase never starts a run: a carried progress says so only after a bug.
fn unreachable_phase(phase: Phase) -> WorkflowResult<()> {
    Err(
        temporalio_common::error::ApplicationFailure::non_retryable(std::io::Error::other(
            format!("reindex resumed in the final phase {}", phase.as_str()),
        ))
        .into(),
    )
}

/// Scans every partition up to its known end, then asks for the topic's new end and scans
/// again until a look finds nothing new.
async fn catch_up(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<()> {
    loop {
        scan_known(ctx, input).await?;
        let bounds = ctx
            .execute_activity(JobActivities::bounds, (), light())
            .await?;
        let mut grew = false;
        update(ctx, |p| {
            for (partition, low, high) in bounds {
                match p.partitions.iter_mut().find(|x| x.partition == partition) {
                    Some(x) if high > x.end => {
                        x.end = high;
                        grew = true;
                    }
                    Some(_) => {}
                    None => {
                        p.partitions.push(PartitionProgress {
                            partition,
                            start: low,
                            done: low,
                            end: high,
                        });
                        grew = grew || high > low;
                    }
                }
            }
        });
        if !grew {
            return Ok(());
        }
    }
}

/// Scans all offsets known so far, one range activity at a time.
async fn scan_known(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<()> {
    let range = input.range_offsets.max(1);
    loop {
        let Some(next) = progress(ctx)
            .partitions
            .iter()
            .find(|p| p.done < p.end)
            .copied()
        else {
            return Ok(());
        };
        let to = (next.done + range).min(next.end);
        let report = ctx
            .execute_activity(
                JobActivities::scan_range,
                ScanRange {
                    target: input.target.clone(),
                    partition: next.partition,
                    from: next.done,
                    to,
                    tenant: input.tenant.clone(),
                },
                heavy(
                    &input.gpu_queue,
                    Duration::from_secs(input.heartbeat_secs.max(5)),
                ),
            )
            .await?;
        let now = now_ms(ctx.workflow_time());
        update(ctx, |p| {
            if let Some(x) = p
                .partitions
                .iter_mut()
                .find(|x| x.partition == next.partition)
            {
                x.done = report.next_offset.max(to);
            }
            p.documents_embedded += report.embedded;
            p.chunks_written += report.chunks;
            p.documents_deleted += report.deleted;
            p.records_skipped += report.skipped;
            p.ranges_done += 1;
            let secs = ((now - p.scan_started_ms) as f64 / 1000.0).max(0.001);
            p.rate_docs_per_s = p.documents_embedded as f64 / secs;
            let (done, total) = p.offsets();
            let offsets_per_s = done as f64 / secs;
            p.eta_secs = (offsets_per_s > 0.0).then(|| (total - done) as f64 / offsets_per_s);
        });
        maybe_continue(ctx, input)?;
    }
}

/// The evaluation child workflow: the live collection (when its model is known) and the
/// new one, side by side.
async fn evaluate(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
    spec: EvalSpec,
) -> WorkflowResult<EvalReport> {
    let p = progress(ctx);
    let mut collections = Vec::new();
    if let (Some(live), Some(target)) = (&p.live_collection, &p.live_target) {
        collections.push((live.clone(), target.clone()));
    }
    collections.push((p.target_collection.clone(), input.target.clone()));
    let id = format!(
        "{}-{}",
        eval_workflow_id(&p.target_collection, &spec.suite),
        ctx.run_id()
    );
    let child = ctx
        .start_child_workflow(
            EvaluateWorkflow::run,
            EvaluateInput {
                collections,
                pairs: None,
                spec,
                gpu_queue: input.gpu_queue.clone(),
            },
            ChildWorkflowOptions::workflow_id(id),
        )
        .await?;
    Ok(child.result().await?)
}

/// Waits for the review signal or its deadline, copying new documents meanwhile.
async fn await_review(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<()> {
    loop {
        let p = progress(ctx);
        if p.review.is_some() {
            return Ok(());
        }
        let now = now_ms(ctx.workflow_time());
        let deadline = p.review_deadline_ms.unwrap_or(now);
        if now >= deadline {
            return Ok(());
        }
        let wait =
            Duration::from_millis(((deadline - now) as u64).min(input.catch_up_secs.max(1) * 1000));
        if !wait_for_review(ctx, wait).await? {
            catch_up(ctx, input).await?;
            maybe_continue(ctx, input)?;
        }
    }
}
