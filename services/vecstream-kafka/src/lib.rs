//! Kafka and schema-registry edge of vecstream.

mod error;
pub mod publisher;
pub mod registry;
pub mod scan;
pub mod schemas;
pub mod topics;
pub mod trace_headers;
pub mod wire;

pub use error::KafkaEdgeError;
pub use publisher::DocumentPublisher;
pub use registry::SchemaRegistry;
pub use trace_headers::{traceparent_of, with_traceparent};

use vecstream_config::KafkaConfig;

/// librdkafka settings shared by every client vecstream creates: brokers, security and
/// client id. Secrets go to librdkafka only, never to logs.
pub fn client_config(cfg: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id)
        .set("security.protocol", cfg.security_protocol.to_lowercase());
    if !cfg.sasl_mechanism.is_empty() {
        c.set("sasl.mechanism", &cfg.sasl_mechanism)
            .set("sasl.username", &cfg.sasl_username)
            .set("sasl.password", cfg.sasl_password.expose());
    }
    if !cfg.ssl_ca_location.is_empty() {
        c.set("ssl.ca.location", &cfg.ssl_ca_location);
    }
    c.set("socket.timeout.ms", cfg.request_timeout_ms.to_string());
    c
}

/// An idempotent producer (`acks=all`) that accepts records up to the largest vecstream
/// topic's limit: retries never duplicate or reorder the records of a key.
pub fn idempotent_producer(
    cfg: &KafkaConfig,
) -> Result<rdkafka::producer::FutureProducer, rdkafka::error::KafkaError> {
    client_config(cfg)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.max.bytes", topics::MAX_RECORD_BYTES)
        .create()
}
