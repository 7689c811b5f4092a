use vecstream_core::{Classify, ErrorClass};

/// Failures at the Kafka/registry edge, each classified for retry or DLQ.
#[derive(Debug, thiserror::Error)]
pub enum KafkaEdgeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry unreachable at {url}: {message}")]
    RegistryUnreachable { url: String, message: String },
    #[error("schema registry answered {status} for {what}: {body}")]
    Registry {
        status: u16,
        what: String,
        body: String,
    },
    #[error("schema id {0} is not known to the registry")]
    UnknownSchemaId(u32),
    #[error("not Confluent wire format: {0}")]
    WireFormat(String),
    #[error("invalid Avro schema: {0}")]
    Schema(String),
    #[error("Avro encoding failed: {0}")]
    Encode(String),
    #[error("Avro decoding failed: {0}")]
    Decode(String),
    #[error("topic {topic}: {message}")]
    Topic { topic: String, message: String },
}

impl Classify for KafkaEdgeError {
    fn class(&self) -> ErrorClass {
        use rdkafka::types::RDKafkaErrorCode as C;
        match self {
            KafkaEdgeError::RegistryUnreachable { .. } => ErrorClass::Retryable,
            KafkaEdgeError::Registry { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            KafkaEdgeError::Kafka(e) => match e.rdkafka_error_code() {
                Some(C::MessageSizeTooLarge | C::InvalidMessage | C::InvalidRecord) => {
                    ErrorClass::Permanent
                }
                _ => ErrorClass::Retryable,
            },
            KafkaEdgeError::Topic { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}
