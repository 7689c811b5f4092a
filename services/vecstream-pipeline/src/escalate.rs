//! Work the stream hands to the long-job system (Temporal) instead of doing it inline. The
//! pipeline only knows this trait; the binary implements it with the workflows crate.

use futures::future::BoxFuture;

use crate::PipelineError;

/// A document too large to embed inline: where to read it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeDocumentJob {
    pub tenant: String,
    pub doc_id: String,
    pub version: i64,
    /// The model the job embeds with (the embedder's) and the content it was decided on:
    /// both are part of the job's id.
    pub model_id: String,
    pub content_hash: String,
    pub partition: i32,
    pub offset: i64,
    pub tokens: usize,
    /// The document's trace (`traceparent`), so the job stays on it.
    pub traceparent: String,
}

/// Starts long jobs idempotently (deterministic workflow ids): starting one that exists
/// already is a success that names it.
pub trait Escalator: Send + Sync {
    /// Starts the large-document job; returns its workflow id
    /// ([`vecstream_core::large_document_workflow_id`]).
    fn large_document(&self, job: LargeDocumentJob)
    -> BoxFuture<'_, Result<String, PipelineError>>;

    /// True when the large-document job `workflow_id` is closed (or never existed): from
    /// then on it publishes nothing. While it runs, asks it to stop (the delete supersedes
    /// it; its workflow closes once the activity stopped) and answers false without
    /// waiting. The embedder asks for every job of a document it remembers before writing
    /// the document's delete, so no job's vectors can land after the delete (and
    /// resurrect the document); until then only that partition waits.
    fn large_document_closed(
        &self,
        workflow_id: String,
    ) -> BoxFuture<'_, Result<bool, PipelineError>>;

    /// Starts the reindex of `alias` to `model_id` (the embedder's model); returns its
    /// workflow id (`reindex-<alias>-<model id>`).
    fn reindex(
        &self,
        alias: String,
        model_id: String,
    ) -> BoxFuture<'_, Result<String, PipelineError>>;
}
