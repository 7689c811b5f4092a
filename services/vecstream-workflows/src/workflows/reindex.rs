//! [`ReindexWorkflow`]: blue/green reindex as a phase machine that continue-as-new resumes.

use std::time::Duration;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, ChildWorkflowOptions, ContinueAsNewOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};
use vecstream_core::EventType;

use super::job::{
    Checked, Reviewed, check_signed, lineage, new_review_id, outcome, progress, receive_review,
    review_deadline, signal_json, update, wait_for_review,
};
use super::{EvaluateWorkflow, durable, heavy, light, now_ms};
use crate::activities::{
    DropCollection, JobActivities, MigrationStep, PrepareInput, ScanRange, SwapAlias,
};
use crate::migration::{MigrationEvent, ModelCollection};
use crate::signing::Purpose;
use crate::types::{
    EvalReport, EvalSpec, EvaluateInput, JobProgress, ModelTarget, PartitionProgress, Phase,
    ReindexInput, ReindexProgress, ReindexResult, ReviewDecision, ReviewOutcome, eval_workflow_id,
};
use temporalio_common::data_converters::RawValue;

/// The patch of the migration protocol: runs started before it keep the old logic.
const MIGRATION_PATCH: &str = "migration-v1";

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
        // Progress is handed over only by continue-as-new: a start that carries some (anyone
        // who can start a workflow can write its input) starts from nothing, so no review,
        // phase or signed start can be smuggled in.
        // Temporal's own retries and cron runs get the start input again, `carried`
        // included: a reindex is never retried or scheduled that way (every start goes
        // through the registry), so one that is was started around it and is refused.
        let info = ctx.info();
        if info.cron_schedule().is_some() || info.retry_policy().is_some() {
            return Err(ApplicationFailure::non_retryable(
                "a reindex is not run with a Temporal retry policy or cron schedule; start it \
                 with `vecstream reindex start`",
            )
            .into());
        }
        let mut carried = match info.continued_from_run_id() {
            Some(_) => input.carried.clone().unwrap_or_default(),
            None => ReindexProgress::default(),
        };
        carried.runs += 1;
        if carried.alias.is_empty() {
            carried.alias = input.alias.clone();
            carried.model_id = input.target_model_id.clone();
            // Decided once per reindex, in its first run: a run started on the old code
            // (whose history has no marker) keeps the old logic through continue-as-new.
            carried.migration = ctx.patched(MIGRATION_PATCH);
            carried.tenant = input.tenant.clone();
            carried.lineage_run_id = ctx.run_id().to_owned();
            carried.gate.started_by = input.starter.clone();
            carried.gate.started_at_ms = now_ms(ctx.workflow_time());
        }
        ctx.state_mut(|s| s.progress = carried);
        match phases(ctx, &input).await {
            Ok(result) => {
                // A review still being checked answers before the run ends.
                ctx.wait_condition(|_| ctx.all_handlers_finished()).await?;
                Ok(result)
            }
            Err(e) => {
                if !matches!(e, temporalio_sdk::WorkflowTermination::ContinueAsNew(_)) {
                    // Best effort: the failure itself is what the workflow reports.
                    let _ = lineage(ctx, EventType::Fail, "failed", Some(e.to_string())).await;
                }
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

    /// During the rollback window: swap the alias back and retire the new collection. Signed
    /// like a review (for the approved review: `Statement::rollback`), as an update whose
    /// answer says whether it was taken; refused before it is recorded outside the window.
    #[update(name = "rollback")]
    pub async fn rollback_update(
        ctx: &mut WorkflowContext<Self>,
        request: serde_json::Value,
    ) -> ReviewOutcome {
        receive_rollback(ctx, request).await
    }

    #[update_validator(rollback_update)]
    pub fn validate_rollback(
        &self,
        _ctx: &WorkflowContextView,
        _request: &serde_json::Value,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.progress.phase != Phase::RollbackWindow {
            return Err(format!(
                "not in its rollback window (phase {})",
                self.progress.phase.as_str()
            )
            .into());
        }
        match &self.progress.rollback {
            Some(r) => Err(format!("already rolling back (asked by {})", r.reviewer).into()),
            None => Ok(()),
        }
    }

    /// The same as a signal (the stock CLI): checked alike; its outcome shows in `progress`
    /// (`rollback`, `refused_reviews`).
    #[signal(name = "rollback")]
    pub async fn rollback(ctx: &mut WorkflowContext<Self>, request: RawValue) {
        receive_rollback(ctx, signal_json(&request)).await;
    }

    /// Before approval: stop, keep the live collection, drop the new one (as a reject).
    /// Ignored once approved (a rollback is the way back then).
    #[signal(name = "cancel")]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, request: RawValue) {
        // Unsigned (Temporal's own cancel and terminate are open to the same callers); a
        // payload that is not a decision is ignored rather than failing the run.
        let Ok(decision) = serde_json::from_value::<ReviewDecision>(signal_json(&request)) else {
            return;
        };
        let before_approval = matches!(
            self.progress.phase,
            Phase::Preparing | Phase::Scanning | Phase::Evaluating | Phase::AwaitingReview
        );
        if before_approval && self.progress.cancel.is_none() {
            self.progress.cancel = Some(decision);
        }
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

/// Reindexes that took unsigned rollbacks replay them so (see `job::check_signed`).
const SIGNED_ROLLBACK_PATCH: &str = "signed-rollback-v1";

/// The body of the `rollback` update and signal: checked by `check_signed` against the
/// approved review's id; taken only in the rollback window, once.
async fn receive_rollback(
    ctx: &WorkflowContext<ReindexWorkflow>,
    request: serde_json::Value,
) -> ReviewOutcome {
    let in_window = |p: &ReindexProgress| p.phase == Phase::RollbackWindow && p.rollback.is_none();
    // Outside the window (a signal: updates are refused by the validator), nothing to check.
    if !ctx.state(|s| in_window(&s.progress)) {
        return rollback_outcome(
            ctx,
            "not_taken",
            "the reindex is not in its rollback window".into(),
        );
    }
    let review_id = ctx.state(|s| s.progress.gate.review_id.clone());
    let decision = match check_signed(
        ctx,
        request,
        Purpose::Rollback,
        &review_id,
        SIGNED_ROLLBACK_PATCH,
    )
    .await
    {
        Checked::Legacy(Some(d)) => d,
        Checked::Legacy(None) => return rollback_outcome(ctx, "legacy", String::new()),
        Checked::Refused(code, reason) => return rollback_outcome(ctx, &code, reason),
        Checked::Verified(d) => d,
    };
    let taken = ctx.state_mut(|s| {
        let take = in_window(&s.progress);
        if take {
            s.progress.rollback = Some(decision);
        }
        take
    });
    if taken {
        rollback_outcome(ctx, "accepted", String::new())
    } else {
        rollback_outcome(
            ctx,
            "not_taken",
            "the reindex is no longer in its rollback window".into(),
        )
    }
}

/// `outcome`, with the rollback as the decision it holds.
fn rollback_outcome(
    ctx: &WorkflowContext<ReindexWorkflow>,
    code: &str,
    reason: String,
) -> ReviewOutcome {
    ReviewOutcome {
        review: progress(ctx).rollback,
        ..outcome(ctx, code, reason)
    }
}

/// Hands over to a new run when the history grew long; resumes at the same phase. A review
/// still being checked is answered first (continue-as-new would drop it).
async fn maybe_continue(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<()> {
    if ctx.continue_as_new_suggested() || ctx.history_length() > input.history_budget {
        ctx.wait_condition(|_| ctx.all_handlers_finished()).await?;
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
        if cancelled(ctx) && !matches!(phase, Phase::Dropping) && before_approval(phase) {
            update(ctx, |p| {
                p.close_review();
                p.phase = Phase::Dropping;
            });
            continue;
        }
        match phase {
            Phase::Preparing => {
                lineage(ctx, EventType::Start, "preparing", None).await?;
                let migration = progress(ctx).migration;
                let prepared = ctx
                    .execute_activity(
                        JobActivities::prepare,
                        PrepareInput {
                            alias: input.alias.clone(),
                            target: input.target.clone(),
                            target_model_id: input.target_model_id.clone(),
                            workflow_id: if migration {
                                ctx.workflow_id().to_owned()
                            } else {
                                String::new()
                            },
                        },
                        light(),
                    )
                    .await?;
                let started = now_ms(ctx.workflow_time());
                let target_model = ModelCollection {
                    model_id: input.target_model_id.clone(),
                    collection: prepared.target_collection.clone(),
                    target: input.target.clone(),
                };
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
                            first_end: high,
                        })
                        .collect();
                    p.scan_started_ms = started;
                    if p.migration {
                        p.target_model = Some(target_model.clone());
                        p.live_model = prepared.live_model.clone();
                    }
                    p.phase = Phase::Scanning;
                });
                if migration {
                    migrate(
                        ctx,
                        input,
                        MigrationEvent::Started {
                            live: prepared.live_model,
                            target: target_model,
                        },
                    )
                    .await?;
                }
                lineage(ctx, EventType::Running, "scanning", None).await?;
            }
            Phase::Scanning => {
                catch_up(ctx, input, &building(ctx, input)).await?;
                if !cancelled(ctx) {
                    update(ctx, |p| p.phase = Phase::Evaluating);
                }
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
                    let review_id = new_review_id(ctx);
                    update(ctx, |p| {
                        p.phase = Phase::AwaitingReview;
                        p.open_review(deadline, review_id);
                    });
                    if progress(ctx).migration {
                        migrate(ctx, input, MigrationEvent::AwaitingReview).await?;
                    }
                    lineage(ctx, EventType::Running, "awaiting_review", None).await?;
                } else {
                    update(ctx, |p| p.phase = Phase::Dropping);
                }
            }
            Phase::AwaitingReview => {
                await_review(ctx, input).await?;
                let approved = progress(ctx).review().is_some_and(|r| r.approve);
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
                catch_up(ctx, input, &building(ctx, input)).await?;
                let p = progress(ctx);
                let previous = ctx
                    .execute_activity(
                        JobActivities::swap_alias,
                        SwapAlias {
                            alias: input.alias.clone(),
                            collection: p.target_collection.clone(),
                        },
                        if p.migration { durable() } else { light() },
                    )
                    .await?;
                if let (true, Some(new), Some(old)) = (p.migration, &p.target_model, &p.live_model)
                {
                    // Both collections stay current through the rollback window.
                    migrate(
                        ctx,
                        input,
                        MigrationEvent::CutOver {
                            live: new.clone(),
                            previous: old.clone(),
                        },
                    )
                    .await?;
                    let deadline = review_deadline(ctx, input.rollback_window_secs);
                    update(ctx, |p| {
                        p.rollback_deadline_ms = Some(deadline);
                        p.phase = Phase::RollbackWindow;
                    });
                    lineage(ctx, EventType::Running, "rollback_window", None).await?;
                    continue;
                }
                if let (true, Some(new)) = (p.migration, &p.target_model) {
                    // Nothing served before (or its model is unknown): the new one alone.
                    migrate(
                        ctx,
                        input,
                        MigrationEvent::Bootstrapped { live: new.clone() },
                    )
                    .await?;
                }
                update(ctx, |p| p.phase = Phase::Approved);
                lineage(ctx, EventType::Complete, "approved", None).await?;
                return Ok(result(p, previous, true, "approved".into()));
            }
            Phase::RollbackWindow => {
                await_rollback_or_window_end(ctx, input).await?;
                let rollback = progress(ctx).rollback.is_some();
                update(ctx, |p| {
                    p.phase = if rollback {
                        Phase::RollingBack
                    } else {
                        Phase::ClosingWindow
                    };
                });
            }
            Phase::ClosingWindow => {
                let p = progress(ctx);
                let (Some(new), Some(old)) = (p.target_model.clone(), p.live_model.clone()) else {
                    return unreachable_phase(phase).map(|_| unreachable!());
                };
                migrate(
                    ctx,
                    input,
                    MigrationEvent::WindowClosed {
                        previous: old.clone(),
                    },
                )
                .await?;
                retire(ctx, input, &new.target, &old.collection).await?;
                update(ctx, |p| p.phase = Phase::Approved);
                lineage(ctx, EventType::Complete, "approved", None).await?;
                return Ok(result(
                    progress(ctx),
                    Some(old.collection),
                    true,
                    "approved".into(),
                ));
            }
            Phase::RollingBack => {
                let (Some(new), Some(old)) = (
                    progress(ctx).target_model.clone(),
                    progress(ctx).live_model.clone(),
                ) else {
                    return unreachable_phase(phase).map(|_| unreachable!());
                };
                // The previous collection takes every change up to now, then serves again.
                catch_up(ctx, input, &[old.target.clone(), new.target.clone()]).await?;
                ctx.execute_activity(
                    JobActivities::swap_alias,
                    SwapAlias {
                        alias: input.alias.clone(),
                        collection: old.collection.clone(),
                    },
                    durable(),
                )
                .await?;
                let reason = match &progress(ctx).rollback {
                    Some(r) => format!("rolled back by {}", r.reviewer),
                    None => "rolled back".into(),
                };
                migrate(
                    ctx,
                    input,
                    MigrationEvent::RolledBack {
                        live: old.clone(),
                        rolled_back: new.clone(),
                        reason: reason.clone(),
                    },
                )
                .await?;
                retire(ctx, input, &old.target, &new.collection).await?;
                update(ctx, |p| p.phase = Phase::RolledBack);
                lineage(
                    ctx,
                    EventType::Complete,
                    "rolled_back",
                    Some(reason.clone()),
                )
                .await?;
                let mut done = result(progress(ctx), Some(old.collection), true, reason);
                done.rolled_back = true;
                return Ok(done);
            }
            Phase::Dropping => {
                let p = progress(ctx);
                let reason = match (&p.cancel, &p.gate.review, &p.evaluation) {
                    (Some(c), _, _) => format!("cancelled by {}", c.reviewer),
                    (None, Some(r), _) => format!("rejected by {}", r.reviewer),
                    (None, None, Some(e)) if !e.passed => "evaluation below threshold".to_owned(),
                    _ => "review timed out".to_owned(),
                };
                match (p.migration, &p.target_model, &p.live_model) {
                    (true, Some(new), live) => {
                        migrate(
                            ctx,
                            input,
                            MigrationEvent::Rejected {
                                target: new.clone(),
                                reason: reason.clone(),
                            },
                        )
                        .await?;
                        match live {
                            Some(live) => retire(ctx, input, &live.target, &new.collection).await?,
                            None => {
                                grace(ctx, input).await?;
                                drop_collection(ctx, input, &new.collection).await?;
                                migrate(ctx, input, MigrationEvent::Ended).await?;
                            }
                        }
                    }
                    _ => drop_collection(ctx, input, &p.target_collection).await?,
                }
                update(ctx, |p| p.phase = Phase::Rejected);
                lineage(ctx, EventType::Fail, "rejected", Some(reason.clone())).await?;
                let p = progress(ctx);
                let previous = p.live_collection.clone();
                return Ok(result(p, previous, false, reason));
            }
            Phase::Approved | Phase::Rejected | Phase::RolledBack => {
                unreachable_phase(phase)?;
            }
        }
    }
}

fn result(
    p: ReindexProgress,
    previous: Option<String>,
    approved: bool,
    reason: String,
) -> ReindexResult {
    ReindexResult {
        approved,
        alias: p.alias.clone(),
        new_collection: p.target_collection.clone(),
        previous_collection: previous.or(p.live_collection.clone()),
        review: p.gate.review,
        reason,
        documents_embedded: p.documents_embedded,
        rolled_back: false,
    }
}

fn before_approval(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Preparing | Phase::Scanning | Phase::Evaluating | Phase::AwaitingReview
    )
}

fn cancelled(ctx: &WorkflowContext<ReindexWorkflow>) -> bool {
    progress(ctx).cancel.is_some()
}

/// The models a catch-up writes while the migration is open: the one being built first,
/// then the live one (kept current from the offsets the reindex did not start with).
fn building(ctx: &WorkflowContext<ReindexWorkflow>, input: &ReindexInput) -> Vec<ModelTarget> {
    let p = progress(ctx);
    let mut models = vec![input.target.clone()];
    if p.migration
        && let Some(live) = p.live_model
    {
        models.push(live.target);
    }
    models
}

/// One step of the alias's migration state (an activity).
async fn migrate(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
    event: MigrationEvent,
) -> WorkflowResult<()> {
    ctx.execute_activity(
        JobActivities::migration,
        MigrationStep {
            alias: input.alias.clone(),
            workflow_id: ctx.workflow_id().to_owned(),
            event,
        },
        durable(),
    )
    .await?;
    Ok(())
}

/// Lets every embedder see the state that took `collection` out of use.
async fn grace(ctx: &WorkflowContext<ReindexWorkflow>, input: &ReindexInput) -> WorkflowResult<()> {
    ctx.timer(Duration::from_secs(input.switch_grace_secs.max(1)))
        .await;
    Ok(())
}

async fn drop_collection(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
    collection: &str,
) -> WorkflowResult<()> {
    // Cancelled before `prepare` made anything: nothing to drop.
    if collection.is_empty() {
        return Ok(());
    }
    let options = if progress(ctx).migration {
        durable()
    } else {
        light()
    };
    ctx.execute_activity(
        JobActivities::drop_collection,
        DropCollection {
            alias: input.alias.clone(),
            collection: collection.to_owned(),
        },
        options,
    )
    .await?;
    Ok(())
}

/// The end of a migration, after the state said `retiring` is out of use: wait for the
/// embedders to leave it, bring the collection that stays (`keep`'s) up to the topic's end
/// (what an embedder wrote to the retiring one only, before it switched), drop `retiring`,
/// and settle the state.
async fn retire(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
    keep: &ModelTarget,
    retiring: &str,
) -> WorkflowResult<()> {
    grace(ctx, input).await?;
    // Below the first end the stream had written the kept collection itself: a scan cut
    // short (a reject or cancel while scanning) does not re-embed the corpus into it.
    update(ctx, |p| {
        for x in &mut p.partitions {
            x.done = x.done.max(x.first_end.min(x.end));
        }
    });
    catch_up(ctx, input, std::slice::from_ref(keep)).await?;
    drop_collection(ctx, input, retiring).await?;
    migrate(ctx, input, MigrationEvent::Ended).await
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
    models: &[ModelTarget],
) -> WorkflowResult<()> {
    loop {
        scan_known(ctx, input, models).await?;
        if cancelled(ctx) && before_approval(progress(ctx).phase) {
            return Ok(());
        }
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
                            first_end: low,
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

/// Scans all offsets known so far, one range activity at a time, into the collections of
/// `models` (the first one's always; the others' only for offsets past the reindex's first
/// end: before it, their own stream had written them).
async fn scan_known(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
    models: &[ModelTarget],
) -> WorkflowResult<()> {
    let range = input.range_offsets.max(1);
    let Some((main, others)) = models.split_first() else {
        return Ok(());
    };
    loop {
        if cancelled(ctx) && before_approval(progress(ctx).phase) {
            return Ok(());
        }
        let Some(next) = progress(ctx)
            .partitions
            .iter()
            .find(|p| p.done < p.end)
            .copied()
        else {
            return Ok(());
        };
        let mut to = next.done.saturating_add(range).min(next.end);
        let also = if next.done < next.first_end {
            // A range never straddles the first end.
            to = to.min(next.first_end);
            Vec::new()
        } else {
            others.to_vec()
        };
        let report = ctx
            .execute_activity(
                JobActivities::scan_range,
                ScanRange {
                    target: main.clone(),
                    partition: next.partition,
                    from: next.done,
                    to,
                    tenant: input.tenant.clone(),
                    also,
                    lineage_run_id: progress(ctx).lineage_run_id.clone(),
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
            p.documents_kept_current += report.kept_current;
            p.ranges_done += 1;
            let secs = ((now - p.scan_started_ms) as f64 / 1000.0).max(0.001);
            p.rate_docs_per_s = p.documents_embedded as f64 / secs;
            let (done, total) = p.offsets();
            let offsets_per_s = done as f64 / secs;
            p.eta_secs = (offsets_per_s > 0.0).then(|| (total - done) as f64 / offsets_per_s);
        });
        maybe_continue(ctx, input).await?;
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
        if p.review().is_some() || p.cancel.is_some() {
            return Ok(());
        }
        let now = now_ms(ctx.workflow_time());
        let deadline = p.gate.review_deadline_ms.unwrap_or(now);
        if now >= deadline {
            return Ok(());
        }
        let wait = Duration::from_millis(
            ((deadline - now) as u64).min(input.catch_up_secs.max(1).saturating_mul(1000)),
        );
        if !wait_for_review(ctx, wait).await? {
            catch_up(ctx, input, &building(ctx, input)).await?;
            maybe_continue(ctx, input).await?;
        }
    }
}

/// The rollback window: both collections kept current until `rollback` or the deadline.
async fn await_rollback_or_window_end(
    ctx: &WorkflowContext<ReindexWorkflow>,
    input: &ReindexInput,
) -> WorkflowResult<()> {
    loop {
        let p = progress(ctx);
        if p.rollback.is_some() {
            return Ok(());
        }
        let now = now_ms(ctx.workflow_time());
        let deadline = p.rollback_deadline_ms.unwrap_or(now);
        if now >= deadline {
            return Ok(());
        }
        let wait = Duration::from_millis(
            ((deadline - now) as u64).min(input.catch_up_secs.max(1).saturating_mul(1000)),
        );
        let asked = temporalio_sdk::workflows::select! {
            r = ctx.wait_condition(|s| s.progress.rollback.is_some()) => { r?; true }
            _ = ctx.timer(wait) => false,
        };
        if !asked {
            catch_up(ctx, input, &building(ctx, input)).await?;
            maybe_continue(ctx, input).await?;
        }
    }
}
