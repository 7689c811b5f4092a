//! Work the stream hands to the long-job system (Temporal) instead of doing it inline. The
//! pipeline only knows this trait; the binary implements it with the workflows crate.

use futures::future::BoxFuture;

use crate::PipelineError;

/// A document too large to embed inline: where to read it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeDocumentJob {
    pub doc_id: String,
    pub version: i64,
    pub partition: i32,
    pub offset: i64,
    pub tokens: usize,
    /// The document's trace (`traceparent`), so the job stays on it.
    pub traceparent: String,
}

/// Starts long jobs idempotently (deterministic workflow ids): starting one that exists
/// already is a success that names it.
pub trait Escalator: Send + Sync {
    /// Starts the large-document job; returns its workflow id (`doc-<doc id>-<version>`).
    fn large_document(&self, job: LargeDocumentJob)
    -> BoxFuture<'_, Result<String, PipelineError>>;

    /// Waits until the large-document job of `(doc_id, version)`, if there is one, is
    /// closed: from then on it publishes nothing. The embedder calls it before writing a
    /// delete of a document whose last version may have been escalated, so the job's
    /// vectors can never land after the delete (and resurrect the document).
    fn settle_large_document(
        &self,
        doc_id: String,
        version: i64,
    ) -> BoxFuture<'_, Result<(), PipelineError>>;

    /// Starts the reindex of `alias` to `model_id` (the embedder's model); returns its
    /// workflow id (`reindex-<alias>-<model id>`).
    fn reindex(
        &self,
        alias: String,
        model_id: String,
    ) -> BoxFuture<'_, Result<String, PipelineError>>;
}
