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

/// The configuration of an idempotent producer (`acks=all`, zstd, 5 ms linger) that accepts
/// records up to the largest vecstream topic's limit: retries never duplicate or reorder
/// the records of a key. The embedder adds its transactional id to it.
pub fn idempotent_config(cfg: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = client_config(cfg);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "zstd")
        .set("linger.ms", "5")
        .set("message.max.bytes", topics::DLQ_MAX_RECORD_BYTES);
    c
}

/// An idempotent producer ([`idempotent_config`]).
pub fn idempotent_producer(
    cfg: &KafkaConfig,
) -> Result<rdkafka::producer::FutureProducer, rdkafka::error::KafkaError> {
    idempotent_config(cfg).create()
}
