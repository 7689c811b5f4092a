use vecstream_core::{Classify, ErrorClass};
use vecstream_engine::EngineError;
use vecstream_kafka::KafkaEdgeError;
use vecstream_weaviate::WeaviateError;

/// Failures of the pipeline, classified: retryable ones pause and retry the batch,
/// permanent ones stop the component with a clear message.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Kafka(#[from] KafkaEdgeError),
    #[error(transparent)]
    Weaviate(#[from] WeaviateError),
    #[error("embedding engine: {0}")]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Provider(#[from] vecstream_providers::ProviderError),
    /// A remote provider refused the batch (a rejected key, an unknown model, an input over
    /// its limits) and no fallback took it: the batch waits, its partitions paused, until the
    /// provider is fixed (or a fallback is configured), instead of the embedder exiting and
    /// starting again on the same batch.
    #[error("{0} (the batch waits until the provider accepts it or a fallback takes it)")]
    ProviderRefused(vecstream_providers::ProviderError),
    #[error("kafka transaction: {message}")]
    Transaction { message: String, retryable: bool },
    #[error("restoring the embedder state of partition {partition}: {message}")]
    StateRestore { partition: i32, message: String },
    /// Work handed to a blocking thread did not come back (it panicked or the runtime is
    /// shutting down): retried.
    #[error("{what} on a blocking thread failed: {message}")]
    Blocking { what: &'static str, message: String },
    #[error("{0}")]
    Config(String),
    #[error("starting a long job on Temporal: {message}")]
    Escalation { message: String, retryable: bool },
    /// A chunk collection whose schema is not the one vecstream creates (auto-schema
    /// guessed it): nothing is written to it until an operator drops or fixes it.
    #[error(
        "collection {collection} does not have vecstream's schema ({differences}); \
         was it created by Weaviate's auto-schema? Drop it (a reindex re-creates it) or fix it"
    )]
    Schema {
        collection: String,
        differences: String,
    },
    /// A reindex scan met a collection that does not exist (yet): retried, never skipped.
    #[error("collection {collection} does not exist (still propagating, or dropped)")]
    MissingCollection { collection: String },
    /// A failure that can pass did not, after as many attempts as the operation allows.
    #[error("{what}: gave up after {attempts} attempts: {last}")]
    GaveUp {
        what: &'static str,
        attempts: u32,
        last: String,
    },
}

impl From<rdkafka::error::KafkaError> for PipelineError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        PipelineError::Kafka(KafkaEdgeError::Kafka(e))
    }
}

impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Kafka(e) => e.class(),
            PipelineError::Weaviate(e) => e.class(),
            // A device error that passes (out of memory, a restarting engine) retries the batch.
            PipelineError::Engine(e) => e.class(),
            // A provider down, throttling or with its circuit open: the batch waits.
            PipelineError::Provider(e) => e.class(),
            PipelineError::ProviderRefused(_) => ErrorClass::Retryable,
            PipelineError::Config(_) => ErrorClass::Permanent,
            PipelineError::Transaction { retryable, .. }
            | PipelineError::Escalation { retryable, .. } => {
                if *retryable {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                }
            }
            PipelineError::StateRestore { .. } | PipelineError::Blocking { .. } => {
                ErrorClass::Retryable
            }
            // Loses nothing: the batch waits (and says why) until the collection is fixed.
            PipelineError::Schema { .. } | PipelineError::MissingCollection { .. } => {
                ErrorClass::Retryable
            }
            PipelineError::GaveUp { .. } => ErrorClass::Permanent,
        }
    }
}
