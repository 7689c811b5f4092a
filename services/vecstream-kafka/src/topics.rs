//! The topics of DESIGN section 2: creation and the metadata health check.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use vecstream_config::KafkaConfig;
use vecstream_core::topics;

use crate::{KafkaEdgeError, client_config};

/// One topic vecstream owns and how it is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: &'static str,
    /// Partitions; `None` = `kafka.partitions`.
    pub partitions: Option<i32>,
    /// Topic-level configs (`cleanup.policy`, `retention.ms`...).
    pub configs: Vec<(&'static str, &'static str)>,
}

const THIRTY_DAYS_MS: &str = "2592000000";
/// Largest record of the vectors topic (16 MiB): one record holds every chunk of a version.
pub const MAX_RECORD_BYTES: &str = "16777216";
/// Largest record of the documents topic (8 MiB): above `embedder.max_body_bytes` (4 MiB by
/// default) plus the record's other fields, so an oversize body reaches the embedder and is
/// dead-lettered with its reason instead of being refused to the producer without one.
pub const DOCUMENTS_MAX_RECORD_BYTES: &str = "8388608";
/// Largest record of the dead-letter topic (20 MiB): the largest record it copies (a
/// vectors record) plus room for the error headers. Producers accept records up to it.
pub const DLQ_MAX_RECORD_BYTES: &str = "20971520";
/// What a broker accepts when neither it nor the topic says otherwise (`message.max.bytes`).
pub const BROKER_DEFAULT_MAX_RECORD_BYTES: usize = 1_048_588;

/// The four topics of DESIGN section 2 and the embedder's internal state topic, with the
/// documents and state topics compacted (it is the source of truth that a
/// reindex re-reads) and the others kept 30 days.
pub fn specs() -> Vec<TopicSpec> {
    vec![
        TopicSpec {
            partitions: None,
            name: topics::DOCUMENTS,
            // Compaction keeps the latest version of each id; a tombstone is kept a day so
            // consumers that lag see the delete before it is compacted away.
            configs: vec![
                ("cleanup.policy", "compact"),
                ("delete.retention.ms", "86400000"),
                ("max.message.bytes", DOCUMENTS_MAX_RECORD_BYTES),
            ],
        },
        TopicSpec {
            partitions: None,
            name: topics::VECTORS,
            // One record holds every chunk of a document version: allow large ones.
            configs: vec![
                ("cleanup.policy", "delete"),
                ("retention.ms", THIRTY_DAYS_MS),
                ("max.message.bytes", MAX_RECORD_BYTES),
            ],
        },
        TopicSpec {
            partitions: None,
            name: topics::EMBEDDER_STATE,
            configs: vec![("cleanup.policy", "compact")],
        },
        TopicSpec {
            partitions: None,
            name: topics::LINEAGE,
            configs: vec![
                ("cleanup.policy", "delete"),
                ("retention.ms", THIRTY_DAYS_MS),
            ],
        },
        TopicSpec {
            partitions: None,
            name: topics::DOCUMENTS_DLQ,
            configs: vec![
                ("cleanup.policy", "delete"),
                ("retention.ms", THIRTY_DAYS_MS),
                ("max.message.bytes", DLQ_MAX_RECORD_BYTES),
            ],
        },
        TopicSpec {
            name: topics::CONTROL,
            // Small and read whole by every embedder: one partition keeps the read simple.
            partitions: Some(1),
            configs: vec![("cleanup.policy", "compact")],
        },
    ]
}

/// What [`ensure_topics`] did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    /// False when the topic already existed (left as it is).
    pub created: bool,
}

/// Creates the missing topics of [`specs`]; existing topics are left untouched.
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<Vec<TopicOutcome>, KafkaEdgeError> {
    // Refused credentials or an untrusted certificate: said now, not as an admin timeout.
    cluster_info(cfg).await?;
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let specs = specs();
    let new: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(
                    s.name,
                    s.partitions.unwrap_or(cfg.partitions),
                    TopicReplication::Fixed(cfg.replication_factor),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts =
        AdminOptions::new().operation_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)));
    let results = admin.create_topics(&new, &opts).await?;
    results
        .into_iter()
        .map(|r| match r {
            Ok(name) => Ok(TopicOutcome {
                name,
                created: true,
            }),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => Ok(TopicOutcome {
                name,
                created: false,
            }),
            Err((name, code)) => Err(KafkaEdgeError::Topic {
                topic: name,
                message: code.to_string(),
            }),
        })
        .collect()
}

/// The largest record `topic` accepts (its `max.message.bytes`, as the brokers report it;
/// topics created before vecstream sized them keep the broker's default). `None` when the
/// brokers do not say (the caller assumes the broker default).
pub async fn max_record_bytes(
    cfg: &KafkaConfig,
    topic: &str,
) -> Result<Option<usize>, KafkaEdgeError> {
    use rdkafka::admin::ResourceSpecifier;
    let admin: AdminClient<DefaultClientContext> = client_config(cfg).create()?;
    let opts =
        AdminOptions::new().request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await?;
    Ok(described
        .into_iter()
        .filter_map(Result::ok)
        .find_map(|r| r.get("max.message.bytes")?.value.as_deref()?.parse().ok()))
}

/// The largest dead letter this deployment can write: the DLQ topic's limit, within what
/// producers accept. Asked of the brokers once per component start; the broker default
/// when they cannot say.
pub async fn dlq_record_limit(cfg: &KafkaConfig) -> usize {
    let producer_limit: usize = DLQ_MAX_RECORD_BYTES.parse().unwrap_or(usize::MAX);
    match max_record_bytes(cfg, topics::DOCUMENTS_DLQ).await {
        Ok(Some(limit)) => limit.min(producer_limit),
        Ok(None) | Err(_) => BROKER_DEFAULT_MAX_RECORD_BYTES,
    }
}

/// What the brokers say about the cluster.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub brokers: Vec<String>,
    pub topics: Vec<String>,
}

/// Records the first authentication or TLS failure librdkafka reports: without it, wrong
/// credentials or an untrusted certificate surface only as a timeout.
#[derive(Debug, Default)]
struct AccessContext {
    failure: std::sync::Mutex<Option<String>>,
}

impl AccessContext {
    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl rdkafka::ClientContext for AccessContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let access = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
        ) || reason.contains("SSL")
            || reason.contains("SASL");
        if access {
            self.failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| reason.to_owned());
        } else {
            tracing::debug!(error = %error, reason, "kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for AccessContext {}

/// What to check when the brokers refuse us.
fn access_reason(cfg: &KafkaConfig, failure: &str) -> String {
    if failure.contains("SSL") && !failure.contains("SASL") {
        format!(
            "TLS with the brokers failed ({failure}); check kafka.ssl_ca_location (the CA \
             that signs the brokers' certificates) and kafka.security_protocol"
        )
    } else {
        format!(
            "authentication failed as user {:?} ({} {}): {failure}; check \
             kafka.sasl_username and kafka.sasl_password",
            cfg.sasl_username, cfg.security_protocol, cfg.sasl_mechanism
        )
    }
}

/// Fetches cluster metadata: the Kafka health check of `vecstream status`, and every
/// component's first contact with the brokers. Refused credentials or an untrusted
/// certificate are [`KafkaEdgeError::Access`], said as soon as librdkafka reports them
/// (not after the request timeout).
pub async fn cluster_info(cfg: &KafkaConfig) -> Result<ClusterInfo, KafkaEdgeError> {
    let consumer: BaseConsumer<AccessContext> =
        client_config(cfg).create_with_context(AccessContext::default())?;
    let deadline = std::time::Instant::now() + Duration::from_millis(cfg.request_timeout_ms);
    let cfg = cfg.clone();
    // librdkafka's metadata call blocks; keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match consumer.fetch_metadata(None, left.min(Duration::from_millis(500))) {
                Ok(md) => {
                    return Ok(ClusterInfo {
                        brokers: md
                            .brokers()
                            .iter()
                            .map(|b| format!("{}:{}", b.host(), b.port()))
                            .collect(),
                        topics: md.topics().iter().map(|t| t.name().to_owned()).collect(),
                    });
                }
                Err(e) => {
                    // Serves librdkafka's error events (they reach the context on poll).
                    let _ = consumer.poll(Duration::ZERO);
                    if let Some(failure) = consumer.context().failure() {
                        return Err(KafkaEdgeError::Access {
                            brokers: cfg.brokers.clone(),
                            reason: access_reason(&cfg, &failure),
                        });
                    }
                    if left.is_zero() {
                        return Err(e.into());
                    }
                    // A metadata call that fails at once (no broker resolvable) must not spin.
                    std::thread::sleep(Duration::from_millis(100).min(left));
                }
            }
        }
    })
    .await
    .map_err(|e| KafkaEdgeError::Topic {
        topic: "*".into(),
        message: e.to_string(),
    })?
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_and_state_topics_are_compacted_and_others_are_not() {
        use vecstream_core::topics::{CONTROL, DOCUMENTS, EMBEDDER_STATE};
        let specs = super::specs();
        assert_eq!(specs.len(), 6);
        for s in specs {
            let compacted = s.configs.contains(&("cleanup.policy", "compact"));
            assert_eq!(
                compacted,
                s.name == DOCUMENTS || s.name == EMBEDDER_STATE || s.name == CONTROL,
                "{}",
                s.name
            );
        }
    }
}
