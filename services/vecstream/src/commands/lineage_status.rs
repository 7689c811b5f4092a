//! `vecstream lineage status DOC_ID`: a freshness receipt. Where one document version is,
//! from its lineage events (accepted, embedded, indexed, dead-lettered) and from Weaviate
//! itself (searchable: the alias's collection holds its chunks), in one line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use vecstream_config::Config;
use vecstream_core::{LineageEvent, printable, topics};
use vecstream_kafka::{SchemaRegistry, scan};
use vecstream_weaviate::WeaviateClient;

use super::lineage::{decode, format_ms};

/// What was asked.
pub struct Ask<'a> {
    pub doc_id: &'a str,
    pub tenant: &'a str,
    pub version: Option<i64>,
    /// `--wait`, with its timeout.
    pub wait: Option<Duration>,
    pub json: bool,
}

/// One step of the receipt: when, and what it says.
#[derive(Debug, Clone, serde::Serialize)]
struct Step {
    at: String,
    #[serde(skip)]
    at_ms: i64,
    detail: String,
}

/// Where one version is.
#[derive(Debug, Default, serde::Serialize)]
struct Receipt {
    doc_id: String,
    tenant: String,
    version: Option<i64>,
    state: &'static str,
    accepted: Option<Step>,
    embedded: Option<Step>,
    indexed: Option<Step>,
    searchable: Option<Step>,
    deleted: Option<Step>,
    dead_lettered: Option<Step>,
    escalated: Option<Step>,
    /// Newer versions the embedder accepted since.
    newest_accepted: Option<i64>,
}

impl Receipt {
    /// Folds one of the document's lineage events in.
    fn add(&mut self, e: &LineageEvent) {
        let f = &e.vecstream;
        if f.stage == "embed:received"
            && let Some(v) = f.doc_version
        {
            if self.version.is_none() && self.newest_accepted.is_some_and(|n| v > n) {
                // A newer version supersedes what was gathered about the older one.
                *self = Receipt {
                    doc_id: std::mem::take(&mut self.doc_id),
                    tenant: std::mem::take(&mut self.tenant),
                    ..Default::default()
                };
            }
            self.newest_accepted = Some(self.newest_accepted.map_or(v, |n| n.max(v)));
        }
        // Without a version asked, the newest accepted one; events of others are history.
        let of_version = match (self.version.or(self.newest_accepted), f.doc_version) {
            (Some(want), Some(v)) => want == v,
            // A record too broken to carry a version (undecodable) under this key.
            (_, None) => f.stage.ends_with("dead_lettered"),
            (None, Some(_)) => false,
        };
        if !of_version {
            return;
        }
        let step = |detail: String| {
            Some(Step {
                at: format_ms(e.event_time),
                at_ms: e.event_time,
                detail,
            })
        };
        let source = match (&f.source_topic, f.source_partition, f.source_offset) {
            (Some(t), Some(p), Some(o)) => format!("{t}/{p}@{o}"),
            _ => String::new(),
        };
        match f.stage.as_str() {
            "embed:received" => self.accepted = step(source),
            "embed:embedded" => {
                let by = [f.model_id.clone(), f.backend.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ");
                self.embedded = step(by);
            }
            // A re-delivery of an embedded version says unchanged: the embedding stands.
            "embed:unchanged" if self.embedded.is_none() => {
                self.embedded = step(format!(
                    "unchanged, {}",
                    f.model_id.as_deref().unwrap_or("?")
                ))
            }
            "embed:escalated" => {
                self.escalated = step(f.workflow_id.clone().unwrap_or_default());
            }
            "sink:upserted" => {
                self.indexed = step(f.target_collection.clone().unwrap_or_default());
            }
            "sink:deleted" | "embed:deleted" => {
                self.deleted = step(f.target_collection.clone().unwrap_or_default());
            }
            s if s.ends_with("dead_lettered") => {
                self.dead_lettered = step(f.error.clone().unwrap_or_else(|| s.to_owned()));
            }
            _ => {}
        }
    }

    fn version(&self) -> Option<i64> {
        self.version.or(self.newest_accepted)
    }

    /// The one-line receipt.
    fn line(&self) -> String {
        let who = if self.tenant == vecstream_core::DEFAULT_TENANT {
            self.doc_id.clone()
        } else {
            format!("{}/{}", self.tenant, self.doc_id)
        };
        let mut parts = Vec::new();
        let mut push = |name: &str, s: &Option<Step>| {
            if let Some(s) = s {
                parts.push(if s.detail.is_empty() {
                    format!("{name} {}", s.at)
                } else {
                    format!("{name} {} ({})", s.at, s.detail)
                });
            }
        };
        push("accepted", &self.accepted);
        push("escalated", &self.escalated);
        push("embedded", &self.embedded);
        push("indexed", &self.indexed);
        push("deleted", &self.deleted);
        push("searchable", &self.searchable);
        push("dead-lettered", &self.dead_lettered);
        let version = self.version().map(|v| format!(" v{v}")).unwrap_or_default();
        let mut line = format!("{who}{version}: {}", self.state);
        if !parts.is_empty() {
            line.push_str(" · ");
            line.push_str(&parts.join(" · "));
        }
        if let (Some(n), Some(v)) = (self.newest_accepted, self.version)
            && n > v
        {
            line.push_str(&format!(" · newer version v{n} accepted"));
        }
        printable(&line).into_owned()
    }

    fn settle_state(&mut self) {
        self.state = if self.dead_lettered.is_some() {
            "dead-lettered"
        } else if self.searchable.is_some() {
            "searchable"
        } else if self.deleted.is_some() {
            "deleted"
        } else if self.indexed.is_some() {
            "indexed"
        } else if self.embedded.is_some() {
            "embedded"
        } else if self.escalated.is_some() {
            "escalated"
        } else if self.accepted.is_some() {
            "accepted"
        } else {
            "unknown"
        };
    }

    /// Nothing more will happen to this version.
    fn settled(&self) -> bool {
        matches!(self.state, "searchable" | "dead-lettered" | "deleted")
    }
}

pub async fn run(
    config: &Config,
    registry: &SchemaRegistry,
    reader: &apache_avro::Schema,
    ask: Ask<'_>,
) -> anyhow::Result<ExitCode> {
    let key = vecstream_core::record_key(ask.tenant, ask.doc_id);
    let mut receipt = Receipt {
        doc_id: ask.doc_id.to_owned(),
        tenant: ask.tenant.to_owned(),
        version: ask.version,
        ..Default::default()
    };
    let weaviate = WeaviateClient::new(&config.weaviate)?;
    let deadline = ask.wait.map(|w| Instant::now() + w);

    // The lineage topic, from its beginning; the end of the moment tells when the history
    // is read, and a waiting receipt goes on reading what comes after.
    let kafka = config.kafka.clone();
    let ends = tokio::task::spawn_blocking(move || {
        let consumer = scan::scan_consumer(&kafka, "vecstream-lineage-status")?;
        scan::partition_bounds(&consumer, topics::LINEAGE, Duration::from_secs(30))
    })
    .await??;
    let consumer: StreamConsumer = vecstream_kafka::client_config(&config.kafka)
        .set(
            "group.id",
            format!("vecstream-lineage-status-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, low, _) in &ends {
        tpl.add_partition_offset(topics::LINEAGE, *p, Offset::Offset(*low))?;
    }
    consumer.assign(&tpl)?;
    let mut behind: std::collections::HashMap<i32, i64> = ends
        .iter()
        .filter(|(_, low, high)| high > low)
        .map(|(p, _, high)| (*p, *high))
        .collect();
    let mut last_check = Instant::now() - Duration::from_secs(10);
    loop {
        // Read what is there (the history first, then whatever arrives).
        match tokio::time::timeout(Duration::from_millis(250), consumer.recv()).await {
            Ok(Ok(m)) => {
                if let Some(end) = behind.get(&m.partition())
                    && m.offset() + 1 >= *end
                {
                    behind.remove(&m.partition());
                }
                if m.key() == Some(key.as_bytes())
                    && let Some(p) = m.payload()
                    && let Ok(e) = decode(registry, reader, p).await
                {
                    receipt.add(&e);
                }
                if !behind.is_empty() {
                    continue;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the lineage topic"),
            Err(_) => {
                // Idle: transaction markers may end a partition before its last offset.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Offset::Offset(o), Some(end)) =
                            (e.offset(), behind.get(&e.partition()))
                            && o >= *end
                        {
                            behind.remove(&e.partition());
                        }
                    }
                }
                if !behind.is_empty() {
                    continue;
                }
            }
        }
        // The history is read: ask Weaviate once it could answer (at most twice a second).
        if receipt.searchable.is_none()
            && receipt.deleted.is_none()
            && receipt.version().is_some()
            && last_check.elapsed() >= Duration::from_millis(500)
        {
            last_check = Instant::now();
            match searchable(config, &weaviate, &receipt).await {
                Ok(found) => receipt.searchable = found,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "asking Weaviate"),
            }
        }
        receipt.settle_state();
        let timed_out = deadline.is_none_or(|d| Instant::now() >= d);
        if receipt.settled() || timed_out {
            break;
        }
    }
    if ask.json {
        println!("{}", serde_json::to_string(&receipt)?);
    } else {
        println!("{}", receipt.line());
    }
    Ok(match receipt.state {
        "searchable" | "deleted" => ExitCode::SUCCESS,
        "dead-lettered" => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// Whether the alias's collection holds the version's chunks (or, for an unchanged
/// document, its chunks of an earlier version with the same content).
async fn searchable(
    config: &Config,
    weaviate: &WeaviateClient,
    receipt: &Receipt,
) -> anyhow::Result<Option<Step>> {
    let Some(version) = receipt.version() else {
        return Ok(None);
    };
    let alias = &config.weaviate.alias;
    let Some(collection) = weaviate.resolve_alias(alias).await? else {
        return Ok(None);
    };
    let scope = weaviate
        .tenancy_of(&collection)
        .await?
        .scope(&receipt.tenant);
    let key = vecstream_core::doc_key(&receipt.tenant, &receipt.doc_id);
    let chunks = weaviate.doc_chunks(&collection, scope, &key).await?;
    let unchanged = receipt
        .embedded
        .as_ref()
        .is_some_and(|s| s.detail.starts_with("unchanged"));
    let found = chunks
        .iter()
        .any(|c| c.doc_version == version || (unchanged && c.doc_version <= version));
    if !found {
        return Ok(None);
    }
    let now = vecstream_pipeline::lineage::now_ms();
    // When it became searchable: when the sink wrote it into the alias's collection, if
    // that is where it went; else now, when it was seen.
    let at_ms = match &receipt.indexed {
        Some(s) if s.detail == collection => s.at_ms,
        _ => now,
    };
    Ok(Some(Step {
        at: format_ms(at_ms),
        at_ms,
        detail: format!("alias {alias} → {collection}"),
    }))
}
