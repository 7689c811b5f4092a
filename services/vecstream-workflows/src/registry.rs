//! The one registry of long jobs: each workflow's name, task queue and start policy, and
//! the worker options of each queue. Every start goes through [`start_reindex`],
//! [`start_evaluation`] or [`start_finetune`], so input is validated in one place.

use std::time::Duration;

use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    Client, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use temporalio_sdk::WorkerOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder, WorkerTuner};
use vecstream_config::Config;
use vecstream_pipeline::PipelineMetrics;

use crate::types::{
    EvaluateInput, FineTuneInput, ReindexInput, eval_workflow_id, finetune_workflow_id,
    reindex_workflow_id,
};
use crate::{EvaluateWorkflow, HealthActivities, HealthCheckWorkflow, JobActivities};
use crate::{ReindexWorkflow, TemporalError};

/// Which queue a worker polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// Workflows and light activities.
    Cpu,
    /// Embedding activities.
    Gpu,
}

/// Worker options for the health check only (tests and `status --workflow`).
pub fn worker_options(task_queue: &str) -> Result<WorkerOptions, TemporalError> {
    Ok(WorkerOptions::new(task_queue)
        .register_workflow::<HealthCheckWorkflow>()
        .map_err(|e| TemporalError::Worker(e.to_string()))?
        .register_activities(HealthActivities)
        .build())
}

/// Options of a worker on one of vecstream's queues: every workflow, every activity, and
/// the queue's concurrency limit (`temporal.cpu_concurrency` / `gpu_concurrency`).
pub fn job_worker_options(
    config: &Config,
    role: QueueRole,
    metrics: PipelineMetrics,
) -> Result<WorkerOptions, TemporalError> {
    let (queue, slots) = match role {
        QueueRole::Cpu => (
            &config.temporal.cpu_task_queue,
            config.temporal.cpu_concurrency,
        ),
        QueueRole::Gpu => (
            &config.temporal.gpu_task_queue,
            config.temporal.gpu_concurrency,
        ),
    };
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(32))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots.max(1)))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(8))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    let worker =
        |e: temporalio_sdk::WorkflowRegistrationError| TemporalError::Worker(e.to_string());
    Ok(WorkerOptions::new(queue.as_str())
        .register_workflow::<HealthCheckWorkflow>()
        .map_err(worker)?
        .register_workflow::<ReindexWorkflow>()
        .map_err(worker)?
        .register_workflow::<EvaluateWorkflow>()
        .map_err(worker)?
        .register_workflow::<crate::LargeDocumentWorkflow>()
        .map_err(worker)?
        .register_workflow::<crate::FineTuneWorkflow>()
        .map_err(worker)?
        .register_activities(HealthActivities)
        .register_activities(crate::finetune::FineTuneActivities::new(
            JobActivities::new(config.clone(), metrics.clone()),
        ))
        .register_activities(JobActivities::new(config.clone(), metrics))
        .tuner(WorkerTuner::from(tuner))
        .build())
}

/// A refused start: "already started" by its typed error, anything else as the server said.
fn refused(workflow_id: &str, e: WorkflowStartError) -> TemporalError {
    if crate::errors::is_already_started(&e) {
        let run_id = match &e {
            WorkflowStartError::AlreadyStarted { run_id, .. } => run_id.clone(),
            _ => None,
        };
        return TemporalError::AlreadyStarted {
            workflow_id: workflow_id.to_owned(),
            run_id,
        };
    }
    TemporalError::Workflow {
        workflow_id: workflow_id.to_owned(),
        message: e.to_string(),
    }
}

/// The start of `workflow_id` signed with this process's reviewer key (`review.key`), if
/// it has one: the four-eyes rule's proof of who started the job.
fn signed_start(
    config: &Config,
    workflow_id: &str,
) -> Result<Option<crate::signing::SignedStatement>, TemporalError> {
    if config.review.key.is_empty() {
        return Ok(None);
    }
    let key = crate::signing::ReviewerKey::load(std::path::Path::new(&config.review.key))
        .map_err(|e| TemporalError::Config(format!("review.key: {e}")))?;
    Ok(Some(
        key.sign(&crate::signing::Statement::start(workflow_id)),
    ))
}

/// Validates and starts a fine-tuning job on the cpu queue with its deterministic id
/// (`finetune-<base model id>-<dataset hash>`): the pairs file is read and checked here, so
/// bad input is refused before anything starts; a second start of the same job is refused
/// while it runs or after it completed.
pub async fn start_finetune(
    client: &Client,
    config: &Config,
    input: FineTuneInput,
    base_model_id: &str,
) -> Result<String, TemporalError> {
    let invalid = |e: crate::JobError| TemporalError::Config(e.to_string());
    let file = crate::finetune::load_pairs(&input.pairs).map_err(invalid)?;
    crate::finetune::summarize(&file, input.held_out_fraction, base_model_id).map_err(invalid)?;
    let t = &input.train;
    let positive = |x: f32| x.is_finite() && x > 0.0;
    if t.epochs == 0 || t.batch_size < 2 || !positive(t.learning_rate) || !positive(t.temperature) {
        return Err(TemporalError::Config(
            "epochs must be positive, batch size at least 2, learning rate and temperature              positive"
                .into(),
        ));
    }
    if input.review_timeout_secs == 0 {
        return Err(TemporalError::Config(
            "the review timeout must be positive".into(),
        ));
    }
    let id = finetune_workflow_id(base_model_id, &file.sha);
    let input = FineTuneInput {
        starter: signed_start(config, &id)?,
        ..input
    };
    let options = WorkflowStartOptions::new(config.temporal.cpu_task_queue.as_str(), id.clone())
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .build();
    client
        .start_workflow(crate::FineTuneWorkflow::run, input, options)
        .await
        .map_err(|e| refused(&id, e))?;
    Ok(id)
}

/// Validates and starts a reindex on the cpu queue with its deterministic id; a second
/// start of the same reindex (same alias and model id) is refused while one runs or after
/// one completed; a failed, cancelled or terminated one may be started again.
pub async fn start_reindex(
    client: &Client,
    config: &Config,
    input: ReindexInput,
) -> Result<String, TemporalError> {
    if input.alias.is_empty() || input.target_model_id.is_empty() {
        return Err(TemporalError::Config(
            "a reindex needs an alias and a target model".into(),
        ));
    }
    if input.review_timeout_secs == 0 {
        return Err(TemporalError::Config(
            "the review timeout must be positive".into(),
        ));
    }
    if let Some(spec) = &input.eval {
        crate::eval::load_suite(&spec.suite).map_err(TemporalError::Config)?;
    }
    let id = reindex_workflow_id(&input.alias, &input.target_model_id);
    let input = ReindexInput {
        starter: signed_start(config, &id)?,
        ..input
    };
    let options = WorkflowStartOptions::new(config.temporal.cpu_task_queue.as_str(), id.clone())
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .build();
    client
        .start_workflow(ReindexWorkflow::run, input, options)
        .await
        .map_err(|e| refused(&id, e))?;
    Ok(id)
}

/// Starts an evaluation of collections on a suite (id `eval-<collection>-<suite>`, the
/// last collection naming it); a running one with the same id is refused.
pub async fn start_evaluation(
    client: &Client,
    config: &Config,
    input: EvaluateInput,
    timeout: Duration,
) -> Result<String, TemporalError> {
    let Some((last, _)) = input.collections.last() else {
        return Err(TemporalError::Config("nothing to evaluate".into()));
    };
    crate::eval::load_suite(&input.spec.suite).map_err(TemporalError::Config)?;
    // One tenant's evaluation does not stand in for another's.
    let id = match &input.spec.tenant {
        Some(t) => format!("{}-{t}", eval_workflow_id(last, &input.spec.suite)),
        None => eval_workflow_id(last, &input.spec.suite),
    };
    let options = WorkflowStartOptions::new(config.temporal.cpu_task_queue.as_str(), id.clone())
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .execution_timeout(timeout)
        .build();
    client
        .start_workflow(EvaluateWorkflow::run, input, options)
        .await
        .map_err(|e| refused(&id, e))?;
    Ok(id)
}
