//! `vecstream run sink`: `docs.vectors.v1` → Weaviate.
//!
//! Per batch of vector records (read_committed, so only committed embedder transactions):
//! 1. decode (undecodable records go to the DLQ);
//! 2. apply them with the [`ChunkWriter`](crate::writer::ChunkWriter): newest record per
//!    document, version fencing, batch upsert by UUIDv5 ids, stale and deleted chunks
//!    removed, in the model's collection (created on first use; alias `Chunks` pointed at it
//!    if the alias does not exist yet);
//! 3. produce lineage (and dead letters for objects Weaviate refused), wait for the acks,
//!    then commit the offsets.
//!
//! Weaviate or Kafka unavailable: the batch is retried with backoff, partitions paused,
//! nothing committed. Re-delivery is harmless: ids are deterministic and deletes idempotent.

use std::time::Duration;

use futures::future::BoxFuture;

use apache_avro::Schema;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio::sync::watch;
use vecstream_config::{Config, SinkSettings};
use vecstream_core::{DocumentVectors, EventType, TraceParent, VecstreamFacet, topics};
use vecstream_kafka::{SchemaRegistry, schemas, traceparent_of, wire, with_traceparent};
use vecstream_telemetry::continue_trace;
use vecstream_weaviate::{Tenancy, WeaviateClient};

use crate::common::{BatchLimits, Member, Retrier, next_offsets};
use crate::dlq::{DeadLetter, Reason};
use crate::lineage::{LineageFactory, lineage_writer_schema, now_ms};
use crate::writer::{ChunkWriter, Decoded, Outcome};
use crate::{PipelineError, PipelineMetrics};

const STAGE: &str = "sink";
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How a batch's effects and its offsets are ordered.
///
/// The sink's contract (DESIGN section 3) is [`EffectsThenOffsets`]; the trait exists so that
/// the load test can run a deliberately wrong order from its own crate and show that its
/// chaos check catches the loss, without a fault switch in this code.
pub trait CommitStrategy: Send + Sync + std::fmt::Debug {
    fn process<'a>(
        &'a self,
        sink: &'a Sink,
        batch: &'a [OwnedMessage],
        shutdown: &'a watch::Receiver<bool>,
    ) -> BoxFuture<'a, Result<(), PipelineError>>;
}

/// Apply the batch, then commit its offsets: a crash in between re-delivers the batch, and
/// idempotent writes make that harmless.
#[derive(Debug, Clone, Copy, Default)]
pub struct EffectsThenOffsets;

impl CommitStrategy for EffectsThenOffsets {
    fn process<'a>(
        &'a self,
        sink: &'a Sink,
        batch: &'a [OwnedMessage],
        shutdown: &'a watch::Receiver<bool>,
    ) -> BoxFuture<'a, Result<(), PipelineError>> {
        Box::pin(async move {
            sink.apply(batch, shutdown).await?;
            sink.commit_offsets(batch, shutdown).await
        })
    }
}

/// A record the sink produces after its Weaviate work: lineage, or a dead letter.
struct Emitted {
    topic: &'static str,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    /// The trace a dead letter carries on.
    trace: Option<TraceParent>,
    /// A dead letter's headers.
    headers: Option<rdkafka::message::OwnedHeaders>,
}

/// The Weaviate sink; see the module docs.
pub struct Sink {
    settings: SinkSettings,
    member: Member,
    producer: FutureProducer,
    registry: SchemaRegistry,
    vectors_reader: Schema,
    lineage_schema: (u32, Schema),
    writer: ChunkWriter,
    weaviate_url: String,
    /// Largest record the DLQ topic takes.
    dlq_record_limit: usize,
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
        // A refused API key or an untrusted certificate stops the sink now, naming Weaviate.
        WeaviateClient::new(&config.weaviate)?
            .check_access()
            .await?;
        let registry = SchemaRegistry::new(&config.registry)?;
        let lineage_schema = lineage_writer_schema(&registry).await?;
        let producer = vecstream_kafka::idempotent_producer(&config.kafka)?;
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
            lineage_schema,
            writer: ChunkWriter::new(
                WeaviateClient::new(&config.weaviate)?,
                &config.weaviate.alias,
                metrics.clone(),
            )
            .with_tenancy(Tenancy::from_config(config.weaviate.multi_tenancy)),
            weaviate_url: config.weaviate.url.clone(),
            dlq_record_limit: vecstream_kafka::topics::dlq_record_limit(&config.kafka).await,
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
    /// Offsets are committed after the batch's effects are durable.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), PipelineError> {
        self.run_with(shutdown, &EffectsThenOffsets).await
    }

    /// [`Self::run`] with another order of effects and offsets. Only the load test's
    /// deliberately broken sink passes anything but [`EffectsThenOffsets`].
    pub async fn run_with(
        self,
        mut shutdown: watch::Receiver<bool>,
        strategy: &dyn CommitStrategy,
    ) -> Result<(), PipelineError> {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let limits = BatchLimits {
                max_records: self.settings.batch_max_records,
                max_wait: Duration::from_millis(self.settings.batch_max_wait_ms),
                max_tokens: None,
                max_bytes: (self.settings.batch_max_bytes > 0)
                    .then_some(self.settings.batch_max_bytes),
            };
            let mut batch = self.member.gather(limits, &mut shutdown).await;
            let assigned = self.member.tracker.snapshot();
            batch.retain(|m| assigned.contains(&m.partition()));
            if batch.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            strategy.process(&self, &batch, &shutdown).await?;
            self.metrics
                .sink_batch_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        tracing::info!("sink stopped: in-flight batch committed");
        Ok(())
    }

    /// Applies the batch to Weaviate and produces its lineage and dead letters, retrying
    /// (partitions paused) until it succeeds or a permanent error stops the sink.
    pub async fn apply(
        &self,
        batch: &[OwnedMessage],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        self.member
            .retry_paused(&self.retrier(), "batch", shutdown, || {
                self.apply_batch(batch)
            })
            .await
    }

    /// Commits the offsets after `batch` on the partitions still assigned to this member.
    pub async fn commit_offsets(
        &self,
        batch: &[OwnedMessage],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let offsets = next_offsets(batch.iter().map(|m| (m.partition(), m.offset())));
        self.member
            .commit(&self.retrier(), topics::VECTORS, &offsets, shutdown)
            .await
    }

    /// Applies every record of the batch to Weaviate and produces lineage and dead letters.
    /// Idempotent: a retry after a partial failure converges to the same state.
    async fn apply_batch(&self, batch: &[OwnedMessage]) -> Result<(), PipelineError> {
        let started = std::time::Instant::now();
        // One span per record, continuing the document's trace from the embedder.
        let traces: Vec<(tracing::Span, TraceParent)> = batch
            .iter()
            .map(|m| {
                let span = tracing::info_span!(
                    "upsert_document",
                    partition = m.partition(),
                    offset = m.offset()
                );
                let hop = continue_trace(&span, traceparent_of(m.headers()));
                (span, hop)
            })
            .collect();
        let mut decoded: Vec<Decoded> = Vec::with_capacity(batch.len());
        for m in batch {
            decoded.push(self.decode(m).await?);
        }
        let outcomes = self.writer.write(&decoded).await?;
        // Weaviate reads, writes and deletes of the batch, for the lineage events.
        let weaviate_ms = started.elapsed().as_millis() as i64;
        self.emit(batch, &decoded, &outcomes, &traces, weaviate_ms)
            .await
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
        let subject = topics::value_subject(topics::VECTORS);
        let writer =
            match crate::document::writer_schema(&self.registry, &subject, schema_id).await? {
                Ok(s) => s,
                Err(why) => return Ok(Err((Reason::UnknownSchema, why))),
            };
        Ok(
            wire::decode::<DocumentVectors>(&writer, Some(&self.vectors_reader), avro)
                .map_err(|e| (Reason::Undecodable, e.to_string())),
        )
    }

    /// Lineage for every record, dead letters for refused ones; waits for the acks.
    async fn emit(
        &self,
        batch: &[OwnedMessage],
        decoded: &[Decoded],
        outcomes: &[Outcome],
        traces: &[(tracing::Span, TraceParent)],
        weaviate_ms: i64,
    ) -> Result<(), PipelineError> {
        let now = now_ms();
        let (lineage_id, lineage_schema) = &self.lineage_schema;
        let mut records: Vec<Emitted> = Vec::new();
        for (((m, d), outcome), (_, hop)) in batch.iter().zip(decoded).zip(outcomes).zip(traces) {
            let key = m.key().map(<[u8]>::to_vec).unwrap_or_default();
            let mut facet = VecstreamFacet {
                source_topic: Some(topics::VECTORS.into()),
                source_partition: Some(m.partition()),
                source_offset: Some(m.offset()),
                trace_id: Some(hop.trace_id_hex()),
                ..Default::default()
            };
            if let Ok(v) = d {
                facet.doc_id = Some(v.doc_id.clone());
                facet.tenant = Some(v.tenant.clone());
                facet.doc_version = Some(v.doc_version);
                facet.content_hash = (!v.content_hash.is_empty()).then(|| v.content_hash.clone());
                facet.model_id = Some(v.model_id.clone());
                facet.target_collection = Some(vecstream_weaviate::collection_name(
                    &v.model_id,
                    self.writer.tenancy(),
                ));
                if matches!(outcome, Outcome::Upserted { .. }) {
                    facet.chunk_ids = v.chunks.iter().map(|c| c.chunk_id.clone()).collect();
                }
                if matches!(outcome, Outcome::Upserted { .. } | Outcome::Deleted { .. }) {
                    facet.duration_ms = Some(weaviate_ms);
                }
            }
            let event_type = match outcome {
                Outcome::Upserted { .. } | Outcome::Deleted { .. } => EventType::Complete,
                Outcome::Stale { .. } | Outcome::Superseded | Outcome::Retired { .. } => {
                    EventType::Other
                }
                Outcome::DeadLettered(..) => EventType::Fail,
            };
            match outcome {
                Outcome::Stale { stored_version } => {
                    facet.error = Some(format!("stored version {stored_version} is newer"));
                }
                Outcome::Retired { collection } => {
                    facet.error = Some(format!(
                        "collection {collection} no longer exists (a migration dropped it); \
                         the document reaches the live collection through the migration"
                    ));
                }
                Outcome::DeadLettered(reason, message) => {
                    facet.error = Some(format!("{}: {message}", reason.as_str()));
                    let dead = DeadLetter {
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        reason: *reason,
                        message: message.clone(),
                        stage: STAGE,
                        source_topic: m.topic().to_owned(),
                        source_partition: m.partition(),
                        source_offset: m.offset(),
                    }
                    .to_record(now, self.dlq_record_limit);
                    records.push(Emitted {
                        topic: topics::DOCUMENTS_DLQ,
                        key: dead.key.unwrap_or_default(),
                        payload: dead.payload,
                        trace: Some(*hop),
                        headers: Some(dead.headers),
                    });
                }
                _ => {}
            }
            let dataset = |name: &String| vecstream_core::Dataset {
                namespace: self.weaviate_url.clone(),
                name: name.clone(),
            };
            let outputs = match (outcome, &facet.target_collection) {
                (Outcome::Upserted { .. }, Some(c)) => vec![dataset(c)],
                // Every collection of the family the document was removed from.
                (Outcome::Deleted { from, .. }, _) => from.iter().map(dataset).collect(),
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
                trace: None,
                headers: None,
            });
        }
        let sends = records.iter().map(|r| {
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(r.topic).key(r.key.as_slice());
            if let Some(p) = &r.payload {
                rec = rec.payload(p.as_slice());
            }
            if let (Some(h), Some(hop)) = (&r.headers, &r.trace) {
                rec = rec.headers(with_traceparent(h.clone(), hop));
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
                Outcome::Deleted { deleted, .. } => {
                    self.metrics.sink_chunks_deleted.inc_by(*deleted)
                }
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
