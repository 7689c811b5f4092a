use vecstream_core::{Classify, ErrorClass};

/// Failures at the Kafka/registry edge, each classified for retry or DLQ.
#[derive(Debug, thiserror::Error)]
pub enum KafkaEdgeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry unreachable at {url}: {message}")]
    RegistryUnreachable { url: String, message: String },
    /// The registry refused our credentials (401) or their rights (403).
    #[error(
        "schema registry at {url} refused {} ({status} for {what}); check registry.username \
         and registry.password",
        user.as_deref().map(|u| format!("user {u:?}")).unwrap_or_else(|| "anonymous access".into())
    )]
    RegistryAccess {
        url: String,
        status: u16,
        what: String,
        user: Option<String>,
    },
    #[error("schema registry answered {status} for {what}: {body}")]
    Registry {
        status: u16,
        what: String,
        body: String,
    },
    /// The registry's own answer that something does not exist (HTTP 404 with an
    /// `error_code`).
    #[error("schema registry: {what} not found: {body}")]
    NotFound { what: String, body: String },
    /// An answer that is not the registry's API (not JSON, or not the expected JSON): a
    /// proxy or a wrong URL; retried, never taken as an answer about the record.
    #[error("schema registry at {url} gave no API answer for {what}: {message}")]
    RegistryAnswer {
        url: String,
        what: String,
        message: String,
    },
    #[error("schema id {0} is not known to the registry")]
    UnknownSchemaId(u32),
    #[error("schema id {id} is not a version of subject {subject}")]
    NotInSubject { id: u32, subject: String },
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
    /// The brokers refused our credentials or their certificate is not trusted: a
    /// configuration problem, said at start instead of as a timeout.
    #[error("kafka at {brokers}: {reason}")]
    Access { brokers: String, reason: String },
}

impl Classify for KafkaEdgeError {
    fn class(&self) -> ErrorClass {
        use rdkafka::types::RDKafkaErrorCode as C;
        match self {
            // Unreachable, overloaded, refusing our credentials or answering with something
            // else than its API: the registry's problem, not the record's. Retried (the
            // partition pauses and the log and metrics say why) until it answers.
            KafkaEdgeError::RegistryUnreachable { .. }
            | KafkaEdgeError::RegistryAnswer { .. }
            | KafkaEdgeError::RegistryAccess { .. } => ErrorClass::Retryable,
            KafkaEdgeError::Registry { status, .. }
                if *status >= 500 || matches!(*status, 404 | 408 | 429) =>
            {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_that_cannot_answer_is_retried_and_a_record_it_rejects_is_not() {
        let status = |status| KafkaEdgeError::Registry {
            status,
            what: "schema id 1".into(),
            body: String::new(),
        };
        for code in [404, 408, 429, 500, 502, 503] {
            assert_eq!(status(code).class(), ErrorClass::Retryable, "{code}");
        }
        // 401/403 are `RegistryAccess` (the registry refusing us, not the record).
        let refused = KafkaEdgeError::RegistryAccess {
            url: "https://registry".into(),
            status: 401,
            what: "schema id 1".into(),
            user: Some("svc".into()),
        };
        assert_eq!(refused.class(), ErrorClass::Retryable);
        assert!(refused.to_string().contains("registry.password"));
        for code in [400, 409, 422] {
            assert_eq!(status(code).class(), ErrorClass::Permanent, "{code}");
        }
        let html = KafkaEdgeError::RegistryAnswer {
            url: "http://proxy".into(),
            what: "schema id 1".into(),
            message: "expected value: <html>".into(),
        };
        assert_eq!(html.class(), ErrorClass::Retryable);
        let foreign = KafkaEdgeError::NotInSubject {
            id: 7,
            subject: "docs.documents.v1-value".into(),
        };
        assert_eq!(foreign.class(), ErrorClass::Permanent);
        assert_eq!(
            KafkaEdgeError::UnknownSchemaId(7).class(),
            ErrorClass::Permanent
        );
    }
}
