//! `vecstream run sink`: `docs.vectors.v1` → Weaviate.
//!
//! Per batch of vector records (read_committed, so only committed embedder transactions):
//! 1. decode (undecodable records go to the DLQ);
//! 2. keep the newest record per document (a later record of the same key supersedes);
//! 3. per document, read its stored chunks in the model's collection (created on first use,
//!    alias `Chunks` pointed at it if the alias does not exist yet) and fence: a record older
//!    than the stored version is skipped;
//! 4. upsert every chunk object by its UUIDv5 id in one batch, then delete the chunks left
//!    over from a longer earlier version (or all of them for a delete);
//! 5. produce lineage (and dead letters for objects Weaviate refused), wait for the acks,
//!    then commit the offsets.
//!
//! Weaviate or Kafka unavailable: the batch is retried with backoff, partitions paused,
//! nothing committed. Re-delivery is harmless: ids are deterministic and deletes idempotent.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use apache_avro::Schema;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;
use vecstream_config::{Config, SinkSettings};
use vecstream_core::{Classify, DocumentVectors, EventType, VecstreamFacet, topics};
use vecstream_kafka::{KafkaEdgeError, SchemaRegistry, schemas, wire};
use vecstream_weaviate::{BatchObject, CollectionSpec, StoredChunk, WeaviateClient, WeaviateError};

use crate::common::{BatchLimits, Member, Retrier, next_offsets};
use crate::dlq::{DeadLetter, Reason};
use crate::lineage::{LineageFactory, now_ms};
use crate::{PipelineError, PipelineMetrics};

const STAGE: &str = "sink";
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A vector record, or why it cannot be one.
type Decoded = Result<DocumentVectors, (Reason, String)>;

/// A record the sink produces after its Weaviate work: lineage, or a dead letter.
struct Emitted {
    topic: &'static str,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    dead: Option<DeadLetter>,
}

/// A record whose chunks go into the batch upsert.
struct Upsert<'a> {
    /// Index of the record in the batch.
    at: usize,
    record: &'a DocumentVectors,
    collection: String,
    ids: Vec<Uuid>,
    /// Stored chunks past the new chunk count exist (a longer earlier version).
    has_stale: bool,
}

/// What became of one vector record.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Upserted { written: usize, deleted: u64 },
    Deleted { deleted: u64 },
    Stale { stored_version: i64 },
    Superseded,
    DeadLettered(Reason, String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Upserted { .. } => "upserted",
            Outcome::Deleted { .. } => "deleted",
            Outcome::Stale { .. } => "stale",
            Outcome::Superseded => "superseded",
            Outcome::DeadLettered(..) => "dead_lettered",
        }
    }
}

/// The Weaviate sink; see the module docs.
pub struct Sink {
    settings: SinkSettings,
    member: Member,
    producer: FutureProducer,
    registry: SchemaRegistry,
    vectors_reader: Schema,
    lineage_schema: (u32, Schema),
    weaviate: WeaviateClient,
    weaviate_url: String,
    alias: String,
    /// Collections known to exist (created or seen) by this process.
    collections: std::sync::Mutex<HashSet<String>>,
    metrics: PipelineMetrics,
    lineage: LineageFactory,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("group_id", &self.settings.group_id)
            .field("weaviate", &self.weaviate_url)
            .finish()
    }
}

impl Sink {
    /// Connects to Kafka, the registry and Weaviate and subscribes to the vectors topic.
    pub async fn connect(config: &Config, metrics: PipelineMetrics) -> Result<Self, PipelineError> {
        let settings = config.sink.clone();
        vecstream_kafka::topics::ensure_topics(&config.kafka).await?;
        let registry = SchemaRegistry::new(&config.registry)?;
        let lineage_id = registry
            .ensure_subject(
                &topics::value_subject(topics::LINEAGE),
                schemas::LINEAGE_EVENT,
            )
            .await?;
        let producer: FutureProducer = vecstream_kafka::client_config(&config.kafka)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("linger.ms", "5")
            .set(
                "message.max.bytes",
                vecstream_kafka::topics::MAX_RECORD_BYTES,
            )
            .create()?;
        let member = Member::subscribe(
            &config.kafka,
            &settings.group_id,
            topics::VECTORS,
            "sink",
            &metrics,
            &[
                ("queued.max.messages.kbytes", "32768"),
                (
                    "fetch.message.max.bytes",
                    vecstream_kafka::topics::MAX_RECORD_BYTES,
                ),
            ],
        )?;
        tracing::info!(group = %settings.group_id, weaviate = %config.weaviate.url, "sink connected");
        Ok(Self {
            lineage: LineageFactory::new(STAGE, "sink", &config.kafka.brokers),
            settings,
            member,
            producer,
            registry,
            vectors_reader: schemas::parse(schemas::DOCUMENT_VECTORS)?,
            lineage_schema: (lineage_id, schemas::parse(schemas::LINEAGE_EVENT)?),
            weaviate: WeaviateClient::new(&config.weaviate)?,
            weaviate_url: config.weaviate.url.clone(),
            alias: config.weaviate.alias.clone(),
            collections: Default::default(),
            metrics,
        })
    }

    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            component: "sink",
            metrics: &self.metrics,
            max_backoff: Duration::from_millis(self.settings.max_backoff_ms),
        }
    }

    /// Runs until `shutdown` turns true; then finishes and commits the batch in hand.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), PipelineError> {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let limits = BatchLimits {
                max_records: self.settings.batch_max_records,
                max_wait: Duration::from_millis(self.settings.batch_max_wait_ms),
                max_tokens: None,
            };
            let batch = self.member.gather(limits, &mut shutdown).await;
            if batch.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            self.process(batch, &shutdown).await?;
            self.metrics
                .sink_batch_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        tracing::info!("sink stopped: in-flight batch committed");
        Ok(())
    }

    async fn process(
        &self,
        mut batch: Vec<OwnedMessage>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let assigned = self.member.tracker.snapshot();
        batch.retain(|m| assigned.contains(&m.partition()));
        if batch.is_empty() {
            return Ok(());
        }
        self.member
            .retry_paused(&self.retrier(), "batch", shutdown, || {
                self.apply_batch(&batch)
            })
            .await?;

        // Effects are durable: commit what is still ours.
        let assigned = self.member.tracker.snapshot();
        let offsets = next_offsets(batch.iter().map(|m| (m.partition(), m.offset())));
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets.iter().filter(|(p, _)| assigned.contains(p)) {
            tpl.add_partition_offset(topics::VECTORS, *p, Offset::Offset(*o))?;
        }
        if tpl.count() > 0 {
            self.retrier()
                .run("commit", shutdown, || async {
                    self.member
                        .consumer
                        .commit(&tpl, CommitMode::Sync)
                        .map_err(PipelineError::from)
                })
                .await?;
        }
        Ok(())
    }

    /// Applies every record of the batch to Weaviate and produces lineage and dead letters.
    /// Idempotent: a retry after a partial failure converges to the same state.
    async fn apply_batch(&self, batch: &[OwnedMessage]) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        let mut decoded: Vec<(&OwnedMessage, Decoded)> = Vec::with_capacity(batch.len());
        for m in batch {
            decoded.push((m, self.decode(m).await?));
        }
        // The newest record of each document wins; earlier ones are superseded.
        let mut last_of_doc: HashMap<&str, usize> = HashMap::new();
        for (i, (_, d)) in decoded.iter().enumerate() {
            if let Ok(v) = d {
                last_of_doc.insert(v.doc_id.as_str(), i);
            }
        }
        // One read of the stored chunks per collection for the whole batch (fencing and
        // stale-chunk deletion decide from it), done when the collection is first needed.
        let mut docs_of_collection: HashMap<String, Vec<&str>> = HashMap::new();
        for &i in last_of_doc.values() {
            if let Ok(v) = &decoded[i].1 {
                docs_of_collection
                    .entry(vecstream_weaviate::collection_name(&v.model_id))
                    .or_default()
                    .push(v.doc_id.as_str());
            }
        }
        let mut stored_of_collection: HashMap<String, HashMap<String, Vec<StoredChunk>>> =
            HashMap::new();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(decoded.len());
        let mut upserts: Vec<Upsert<'_>> = Vec::new();
        let mut objects: Vec<BatchObject> = Vec::new();
        for (i, (_, d)) in decoded.iter().enumerate() {
            let v = match d {
                Err((reason, message)) => {
                    outcomes.push(Outcome::DeadLettered(*reason, message.clone()));
                    continue;
                }
                Ok(v) => v,
            };
            if last_of_doc.get(v.doc_id.as_str()) != Some(&i) {
                outcomes.push(Outcome::Superseded);
                continue;
            }
            let collection = vecstream_weaviate::collection_name(&v.model_id);
            let dim = v.chunks.first().map(|c| c.vector.len());
            if !v.deleted {
                self.ensure_collection(&v.model_id).await?;
            } else if !self.collection_known(&collection).await? {
                // Nothing was ever stored for this model: the delete is already true.
                outcomes.push(Outcome::Deleted { deleted: 0 });
                continue;
            }
            if !stored_of_collection.contains_key(&collection) {
                let ids = docs_of_collection
                    .get(&collection)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let stored = self.weaviate.docs_chunks(&collection, ids).await?;
                stored_of_collection.insert(collection.clone(), stored);
            }
            let stored = stored_of_collection[&collection]
                .get(&v.doc_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let stored_version = stored.iter().map(|c| c.doc_version).max();
            let stored_past = |count: usize| stored.iter().any(|c| c.chunk_index >= count as i64);
            if let Some(sv) = stored_version.filter(|sv| *sv > v.doc_version) {
                outcomes.push(Outcome::Stale { stored_version: sv });
                continue;
            }
            if v.deleted {
                let deleted = if stored_past(0) {
                    self.weaviate
                        .delete_doc_chunks_from(&collection, &v.doc_id, 0)
                        .await?
                } else {
                    0
                };
                outcomes.push(Outcome::Deleted { deleted });
                continue;
            }
            if let Some(bad) = v
                .chunks
                .iter()
                .find(|c| Some(c.vector.len()) != dim || c.vector.iter().any(|x| !x.is_finite()))
            {
                outcomes.push(Outcome::DeadLettered(
                    Reason::Invalid,
                    format!(
                        "chunk {} has a vector of {} values (expected {:?}) or a non-finite value",
                        bad.index,
                        bad.vector.len(),
                        dim
                    ),
                ));
                continue;
            }
            let ids: Result<Vec<Uuid>, String> = v
                .chunks
                .iter()
                .map(|c| {
                    Uuid::parse_str(&c.chunk_id)
                        .map_err(|e| format!("chunk id {:?}: {e}", c.chunk_id))
                })
                .collect();
            let ids = match ids {
                Ok(ids) => ids,
                Err(message) => {
                    outcomes.push(Outcome::DeadLettered(Reason::Invalid, message));
                    continue;
                }
            };
            for (c, id) in v.chunks.iter().zip(&ids) {
                objects.push(BatchObject {
                    collection: collection.clone(),
                    id: *id,
                    properties: json!({
                        "doc_id": v.doc_id,
                        "doc_version": v.doc_version,
                        "tenant": v.tenant,
                        "chunk_index": c.index,
                        "text": c.text,
                        "char_start": c.char_start,
                        "char_end": c.char_end,
                        "token_count": c.token_count,
                        "content_hash": v.content_hash,
                        "model_id": v.model_id,
                    }),
                    vector: c.vector.clone(),
                });
            }
            outcomes.push(Outcome::Upserted {
                written: 0,
                deleted: 0,
            });
            let has_stale = stored_past(v.chunks.len());
            upserts.push(Upsert {
                at: i,
                record: v,
                collection,
                ids,
                has_stale,
            });
        }

        // One batch call for every chunk object of the batch.
        let mut failed: HashMap<Uuid, String> = HashMap::new();
        for chunk in objects.chunks(500) {
            let outcome = self.weaviate.upsert_batch(chunk).await?;
            for (id, message) in outcome.failed {
                failed.insert(id, message);
            }
        }
        if let Some(transient) = failed.values().find(|m| looks_transient(m)) {
            return Err(PipelineError::Weaviate(WeaviateError::Status {
                status: 503,
                what: "batch upsert (per-object error)".into(),
                body: transient.clone(),
            }));
        }
        for u in &upserts {
            let errors: Vec<&String> = u.ids.iter().filter_map(|id| failed.get(id)).collect();
            let outcome = &mut outcomes[u.at];
            if let Some(first) = errors.first() {
                *outcome = Outcome::DeadLettered(
                    Reason::Rejected,
                    format!(
                        "weaviate refused {} of {} chunks: {first}",
                        errors.len(),
                        u.ids.len()
                    ),
                );
                continue;
            }
            // Chunks past the new count belong to a longer earlier version.
            let deleted = if u.has_stale {
                let count = u.record.chunks.len() as i64;
                self.weaviate
                    .delete_doc_chunks_from(&u.collection, &u.record.doc_id, count)
                    .await?
            } else {
                0
            };
            *outcome = Outcome::Upserted {
                written: u.ids.len(),
                deleted,
            };
        }

        // Weaviate reads, writes and deletes of the batch, for the lineage events.
        let weaviate_ms = started.elapsed().as_millis() as i64;
        self.emit(&decoded, &outcomes, weaviate_ms).await
    }

    async fn decode(&self, m: &OwnedMessage) -> Result<Decoded, PipelineError> {
        let Some(payload) = m.payload() else {
            return Ok(Err((
                Reason::Invalid,
                "null value on the vectors topic".into(),
            )));
        };
        let (schema_id, avro) = match wire::split(payload) {
            Ok(x) => x,
            Err(e) => return Ok(Err((Reason::Undecodable, e.to_string()))),
        };
        let writer = match self.registry.schema_by_id(schema_id).await {
            Ok(s) => s,
            Err(e) if e.class().is_retryable() => return Err(e.into()),
            Err(e @ KafkaEdgeError::UnknownSchemaId(_)) => {
                return Ok(Err((Reason::UnknownSchema, e.to_string())));
            }
            Err(e) => return Ok(Err((Reason::UnknownSchema, e.to_string()))),
        };
        Ok(
            wire::decode::<DocumentVectors>(&writer, Some(&self.vectors_reader), avro)
                .map_err(|e| (Reason::Undecodable, e.to_string())),
        )
    }

    fn known_collections(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned set still holds valid names.
        self.collections.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn collection_known(&self, name: &str) -> Result<bool, PipelineError> {
        if self.known_collections().contains(name) {
            return Ok(true);
        }
        let exists = self.weaviate.collection_exists(name).await?;
        if exists {
            self.known_collections().insert(name.to_owned());
        }
        Ok(exists)
    }

    /// Creates the model's collection on first use; points the alias at it if the alias
    /// does not exist yet (a reindex moves it later).
    async fn ensure_collection(&self, model_id: &str) -> Result<(), PipelineError> {
        let spec = CollectionSpec::chunks(model_id);
        if self.known_collections().contains(&spec.name) {
            return Ok(());
        }
        if self.weaviate.ensure_collection(&spec).await? {
            tracing::info!(collection = %spec.name, model_id, "collection created");
        }
        if self.weaviate.resolve_alias(&self.alias).await?.is_none() {
            self.weaviate.set_alias(&self.alias, &spec.name).await?;
            tracing::info!(alias = %self.alias, collection = %spec.name, "alias created");
        }
        self.known_collections().insert(spec.name);
        Ok(())
    }

    /// Lineage for every record, dead letters for refused ones; waits for the acks.
    async fn emit(
        &self,
        decoded: &[(&OwnedMessage, Decoded)],
        outcomes: &[Outcome],
        weaviate_ms: i64,
    ) -> Result<(), PipelineError> {
        let now = now_ms();
        let (lineage_id, lineage_schema) = &self.lineage_schema;
        let mut records: Vec<Emitted> = Vec::new();
        for ((m, d), outcome) in decoded.iter().zip(outcomes) {
            let key = m.key().map(<[u8]>::to_vec).unwrap_or_default();
            let mut facet = VecstreamFacet {
                source_topic: Some(topics::VECTORS.into()),
                source_partition: Some(m.partition()),
                source_offset: Some(m.offset()),
                ..Default::default()
            };
            if let Ok(v) = d {
                facet.doc_id = Some(v.doc_id.clone());
                facet.doc_version = Some(v.doc_version);
                facet.content_hash = (!v.content_hash.is_empty()).then(|| v.content_hash.clone());
                facet.model_id = Some(v.model_id.clone());
                facet.target_collection = Some(vecstream_weaviate::collection_name(&v.model_id));
                if matches!(outcome, Outcome::Upserted { .. }) {
                    facet.chunk_ids = v.chunks.iter().map(|c| c.chunk_id.clone()).collect();
                }
                if matches!(outcome, Outcome::Upserted { .. } | Outcome::Deleted { .. }) {
                    facet.duration_ms = Some(weaviate_ms);
                }
            }
            let event_type = match outcome {
                Outcome::Upserted { .. } | Outcome::Deleted { .. } => EventType::Complete,
                Outcome::Stale { .. } | Outcome::Superseded => EventType::Other,
                Outcome::DeadLettered(..) => EventType::Fail,
            };
            match outcome {
                Outcome::Stale { stored_version } => {
                    facet.error = Some(format!("stored version {stored_version} is newer"));
                }
                Outcome::DeadLettered(reason, message) => {
                    facet.error = Some(format!("{}: {message}", reason.as_str()));
                    records.push(Emitted {
                        topic: topics::DOCUMENTS_DLQ,
                        key: key.clone(),
                        payload: m.payload().map(<[u8]>::to_vec),
                        dead: Some(DeadLetter {
                            key: m.key().map(<[u8]>::to_vec),
                            payload: None,
                            reason: *reason,
                            message: message.clone(),
                            stage: STAGE,
                            source_topic: m.topic().to_owned(),
                            source_partition: m.partition(),
                            source_offset: m.offset(),
                        }),
                    });
                }
                _ => {}
            }
            let outputs = match (outcome, &facet.target_collection) {
                (Outcome::Upserted { .. } | Outcome::Deleted { .. }, Some(c)) => {
                    vec![vecstream_core::Dataset {
                        namespace: self.weaviate_url.clone(),
                        name: c.clone(),
                    }]
                }
                _ => Vec::new(),
            };
            let event = self.lineage.event(
                event_type,
                outcome.label(),
                facet,
                vec![self.lineage.topic(topics::VECTORS)],
                outputs,
                now,
            );
            records.push(Emitted {
                topic: topics::LINEAGE,
                key,
                payload: Some(wire::encode(*lineage_id, lineage_schema, &event)?),
                dead: None,
            });
        }
        let sends = records.iter().map(|r| {
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(r.topic).key(r.key.as_slice());
            if let Some(p) = &r.payload {
                rec = rec.payload(p.as_slice());
            }
            if let Some(d) = &r.dead {
                rec = rec.headers(d.headers(now));
            }
            self.producer.send(rec, Timeout::After(SEND_TIMEOUT))
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| PipelineError::from(e))?;
        }
        for outcome in outcomes {
            self.metrics
                .sink_records
                .with_label_values(&[outcome.label()])
                .inc();
            match outcome {
                Outcome::Upserted { written, deleted } => {
                    self.metrics.sink_chunks_written.inc_by(*written as u64);
                    self.metrics.sink_chunks_deleted.inc_by(*deleted);
                }
                Outcome::Deleted { deleted } => self.metrics.sink_chunks_deleted.inc_by(*deleted),
                Outcome::DeadLettered(reason, _) => self
                    .metrics
                    .dlq_records
                    .with_label_values(&[STAGE, reason.as_str()])
                    .inc(),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Per-object batch errors that mean "try again" rather than "this object is wrong".
fn looks_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "timeout",
        "timed out",
        "unavailable",
        "too many requests",
        "connection",
        "not ready",
        "read only",
        "readonly",
    ]
    .iter()
    .any(|s| m.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_object_errors_are_told_apart_from_bad_objects() {
        assert!(looks_transient("context deadline exceeded: Timeout"));
        assert!(looks_transient("store is read only"));
        assert!(!looks_transient(
            "new node has a vector with length 3. Existing nodes have vectors with length 384"
        ));
        assert_eq!(Outcome::Superseded.label(), "superseded");
    }
}
