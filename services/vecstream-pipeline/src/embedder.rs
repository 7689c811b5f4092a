//! `vecstream run embedder`: documents in, vectors + lineage (+ dead letters) out.
//!
//! One loop, one micro-batch at a time:
//! 1. gather messages until the batch's token estimate, record count or wait runs out;
//! 2. drop messages of partitions revoked meanwhile (their new owner re-reads them: the
//!    offsets were never committed), restore the dedup state of newly assigned partitions;
//! 3. decide per message: embed, delete, skip (unchanged / stale) or dead-letter;
//! 4. embed every chunk of the batch in one engine call (the engine cuts token batches);
//! 5. in one Kafka transaction: the vectors, the lineage events, the dead letters, the state
//!    records and the consumer offsets. Either all of it becomes visible or none.
//!
//! A transient failure (registry, broker) pauses the assigned partitions, backs off
//! exponentially and retries the same batch; nothing is committed until it succeeds.
//! SIGTERM stops gathering, finishes the batch in hand, commits it and leaves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use vecstream_config::{Config, EmbedderSettings, KafkaConfig};
use vecstream_core::{Document, DocumentVectors, EventType, TraceParent, VecstreamFacet, topics};
use vecstream_engine::{Chunk, Chunker, Engine};
use vecstream_kafka::{SchemaRegistry, schemas, traceparent_of, wire, with_traceparent};
use vecstream_telemetry::continue_trace;

use crate::common::{BatchLimits, Member, Retrier, next_offsets};
use crate::dlq::{DeadLetter, Reason};
use crate::document::{Read, chunked, delete_of, normalized, read_document, vectors_of};
use crate::escalate::{Escalator, LargeDocumentJob};
use crate::lineage::{LineageFactory, now_ms};
use crate::state::{DedupState, DocState, restore_partition};
use crate::{PipelineError, PipelineMetrics};

/// Version written on the delete record of a tombstone: it outranks every stored version,
/// so the sink removes whatever it holds for the document.
pub const TOMBSTONE_VERSION: i64 = i64::MAX;
const STAGE: &str = "embed";
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do with one document message.
#[derive(Debug)]
enum Decision {
    Embed {
        doc: Document,
        hash: String,
        chunks: Vec<Chunk>,
    },
    Delete {
        doc_id: String,
        tenant: String,
        version: i64,
        tombstone: bool,
    },
    Skip {
        doc: Document,
        hash: String,
        outcome: &'static str,
    },
    /// Too large to embed inline: a `LargeDocumentWorkflow` embeds it.
    Escalate {
        doc: Document,
        hash: String,
        tokens: usize,
    },
    DeadLetter(DeadLetter),
}

impl Decision {
    /// What the dedup memory holds for the document once this decision is committed:
    /// `None` when it does not change, `Some((id, None))` when the document is forgotten.
    /// `escalated` is the version whose large-document job the memory knew of before; it is
    /// carried along until a tombstone forgets the document.
    fn state_after(
        &self,
        model_id: &str,
        escalated: Option<i64>,
    ) -> Option<(&str, Option<DocState>)> {
        let kept = |doc: &Document, hash: &str, deleted: bool| DocState {
            version: doc.version,
            model_id: model_id.to_owned(),
            content_hash: hash.to_owned(),
            deleted,
            escalated_version: escalated,
        };
        match self {
            Decision::Embed { doc, hash, .. } => Some((&doc.id, Some(kept(doc, hash, false)))),
            // Escalated documents count as emitted: their job owns them from here on.
            Decision::Escalate { doc, hash, .. } => Some((
                &doc.id,
                Some(DocState {
                    escalated_version: Some(doc.version),
                    ..kept(doc, hash, false)
                }),
            )),
            // The newer version is remembered so that older re-deliveries stay fenced.
            Decision::Skip {
                doc,
                hash,
                outcome: "unchanged",
            } => Some((&doc.id, Some(kept(doc, hash, false)))),
            Decision::Delete {
                doc_id,
                tombstone: true,
                ..
            } => Some((doc_id, None)),
            Decision::Delete {
                doc_id, version, ..
            } => Some((
                doc_id,
                Some(DocState {
                    version: *version,
                    model_id: model_id.to_owned(),
                    content_hash: String::new(),
                    deleted: true,
                    escalated_version: escalated,
                }),
            )),
            Decision::Skip { .. } | Decision::DeadLetter(_) => None,
        }
    }

    /// The document id (the record key; empty when it has none) and version, if known.
    fn doc_key(&self) -> (&str, Option<i64>) {
        match self {
            Decision::Embed { doc, .. }
            | Decision::Skip { doc, .. }
            | Decision::Escalate { doc, .. } => (&doc.id, Some(doc.version)),
            Decision::Delete {
                doc_id,
                version,
                tombstone,
                ..
            } => (doc_id, (!tombstone).then_some(*version)),
            Decision::DeadLetter(d) => (
                d.key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or(""),
                None,
            ),
        }
    }
}

struct Item {
    partition: i32,
    offset: i64,
    decision: Decision,
    /// Milliseconds the engine took for the batch this item's chunks were embedded in.
    embed_ms: Option<i64>,
    /// The hop of the document's trace this stage sends downstream (`traceparent`).
    trace: TraceParent,
    /// Open while the document is in flight; exported when OTLP is configured.
    _span: tracing::Span,
    /// Workflow id of the job an escalated document went to.
    workflow_id: Option<String>,
    /// The version of this document whose large-document job the memory knew of before
    /// this message (a delete waits for that job to close).
    escalated_version: Option<i64>,
}

/// The stream embedder; see the module docs.
pub struct Embedder {
    settings: EmbedderSettings,
    kafka: KafkaConfig,
    member: Member,
    producer: FutureProducer,
    registry: SchemaRegistry,
    document_reader: Schema,
    vectors_schema: (u32, Schema),
    lineage_schema: (u32, Schema),
    engine: Arc<Engine>,
    chunker: Chunker,
    state: DedupState,
    metrics: PipelineMetrics,
    lineage: LineageFactory,
    escalator: Option<Arc<dyn Escalator>>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("group_id", &self.settings.group_id)
            .field("model_id", &self.engine.info().model_id)
            .finish()
    }
}

impl Embedder {
    /// Creates the topics and schema subjects it needs, the transactional producer (which
    /// fences a previous instance with the same transactional id) and the consumer.
    ///
    /// With an `escalator`, large documents go to their own job, and (with
    /// `embedder.reindex_on_model_change`) an alias that serves another model's collection
    /// gets a reindex to this embedder's model.
    pub async fn connect(
        config: &Config,
        engine: Arc<Engine>,
        metrics: PipelineMetrics,
        escalator: Option<Arc<dyn Escalator>>,
    ) -> Result<Self, PipelineError> {
        let settings = config.embedder.clone();
        if let (Some(e), true) = (&escalator, settings.reindex_on_model_change) {
            reindex_if_model_changed(config, &engine.info().model_id, e.as_ref()).await;
        }
        vecstream_kafka::topics::ensure_topics(&config.kafka).await?;
        let registry = SchemaRegistry::new(&config.registry)?;
        let vectors_id = registry
            .ensure_subject(
                &topics::value_subject(topics::VECTORS),
                schemas::DOCUMENT_VECTORS,
            )
            .await?;
        let lineage_id = registry
            .ensure_subject(
                &topics::value_subject(topics::LINEAGE),
                schemas::LINEAGE_EVENT,
            )
            .await?;
        let chunk_tokens = (settings.chunk_tokens > 0).then_some(settings.chunk_tokens);
        let chunker = Chunker::new(
            engine.tokenizer().clone(),
            chunk_tokens,
            settings.chunk_overlap,
        )?;

        let transactional_id = if settings.transactional_id.is_empty() {
            format!("vecstream-embedder-{}", hostname())
        } else {
            settings.transactional_id.clone()
        };
        let producer: FutureProducer = vecstream_kafka::client_config(&config.kafka)
            .set("transactional.id", &transactional_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("linger.ms", "5")
            .set(
                "message.max.bytes",
                vecstream_kafka::topics::MAX_RECORD_BYTES,
            )
            .set(
                "transaction.timeout.ms",
                (TXN_TIMEOUT.as_millis() * 2).to_string(),
            )
            .create()?;
        // Blocks until a previous instance's open transaction is aborted (fencing).
        tokio::task::block_in_place(|| producer.init_transactions(TXN_TIMEOUT))
            .map_err(|e| txn_error("init_transactions", e))?;

        let member = Member::subscribe(
            &config.kafka,
            &settings.group_id,
            topics::DOCUMENTS,
            "embedder",
            &metrics,
            &[],
        )?;
        tracing::info!(%transactional_id, group = %settings.group_id, model_id = %engine.info().model_id, "embedder connected");

        Ok(Self {
            lineage: LineageFactory::new(STAGE, "embedder", &config.kafka.brokers),
            settings,
            kafka: config.kafka.clone(),
            member,
            producer,
            registry,
            document_reader: schemas::parse(schemas::DOCUMENT)?,
            vectors_schema: (vectors_id, schemas::parse(schemas::DOCUMENT_VECTORS)?),
            lineage_schema: (lineage_id, schemas::parse(schemas::LINEAGE_EVENT)?),
            engine,
            chunker,
            state: DedupState::default(),
            metrics,
            escalator,
        })
    }

    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            component: "embedder",
            metrics: &self.metrics,
            max_backoff: Duration::from_millis(self.settings.max_backoff_ms),
        }
    }

    /// Runs until `shutdown` turns true; then finishes and commits the batch in hand.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), PipelineError> {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let limits = BatchLimits {
                max_records: self.settings.batch_max_records,
                max_wait: Duration::from_millis(self.settings.batch_max_wait_ms),
                max_tokens: Some(self.settings.batch_tokens),
            };
            let batch = self.member.gather(limits, &mut shutdown).await;
            if batch.is_empty() {
                continue;
            }
            let started = Instant::now();
            self.process(batch, &shutdown).await?;
            self.metrics
                .embedder_batch_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        tracing::info!("embedder stopped: in-flight batch committed");
        Ok(())
    }

    async fn process(
        &mut self,
        mut batch: Vec<OwnedMessage>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let assigned = self.member.tracker.snapshot();
        batch.retain(|m| assigned.contains(&m.partition()));
        self.state.retain_partitions(|p| assigned.contains(&p));
        let partitions: BTreeSet<i32> = batch.iter().map(|m| m.partition()).collect();
        for p in partitions {
            if !self.state.is_restored(p) {
                let docs = self
                    .retrier()
                    .run("restore_state", shutdown, || {
                        let kafka = self.kafka.clone();
                        async move {
                            tokio::task::spawn_blocking(move || {
                                restore_partition(&kafka, p, Duration::from_secs(60))
                            })
                            .await
                            .map_err(|e| {
                                PipelineError::StateRestore {
                                    partition: p,
                                    message: e.to_string(),
                                }
                            })?
                        }
                    })
                    .await?;
                tracing::info!(
                    partition = p,
                    documents = docs.len(),
                    "embedder state restored"
                );
                self.state.insert_partition(p, docs);
            }
        }

        // Decisions see the effects of earlier messages of the same batch.
        let mut pending: HashMap<(i32, String), Option<DocState>> = HashMap::new();
        let mut items = Vec::with_capacity(batch.len());
        for m in &batch {
            let decision = self
                .retrier()
                .run("decode", shutdown, || self.decide(m, &pending))
                .await?;
            let escalated_version = self
                .known(&pending, m.partition(), decision.doc_key().0)
                .and_then(|k| k.escalated_version);
            if let Some((doc_id, state)) =
                decision.state_after(&self.engine.info().model_id, escalated_version)
            {
                pending.insert((m.partition(), doc_id.to_owned()), state);
            }
            let span = tracing::info_span!(
                "embed_document",
                partition = m.partition(),
                offset = m.offset()
            );
            let trace = continue_trace(&span, traceparent_of(m.headers()));
            items.push(Item {
                partition: m.partition(),
                offset: m.offset(),
                decision,
                embed_ms: None,
                trace,
                _span: span,
                workflow_id: None,
                escalated_version,
            });
        }

        let sequences: Vec<Vec<u32>> = items
            .iter()
            .flat_map(|i| match &i.decision {
                Decision::Embed { chunks, .. } => {
                    chunks.iter().map(|c| c.token_ids.clone()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        let tokens: usize = sequences.iter().map(Vec::len).sum();
        let sequences_empty = sequences.is_empty();
        let embed_started = Instant::now();
        let embedded = if sequences.is_empty() {
            Vec::new()
        } else {
            self.engine.embed_tokens(sequences).await?
        };
        let embed_elapsed = embed_started.elapsed();
        if !sequences_empty {
            self.metrics
                .embed_seconds
                .observe(embed_elapsed.as_secs_f64());
        }
        let embed_ms = embed_elapsed.as_millis() as i64;
        for item in &mut items {
            if matches!(item.decision, Decision::Embed { .. }) {
                item.embed_ms = Some(embed_ms);
            }
        }
        let vectors: Vec<Vec<f32>> = embedded.into_iter().map(|e| e.vector).collect();

        self.escalate(&mut items, shutdown).await?;
        self.settle_deletes(&items, shutdown).await?;

        let next_offsets = next_offsets(items.iter().map(|i| (i.partition, i.offset)));
        let committed_partitions = self
            .member
            .retry_paused(&self.retrier(), "transaction", shutdown, || async {
                // A rebalance during retries moves partitions away: leave their records out.
                let assigned = self.member.tracker.snapshot();
                self.commit_batch(&items, &vectors, &next_offsets, &assigned)
                    .await
            })
            .await?;

        // Committed: the memory follows, and the counters.
        for ((p, id), st) in pending {
            if committed_partitions.contains(&p) {
                self.state.apply(p, &id, st);
            }
        }
        self.metrics
            .embedder_state_documents
            .set(self.state.len() as i64);
        for item in items
            .iter()
            .filter(|i| committed_partitions.contains(&i.partition))
        {
            let outcome = match &item.decision {
                Decision::Embed { chunks, .. } => {
                    self.metrics.embedder_chunks.inc_by(chunks.len() as u64);
                    "embedded"
                }
                Decision::Delete { .. } => "deleted",
                Decision::Skip { outcome, .. } => *outcome,
                Decision::Escalate { .. } => "escalated",
                Decision::DeadLetter(d) => {
                    self.metrics
                        .dlq_records
                        .with_label_values(&[STAGE, d.reason.as_str()])
                        .inc();
                    "dead_lettered"
                }
            };
            self.metrics
                .embedder_documents
                .with_label_values(&[outcome])
                .inc();
        }
        self.metrics.embedder_tokens.inc_by(tokens as u64);
        self.metrics
            .embedder_batch_records
            .observe(items.len() as f64);
        self.metrics.embedder_batch_tokens.observe(tokens as f64);
        Ok(())
    }

    /// Starts the job of every escalated document of the batch (idempotent: a re-delivered
    /// batch finds its jobs started), retrying while Temporal is unreachable.
    async fn escalate(
        &self,
        items: &mut [Item],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let Some(escalator) = &self.escalator else {
            return Ok(());
        };
        for item in items.iter_mut() {
            let Decision::Escalate { doc, tokens, .. } = &item.decision else {
                continue;
            };
            let job = LargeDocumentJob {
                doc_id: doc.id.clone(),
                version: doc.version,
                partition: item.partition,
                offset: item.offset,
                tokens: *tokens,
                traceparent: item.trace.to_string(),
            };
            let id = self
                .member
                .retry_paused(&self.retrier(), "escalate", shutdown, || {
                    escalator.large_document(job.clone())
                })
                .await?;
            tracing::info!(doc_id = %job.doc_id, tokens = job.tokens, workflow_id = %id, "large document escalated to Temporal");
            item.workflow_id = Some(id);
        }
        Ok(())
    }

    /// What the memory holds for a document, counting this batch's earlier decisions.
    fn known<'a>(
        &'a self,
        pending: &'a HashMap<(i32, String), Option<DocState>>,
        partition: i32,
        doc_id: &str,
    ) -> Option<&'a DocState> {
        match pending.get(&(partition, doc_id.to_owned())) {
            Some(s) => s.as_ref(),
            None => self.state.get(partition, doc_id),
        }
    }

    /// Before deletes are written: waits until the large-document job of each deleted
    /// document's last version (if it had one) is closed, so its vectors cannot arrive
    /// after the delete. Outside the transaction (a long wait must not time it out).
    async fn settle_deletes(
        &self,
        items: &[Item],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let Some(escalator) = &self.escalator else {
            return Ok(());
        };
        for item in items {
            let (Decision::Delete { doc_id, .. }, Some(version)) =
                (&item.decision, &item.escalated_version)
            else {
                continue;
            };
            self.member
                .retry_paused(&self.retrier(), "settle_escalation", shutdown, || {
                    escalator.settle_large_document(doc_id.clone(), *version)
                })
                .await?;
        }
        Ok(())
    }

    /// Decides what one message becomes. `Err` only for transient failures (the registry
    /// unreachable); everything wrong with the message itself is a dead letter.
    async fn decide(
        &self,
        m: &OwnedMessage,
        pending: &HashMap<(i32, String), Option<DocState>>,
    ) -> Result<Decision, PipelineError> {
        let dead = |(reason, message): (Reason, String)| {
            Decision::DeadLetter(DeadLetter {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                reason,
                message,
                stage: STAGE,
                source_topic: m.topic().to_owned(),
                source_partition: m.partition(),
                source_offset: m.offset(),
            })
        };
        let doc = match read_document(&self.registry, &self.document_reader, m.key(), m.payload())
            .await?
        {
            Read::Bad(reason, message) => return Ok(dead((reason, message))),
            Read::Tombstone(doc_id) => {
                return Ok(Decision::Delete {
                    doc_id,
                    tenant: vecstream_core::default_tenant(),
                    version: TOMBSTONE_VERSION,
                    tombstone: true,
                });
            }
            Read::Doc(doc) => doc,
        };
        let known = self.known(pending, m.partition(), &doc.id);
        if let Some(k) = known.filter(|k| doc.version < k.version) {
            // Older than what was emitted: fenced, with a lineage trail.
            return Ok(Decision::Skip {
                hash: String::new(),
                outcome: if k.deleted {
                    "stale_after_delete"
                } else {
                    "stale"
                },
                doc,
            });
        }
        if doc.deleted {
            return Ok(Decision::Delete {
                doc_id: doc.id.clone(),
                tenant: doc.tenant.clone(),
                version: doc.version,
                tombstone: false,
            });
        }
        let (text, hash) = match normalized(&doc, self.settings.max_body_bytes) {
            Ok(x) => x,
            Err(bad) => return Ok(dead(bad)),
        };
        let model_id = &self.engine.info().model_id;
        if let Some(k) = known
            && !k.deleted
            && k.content_hash == hash
            && &k.model_id == model_id
        {
            return Ok(Decision::Skip {
                doc,
                hash,
                outcome: "unchanged",
            });
        }
        let chunks = match chunked(&self.chunker, &text, self.settings.max_chunks) {
            Ok(chunks) => chunks,
            Err(bad) => return Ok(dead(bad)),
        };
        let tokens: usize = chunks.iter().map(|c| c.token_count()).sum();
        let limit = self.settings.large_document_tokens;
        if self.escalator.is_some() && limit > 0 && tokens > limit {
            return Ok(Decision::Escalate { doc, hash, tokens });
        }
        Ok(Decision::Embed { doc, hash, chunks })
    }

    /// One transaction: every record of the batch's still-assigned partitions, and their
    /// offsets. Returns the partitions committed.
    async fn commit_batch(
        &self,
        items: &[Item],
        vectors: &[Vec<f32>],
        next_offsets: &BTreeMap<i32, i64>,
        assigned: &BTreeSet<i32>,
    ) -> Result<BTreeSet<i32>, PipelineError> {
        let now = now_ms();
        let info = self.engine.info();
        let mut records: Vec<OutRecord> = Vec::new();
        let mut vector_at = 0usize;
        for item in items {
            let chunk_count = match &item.decision {
                Decision::Embed { chunks, .. } => chunks.len(),
                _ => 0,
            };
            let item_vectors = &vectors[vector_at..vector_at + chunk_count];
            vector_at += chunk_count;
            if !assigned.contains(&item.partition) {
                continue;
            }
            self.records_of(item, item_vectors, now, &info.model_id, &mut records)?;
        }
        let committed: BTreeSet<i32> = next_offsets
            .keys()
            .copied()
            .filter(|p| assigned.contains(p))
            .collect();
        if committed.is_empty() {
            return Ok(committed);
        }

        self.producer
            .begin_transaction()
            .map_err(|e| txn_error("begin_transaction", e))?;
        let outcome = async {
            let sends = records.iter().map(|r| {
                let mut rec: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(r.topic).key(r.key.as_slice());
                if let Some(p) = &r.payload {
                    rec = rec.payload(p.as_slice());
                }
                if let Some(p) = r.partition {
                    rec = rec.partition(p);
                }
                if let Some(h) = &r.headers {
                    rec = rec.headers(h.clone());
                }
                self.producer.send(rec, Timeout::After(TXN_TIMEOUT))
            });
            for result in futures::future::join_all(sends).await {
                result.map_err(|(e, _)| PipelineError::from(e))?;
            }
            let mut tpl = TopicPartitionList::new();
            for (p, o) in next_offsets.iter().filter(|(p, _)| committed.contains(p)) {
                tpl.add_partition_offset(topics::DOCUMENTS, *p, Offset::Offset(*o))?;
            }
            let group =
                self.member.consumer.group_metadata().ok_or_else(|| {
                    PipelineError::Config("consumer has no group metadata".into())
                })?;
            tokio::task::block_in_place(|| {
                self.producer
                    .send_offsets_to_transaction(&tpl, &group, TXN_TIMEOUT)?;
                self.producer.commit_transaction(TXN_TIMEOUT)
            })
            .map_err(|e| txn_error("commit", e))
        }
        .await;
        if let Err(e) = outcome {
            if let Err(abort) =
                tokio::task::block_in_place(|| self.producer.abort_transaction(TXN_TIMEOUT))
            {
                tracing::warn!(error = %abort, "abort_transaction failed");
            }
            return Err(e);
        }
        Ok(committed)
    }

    /// The records one item produces inside the transaction.
    fn records_of(
        &self,
        item: &Item,
        vectors: &[Vec<f32>],
        now: i64,
        model_id: &str,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), PipelineError> {
        let backend = self.engine.info().backend.as_str();
        let source = |facet: VecstreamFacet| VecstreamFacet {
            source_topic: Some(topics::DOCUMENTS.into()),
            source_partition: Some(item.partition),
            source_offset: Some(item.offset),
            model_id: Some(model_id.to_owned()),
            trace_id: Some(item.trace.trace_id_hex()),
            ..facet
        };
        let inputs = vec![self.lineage.topic(topics::DOCUMENTS)];
        let vectors_out = vec![self.lineage.topic(topics::VECTORS)];
        let (key, version) = item.decision.doc_key();
        out.push(self.lineage_record(
            key,
            EventType::Start,
            "received",
            source(VecstreamFacet {
                doc_id: (!key.is_empty()).then(|| key.to_owned()),
                doc_version: version,
                ..Default::default()
            }),
            inputs.clone(),
            Vec::new(),
            now,
        )?);
        match &item.decision {
            Decision::Embed { doc, hash, chunks } => {
                let record = vectors_of(doc, hash, chunks, vectors, model_id);
                let chunk_ids: Vec<String> =
                    record.chunks.iter().map(|c| c.chunk_id.clone()).collect();
                out.push(self.vectors_record(item, &record)?);
                out.push(self.lineage_record(
                    &doc.id,
                    EventType::Running,
                    "chunked",
                    source(VecstreamFacet {
                        doc_id: Some(doc.id.clone()),
                        doc_version: Some(doc.version),
                        content_hash: Some(hash.clone()),
                        chunk_ids: chunk_ids.clone(),
                        ..Default::default()
                    }),
                    inputs.clone(),
                    Vec::new(),
                    now,
                )?);
                let facet = source(VecstreamFacet {
                    doc_id: Some(doc.id.clone()),
                    doc_version: Some(doc.version),
                    content_hash: Some(hash.clone()),
                    chunk_ids,
                    backend: Some(backend.into()),
                    duration_ms: item.embed_ms,
                    ..Default::default()
                });
                out.push(self.lineage_record(
                    &doc.id,
                    EventType::Complete,
                    "embedded",
                    facet,
                    inputs,
                    vectors_out,
                    now,
                )?);
            }
            Decision::Delete {
                doc_id,
                tenant,
                version,
                tombstone,
                ..
            } => {
                let record = delete_of(doc_id, tenant, *version, model_id);
                out.push(self.vectors_record(item, &record)?);
                let facet = source(VecstreamFacet {
                    doc_id: Some(doc_id.clone()),
                    doc_version: (!tombstone).then_some(*version),
                    ..Default::default()
                });
                out.push(self.lineage_record(
                    doc_id,
                    EventType::Complete,
                    "deleted",
                    facet,
                    inputs,
                    vectors_out,
                    now,
                )?);
            }
            Decision::Skip { doc, hash, outcome } => {
                let facet = source(VecstreamFacet {
                    doc_id: Some(doc.id.clone()),
                    doc_version: Some(doc.version),
                    content_hash: (!hash.is_empty()).then(|| hash.clone()),
                    ..Default::default()
                });
                out.push(self.lineage_record(
                    &doc.id,
                    EventType::Other,
                    outcome,
                    facet,
                    inputs,
                    Vec::new(),
                    now,
                )?);
            }
            Decision::Escalate { doc, hash, tokens } => {
                let facet = source(VecstreamFacet {
                    doc_id: Some(doc.id.clone()),
                    doc_version: Some(doc.version),
                    content_hash: Some(hash.clone()),
                    workflow_id: item.workflow_id.clone(),
                    error: Some(format!(
                        "{tokens} tokens over embedder.large_document_tokens = {}",
                        self.settings.large_document_tokens
                    )),
                    ..Default::default()
                });
                out.push(self.lineage_record(
                    &doc.id,
                    EventType::Running,
                    "escalated",
                    facet,
                    inputs,
                    Vec::new(),
                    now,
                )?);
            }
            Decision::DeadLetter(d) => {
                out.push(OutRecord {
                    topic: topics::DOCUMENTS_DLQ,
                    key: d.key.clone().unwrap_or_default(),
                    payload: d.payload.clone(),
                    partition: None,
                    headers: Some(with_traceparent(d.headers(now), &item.trace)),
                });
                let doc_id = d
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .map(str::to_owned);
                let facet = source(VecstreamFacet {
                    doc_id: doc_id.clone(),
                    error: Some(format!("{}: {}", d.reason.as_str(), d.message)),
                    ..Default::default()
                });
                out.push(self.lineage_record(
                    doc_id.as_deref().unwrap_or(""),
                    EventType::Fail,
                    "dead_lettered",
                    facet,
                    inputs,
                    vec![self.lineage.topic(topics::DOCUMENTS_DLQ)],
                    now,
                )?);
            }
        }
        if let Some((doc_id, state)) = item.decision.state_after(model_id, item.escalated_version) {
            out.push(state_record(item.partition, doc_id, state.as_ref()));
        }
        Ok(())
    }

    fn vectors_record(
        &self,
        item: &Item,
        record: &DocumentVectors,
    ) -> Result<OutRecord, PipelineError> {
        let (id, schema) = &self.vectors_schema;
        Ok(OutRecord {
            topic: topics::VECTORS,
            key: record.doc_id.as_bytes().to_vec(),
            payload: Some(wire::encode(*id, schema, record)?),
            // Same partition as the document: per-document order holds end to end.
            partition: Some(item.partition),
            headers: Some(with_traceparent(OwnedHeaders::new(), &item.trace)),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn lineage_record(
        &self,
        key: &str,
        event_type: EventType,
        outcome: &str,
        facet: VecstreamFacet,
        inputs: Vec<vecstream_core::Dataset>,
        outputs: Vec<vecstream_core::Dataset>,
        now: i64,
    ) -> Result<OutRecord, PipelineError> {
        let event = self
            .lineage
            .event(event_type, outcome, facet, inputs, outputs, now);
        let (id, schema) = &self.lineage_schema;
        Ok(OutRecord {
            topic: topics::LINEAGE,
            key: key.as_bytes().to_vec(),
            payload: Some(wire::encode(*id, schema, &event)?),
            partition: None,
            headers: None,
        })
    }
}

/// When the alias serves another model's collection, starts the reindex to `model_id`.
/// Never fails the embedder: it logs what it did or why it could not.
async fn reindex_if_model_changed(config: &Config, model_id: &str, escalator: &dyn Escalator) {
    let alias = &config.weaviate.alias;
    let live = match vecstream_weaviate::WeaviateClient::new(&config.weaviate) {
        Ok(w) => w.resolve_alias(alias).await,
        Err(e) => Err(e),
    };
    let mine = vecstream_weaviate::collection_name(model_id);
    match live {
        Ok(Some(live)) if live != mine => {
            match escalator.reindex(alias.clone(), model_id.to_owned()).await {
                Ok(id) => {
                    tracing::info!(%alias, %live, model_id, workflow_id = %id, "the alias serves another model: reindex started (approve it with `vecstream review approve`)")
                }
                Err(e) => {
                    tracing::warn!(%alias, %live, model_id, error = %e, "the alias serves another model and the reindex could not be started")
                }
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(%alias, error = %e, "could not check which model the alias serves")
        }
    }
}

/// A record to produce inside the transaction.
struct OutRecord {
    topic: &'static str,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    partition: Option<i32>,
    headers: Option<rdkafka::message::OwnedHeaders>,
}

/// The state-topic record of a document: its new state, or a tombstone that forgets it.
fn state_record(partition: i32, doc_id: &str, state: Option<&DocState>) -> OutRecord {
    OutRecord {
        topic: topics::EMBEDDER_STATE,
        key: doc_id.as_bytes().to_vec(),
        payload: state.map(|s| serde_json::to_vec(s).expect("state serialises")),
        partition: Some(partition),
        headers: None,
    }
}

fn txn_error(what: &str, e: rdkafka::error::KafkaError) -> PipelineError {
    // Fatal errors (fenced by a newer instance with our transactional id) end the process;
    // everything else is aborted and retried.
    let retryable = match &e {
        rdkafka::error::KafkaError::Transaction(t) => !t.is_fatal(),
        _ => true,
    };
    PipelineError::Transaction {
        message: format!("{what}: {e}"),
        retryable,
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecstream_core::Classify;

    #[test]
    fn the_dedup_memory_follows_each_decision() {
        let doc = Document {
            id: "d".into(),
            tenant: "t".into(),
            source: "s".into(),
            title: None,
            body: "b".into(),
            content_type: "text/plain".into(),
            metadata: Default::default(),
            version: 7,
            deleted: false,
            produced_at: 0,
        };
        let skip = |outcome| Decision::Skip {
            doc: doc.clone(),
            hash: "h".into(),
            outcome,
        };
        let unchanged = skip("unchanged");
        let (id, state) = unchanged.state_after("m", None).unwrap();
        let state = state.unwrap();
        assert_eq!((id, state.version, state.model_id.as_str()), ("d", 7, "m"));
        assert!(
            skip("stale").state_after("m", None).is_none(),
            "fenced: no change"
        );
        let delete = |tombstone| Decision::Delete {
            doc_id: "d".into(),
            tenant: "t".into(),
            version: 9,
            tombstone,
        };
        assert_eq!(delete(true).state_after("m", Some(7)), Some(("d", None)));
        let with_version = delete(false);
        let (_, deleted) = with_version.state_after("m", Some(7)).unwrap();
        let deleted = deleted.unwrap();
        assert!(
            deleted.deleted,
            "a delete with a version fences older versions"
        );
        assert_eq!(
            deleted.escalated_version,
            Some(7),
            "the job is still owed a wait"
        );
    }

    #[test]
    fn an_escalation_is_remembered_until_a_tombstone_forgets_the_document() {
        let doc = |version| Document {
            id: "d".into(),
            tenant: "t".into(),
            source: "s".into(),
            title: None,
            body: "b".into(),
            content_type: "text/plain".into(),
            metadata: Default::default(),
            version,
            deleted: false,
            produced_at: 0,
        };
        // Only an escalation names a job: an ordinary document's delete needs no Temporal.
        let embed = Decision::Embed {
            doc: doc(1),
            hash: "h".into(),
            chunks: Vec::new(),
        };
        assert_eq!(
            embed
                .state_after("m", None)
                .unwrap()
                .1
                .unwrap()
                .escalated_version,
            None
        );
        let escalate = Decision::Escalate {
            doc: doc(1),
            hash: "h".into(),
            tokens: 40_000,
        };
        let (_, s) = escalate.state_after("m", None).unwrap();
        assert_eq!(s.unwrap().escalated_version, Some(1));
        // A newer inline version keeps the older job's version: that job may still publish.
        let newer = Decision::Embed {
            doc: doc(2),
            hash: "h2".into(),
            chunks: Vec::new(),
        };
        let (_, s) = newer.state_after("m", Some(1)).unwrap();
        let s = s.unwrap();
        assert_eq!((s.version, s.escalated_version), (2, Some(1)));
        // The state record round-trips, and records without the field still read.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DocState>(&json).unwrap(), s);
        let old: DocState =
            serde_json::from_str(r#"{"version":1,"model_id":"m","content_hash":"h"}"#).unwrap();
        assert_eq!(old.escalated_version, None);
    }

    #[test]
    fn fatal_transaction_errors_are_permanent() {
        let e = txn_error(
            "commit",
            rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
            ),
        );
        assert!(e.class().is_retryable());
    }
}
