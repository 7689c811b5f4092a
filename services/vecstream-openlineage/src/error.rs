//! Errors of the exporter.

use vecstream_kafka::KafkaEdgeError;

/// Why the exporter could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum OpenLineageError {
    #[error(transparent)]
    Kafka(#[from] KafkaEdgeError),
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("openlineage.http_url {url}: {message}")]
    Http { url: String, message: String },
    #[error("openlineage: {0}")]
    Config(String),
}
