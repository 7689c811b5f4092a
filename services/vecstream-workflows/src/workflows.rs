//! The reindex and evaluation workflows: thin and deterministic. They decide the order of
//! things and keep the progress; every effect is an activity ([`crate::activities`]).
//!
//! Fine-tuning ([`FineTuneWorkflow`]): validate the pairs → embed them with the base model
//! → train the adapter (checkpointed, resumable) → stage the candidate → evaluate base
//! against candidate on the held-out split (child [`EvaluateWorkflow`]) → await review (a
//! timeout rejects) → register the version in the model store, or discard it.
//!
//! Reindex, as a phase machine that continue-as-new can resume at any phase:
//! preparing → scanning (partition offset ranges, then catch-ups to the topic's new end)
//! → evaluating (child [`EvaluateWorkflow`]) → awaiting review (catching up meanwhile; a
//! timeout is a reject) → swapping the alias (after a last catch-up) or dropping the new
//! collection.

use std::time::{Duration, SystemTime};

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ChildWorkflowOptions, ContinueAsNewOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::activities::{
    DropCollection, EvalCollection, JobActivities, PhaseEvent, PrepareInput, ScanRange, SwapAlias,
};
use crate::finetune::{EvalPairs, FineTuneActivities, FineTuneStep, RegisterInput};
use crate::types::{
    EvalReport, EvalRow, EvaluateInput, FineTuneInput, FineTunePhase, FineTuneProgress,
    FineTuneResult, LargeDocumentInput, LargeDocumentResult, ModelTarget, PartitionProgress, Phase,
    ReindexInput, ReindexProgress, ReindexResult, ReviewDecision, eval_workflow_id,
};

fn retry(attempts: u32) -> temporalio_common::RetryPolicy {
    temporalio_common::RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .maximum_attempts(attempts)
        .build()
}

/// Light activities (Weaviate schema, Kafka metadata, lineage) on the workflow's queue.
fn light() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry(5))
        .build()
}

/// Embedding activities on the gpu queue: heartbeats, a start deadline that exposes
/// missing capacity, one hour per attempt and six hours over all retries.
fn heavy(queue: &str, heartbeat: Duration) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(
        temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: Duration::from_secs(6 * 3600),
            start_to_close: Duration::from_secs(3600),
        },
    )
    .task_queue(queue.to_owned())
    .schedule_to_start_timeout(Duration::from_secs(1800))
    .heartbeat_timeout(heartbeat)
    .retry_policy(retry(8))
    .build()
}

fn now_ms(time: Option<SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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
                    let _ = lineage(ctx, "FAIL", "failed", Some(e.to_string())).await;
                }
                Err(e)
            }
        }
    }

    /// The human verdict. Only taken while the reindex awaits review (the first one wins);
    /// earlier or later signals are ignored, so nobody approves an unevaluated index.
    #[signal(name = "review")]
    pub fn review(&mut self, _ctx: &mut SyncWorkflowContext<Self>, decision: ReviewDecision) {
        if self.progress.awaiting_review && self.progress.review.is_none() {
            self.progress.review = Some(decision);
        }
    }

    /// Where the reindex is; answers at any time.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> ReindexProgress {
        self.progress.clone()
    }
}

fn progress(ctx: &WorkflowContext<ReindexWorkflow>) -> ReindexProgress {
    ctx.state(|s| s.progress.clone())
}

fn update(ctx: &WorkflowContext<ReindexWorkflow>, f: impl FnOnce(&mut ReindexProgress)) {
    ctx.state_mut(|s| f(&mut s.progress));
}

async fn lineage(
    ctx: &WorkflowContext<ReindexWorkflow>,
    event_type: &str,
    phase: &str,
    error: Option<String>,
) -> WorkflowResult<()> {
    let p = progress(ctx);
    let event = PhaseEvent {
        workflow_id: ctx.workflow_id().to_owned(),
        run_id: ctx.run_id().to_owned(),
        job: "reindex".into(),
        event_type: event_type.into(),
        phase: phase.into(),
        model_id: p.model_id,
        collection: p.target_collection,
        time_ms: now_ms(ctx.workflow_time()),
        error,
    };
    ctx.execute_activity(JobActivities::lineage, event, light())
        .await?;
    Ok(())
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
                lineage(ctx, "START", "preparing", None).await?;
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
                lineage(ctx, "RUNNING", "scanning", None).await?;
            }
            Phase::Scanning => {
                catch_up(ctx, input).await?;
                update(ctx, |p| p.phase = Phase::Evaluating);
            }
            Phase::Evaluating => {
                let passed = match &input.eval {
                    Some(spec) => {
                        lineage(ctx, "RUNNING", "evaluating", None).await?;
                        let report = evaluate(ctx, input, spec.clone()).await?;
                        let passed = report.passed;
                        update(ctx, |p| p.evaluation = Some(report));
                        passed
                    }
                    None => true,
                };
                if passed {
                    let deadline = now_ms(ctx.workflow_time())
                        + (input.review_timeout_secs as i64).saturating_mul(1000);
                    update(ctx, |p| {
                        p.phase = Phase::AwaitingReview;
                        p.awaiting_review = true;
                        p.review_deadline_ms = Some(deadline);
                    });
                    lineage(ctx, "RUNNING", "awaiting_review", None).await?;
                } else {
                    update(ctx, |p| p.phase = Phase::Dropping);
                }
            }
            Phase::AwaitingReview => {
                await_review(ctx, input).await?;
                let approved = progress(ctx).review.as_ref().is_some_and(|r| r.approve);
                update(ctx, |p| {
                    p.awaiting_review = false;
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
                lineage(ctx, "COMPLETE", "approved", None).await?;
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
                lineage(ctx, "FAIL", "rejected", Some(reason.clone())).await?;
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
    spec: crate::types::EvalSpec,
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
        let reviewed = temporalio_sdk::workflows::select! {
            r = ctx.wait_condition(|s| s.progress.review.is_some()) => { r?; true }
            _ = ctx.timer(wait) => false,
        };
        if !reviewed {
            catch_up(ctx, input).await?;
            maybe_continue(ctx, input)?;
        }
    }
}

/// Side-by-side retrieval quality of collections on a labelled suite.
#[workflow]
#[derive(Default)]
pub struct EvaluateWorkflow;

#[workflow_methods]
impl EvaluateWorkflow {
    #[run(name = "EvaluateWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: EvaluateInput,
    ) -> WorkflowResult<EvalReport> {
        let mut rows: Vec<EvalRow> = Vec::with_capacity(input.collections.len());
        for (collection, target) in &input.collections {
            let options = heavy(&input.gpu_queue, Duration::from_secs(300));
            let row = match &input.pairs {
                Some(held_out) => {
                    ctx.execute_activity(
                        FineTuneActivities::evaluate_pairs,
                        EvalPairs {
                            label: collection.clone(),
                            target: target.clone(),
                            held_out: held_out.clone(),
                            k: input.spec.k,
                        },
                        options,
                    )
                    .await?
                }
                None => {
                    ctx.execute_activity(
                        JobActivities::evaluate_collection,
                        EvalCollection {
                            collection: collection.clone(),
                            target: target.clone(),
                            spec: input.spec.clone(),
                        },
                        options,
                    )
                    .await?
                }
            };
            rows.push(row);
        }
        let passed = match (input.spec.min_recall, rows.last()) {
            (Some(t), Some(candidate)) => candidate.recall_at_k >= t,
            _ => true,
        };
        Ok(EvalReport {
            suite: input.spec.suite.clone(),
            k: input.spec.k,
            rows,
            threshold: input.spec.min_recall,
            passed,
        })
    }
}

/// One document too large for the stream: embedded by a heartbeating activity on the gpu
/// queue, its vector record and lineage published as the stream would (id
/// `doc-<doc id>-<version>`).
#[workflow]
#[derive(Default)]
pub struct LargeDocumentWorkflow;

#[workflow_methods]
impl LargeDocumentWorkflow {
    #[run(name = "LargeDocumentWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: LargeDocumentInput,
    ) -> WorkflowResult<LargeDocumentResult> {
        let queue = input.gpu_queue.clone();
        Ok(ctx
            .execute_activity(
                JobActivities::embed_large,
                input,
                heavy(&queue, Duration::from_secs(60)),
            )
            .await?)
    }
}

/// Training activities: few attempts (DESIGN: fewer retries for training), each resuming
/// from the last checkpoint.
fn training(queue: &str, heartbeat: Duration) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(
        temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: Duration::from_secs(12 * 3600),
            start_to_close: Duration::from_secs(4 * 3600),
        },
    )
    .task_queue(queue.to_owned())
    .schedule_to_start_timeout(Duration::from_secs(1800))
    .heartbeat_timeout(heartbeat)
    .retry_policy(retry(4))
    .build()
}

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
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = finetune_lineage(ctx, "FAIL", "failed", Some(e.to_string())).await;
                Err(e)
            }
        }
    }

    /// The human verdict, taken only while the candidate awaits review (first one wins).
    #[signal(name = "review")]
    pub fn review(&mut self, _ctx: &mut SyncWorkflowContext<Self>, decision: ReviewDecision) {
        if self.progress.awaiting_review && self.progress.review.is_none() {
            self.progress.review = Some(decision);
        }
    }

    /// Where the job is; answers at any time.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> FineTuneProgress {
        self.progress.clone()
    }
}

fn ft_progress(ctx: &WorkflowContext<FineTuneWorkflow>) -> FineTuneProgress {
    ctx.state(|s| s.progress.clone())
}

fn ft_update(ctx: &WorkflowContext<FineTuneWorkflow>, f: impl FnOnce(&mut FineTuneProgress)) {
    ctx.state_mut(|s| f(&mut s.progress));
}

async fn finetune_lineage(
    ctx: &WorkflowContext<FineTuneWorkflow>,
    event_type: &str,
    phase: &str,
    error: Option<String>,
) -> WorkflowResult<()> {
    let p = ft_progress(ctx);
    let model_id = p
        .registered
        .or(p.candidate)
        .map(|c| c.model_id)
        .or(p.dataset.map(|d| d.base_model_id))
        .unwrap_or_default();
    let event = PhaseEvent {
        workflow_id: ctx.workflow_id().to_owned(),
        run_id: ctx.run_id().to_owned(),
        job: "finetune".into(),
        event_type: event_type.into(),
        phase: phase.into(),
        model_id,
        collection: String::new(),
        time_ms: now_ms(ctx.workflow_time()),
        error,
    };
    ctx.execute_activity(JobActivities::lineage, event, light())
        .await?;
    Ok(())
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
    finetune_lineage(ctx, "START", "validating", None).await?;
    let dataset = ctx
        .execute_activity(FineTuneActivities::validate, input.clone(), light())
        .await?;
    ft_update(ctx, |p| {
        p.dataset = Some(dataset.clone());
        p.phase = FineTunePhase::Embedding;
    });
    ctx.execute_activity(
        FineTuneActivities::embed,
        step.clone(),
        heavy(&input.gpu_queue, heartbeat),
    )
    .await?;
    ft_update(ctx, |p| p.phase = FineTunePhase::Training);
    finetune_lineage(ctx, "RUNNING", "training", None).await?;
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
    ft_update(ctx, |p| {
        p.training = Some(report.clone());
        p.candidate = Some(candidate.clone());
        p.phase = FineTunePhase::Evaluating;
    });
    finetune_lineage(ctx, "RUNNING", "evaluating", None).await?;
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
                    spec: crate::types::EvalSpec {
                        suite: input.pairs.clone(),
                        k: input.k,
                        tenant: None,
                        min_recall: None,
                    },
                    pairs: Some(crate::types::HeldOutPairs {
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
    let deadline =
        now_ms(ctx.workflow_time()) + (input.review_timeout_secs as i64).saturating_mul(1000);
    ft_update(ctx, |p| {
        p.evaluation = Some(evaluation.clone());
        p.phase = FineTunePhase::AwaitingReview;
        p.awaiting_review = true;
        p.review_deadline_ms = Some(deadline);
    });
    finetune_lineage(ctx, "RUNNING", "awaiting_review", None).await?;
    let wait = Duration::from_millis((deadline - now_ms(ctx.workflow_time())).max(0) as u64);
    temporalio_sdk::workflows::select! {
        r = ctx.wait_condition(|s| s.progress.review.is_some()) => { r?; }
        _ = ctx.timer(wait) => {}
    };
    let review = ft_progress(ctx).review;
    ft_update(ctx, |p| p.awaiting_review = false);
    let approved = review.as_ref().is_some_and(|r| r.approve);
    if approved {
        ft_update(ctx, |p| p.phase = FineTunePhase::Registering);
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
        ft_update(ctx, |p| {
            p.registered = Some(registered.clone());
            p.phase = FineTunePhase::Registered;
        });
        finetune_lineage(ctx, "COMPLETE", "registered", None).await?;
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
    ft_update(ctx, |p| p.phase = FineTunePhase::Rejected);
    finetune_lineage(ctx, "FAIL", "rejected", Some(reason.clone())).await?;
    Ok(FineTuneResult {
        approved: false,
        model: Some(candidate),
        reason,
        evaluation: Some(evaluation),
        training: Some(report),
        review,
    })
}
