//! [`Escalator`] on Temporal: the stream embedder's way to start long jobs.

use futures::future::BoxFuture;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowExecutionStatus,
    WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use tokio::sync::OnceCell;
use vecstream_config::Config;
use vecstream_pipeline::{Escalator, LargeDocumentJob, PipelineError};

use crate::types::{LargeDocumentInput, ModelTarget, ReindexInput};
use crate::{LargeDocumentWorkflow, TemporalError};

/// Starts `LargeDocumentWorkflow`s and reindexes; connects on first use, so an embedder
/// that never escalates never needs Temporal.
pub struct TemporalEscalator {
    config: Config,
    client: OnceCell<Client>,
}

impl std::fmt::Debug for TemporalEscalator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalEscalator")
            .field("address", &self.config.temporal.address)
            .finish()
    }
}

fn escalation(e: TemporalError) -> PipelineError {
    use vecstream_core::Classify;
    PipelineError::Escalation {
        retryable: e.class().is_retryable(),
        message: e.to_string(),
    }
}

impl TemporalEscalator {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            client: OnceCell::new(),
        }
    }

    /// The configured model, for the jobs this embedder starts.
    fn target(&self) -> Result<ModelTarget, PipelineError> {
        ModelTarget::configured(&self.config.engine).map_err(PipelineError::Config)
    }

    async fn client(&self) -> Result<&Client, PipelineError> {
        self.client
            .get_or_try_init(|| crate::connect(&self.config.temporal))
            .await
            .map_err(escalation)
    }
}

impl Escalator for TemporalEscalator {
    fn large_document(
        &self,
        job: LargeDocumentJob,
    ) -> BoxFuture<'_, Result<String, PipelineError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let id = vecstream_core::large_document_workflow_id(
                &job.tenant,
                &job.doc_id,
                job.version,
                &job.model_id,
                &job.content_hash,
            );
            let input = LargeDocumentInput {
                tenant: job.tenant,
                doc_id: job.doc_id,
                version: job.version,
                partition: job.partition,
                offset: job.offset,
                target: self.target()?,
                traceparent: Some(job.traceparent).filter(|t| !t.is_empty()),
                gpu_queue: self.config.temporal.gpu_task_queue.clone(),
            };
            let options =
                WorkflowStartOptions::new(self.config.temporal.cpu_task_queue.as_str(), id.clone())
                    .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
                    .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
                    .build();
            match client
                .start_workflow(LargeDocumentWorkflow::run, input, options)
                .await
            {
                Ok(_) => Ok(id),
                // Started before (by another embedder, or an earlier attempt): the idempotent
                // success.
                Err(e) if crate::errors::is_already_started(&e) => Ok(id),
                Err(e) => Err(PipelineError::Escalation {
                    message: format!("{id}: {e}"),
                    retryable: true,
                }),
            }
        })
    }

    fn large_document_closed(&self, id: String) -> BoxFuture<'_, Result<bool, PipelineError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let handle = client.get_workflow_handle::<LargeDocumentWorkflow>(&id);
            let status = match handle.describe(WorkflowDescribeOptions::default()).await {
                Ok(d) => d.status(),
                Err(WorkflowInteractionError::NotFound(_)) => return Ok(true),
                Err(e) => {
                    return Err(PipelineError::Escalation {
                        message: format!("describing {id}: {e}"),
                        retryable: true,
                    });
                }
            };
            if status != WorkflowExecutionStatus::Running {
                return Ok(true);
            }
            // Superseded by the delete: stop it (idempotent; the activity sees it at its
            // next heartbeat, and the workflow waits for the activity to stop).
            if let Err(e) = handle.cancel(WorkflowCancelOptions::default()).await {
                tracing::warn!(workflow_id = %id, error = %e, "asking a superseded large-document job to stop failed");
            }
            Ok(false)
        })
    }

    fn reindex(
        &self,
        alias: String,
        model_id: String,
    ) -> BoxFuture<'_, Result<String, PipelineError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let input = ReindexInput {
                alias,
                target: self.target()?,
                target_model_id: model_id,
                eval: None,
                review_timeout_secs: self.config.temporal.review_timeout_secs,
                range_offsets: self.config.temporal.reindex_range_offsets,
                catch_up_secs: self.config.temporal.reindex_catch_up_secs,
                tenant: None,
                gpu_queue: self.config.temporal.gpu_task_queue.clone(),
                heartbeat_secs: 20,
                history_budget: 4_000,
                rollback_window_secs: self.config.temporal.rollback_window_secs,
                switch_grace_secs: self.config.temporal.switch_grace_secs,
                carried: None,
                starter: None,
            };
            let id = crate::reindex_workflow_id(&input.alias, &input.target_model_id);
            match crate::registry::start_reindex(client, &self.config, input).await {
                Ok(id) => Ok(id),
                Err(TemporalError::AlreadyStarted { .. }) => Ok(id),
                Err(e) => Err(escalation(e)),
            }
        })
    }
}
