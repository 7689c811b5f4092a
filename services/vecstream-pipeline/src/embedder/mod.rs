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

//!
//! Layers: [`decision`] judges each record without I/O; [`records`] turns decisions into the
//! transaction's records (lineage from a per-outcome table); [`transaction`] commits them
//! with the offsets; this module runs the loop and the I/O around them (registry reads,
//! state restore, the engine, escalation).

mod decision;
mod records;
mod transaction;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::watch;
use vecstream_config::{Config, EmbedderSettings, KafkaConfig};
use vecstream_core::{Classify, topics};
use vecstream_engine::Chunker;
use vecstream_kafka::{SchemaRegistry, schemas, traceparent_of};
use vecstream_providers::{EmbedInput, ProviderChain};
use vecstream_telemetry::continue_trace;

use crate::common::{BatchLimits, Member, Retrier, next_offsets};
use crate::dlq::Reason;
use crate::document::DocumentReader;
use crate::escalate::{Escalator, LargeDocumentJob};
use crate::lineage::{LineageFactory, lineage_writer_schema, now_ms};
use crate::state::{DedupState, restore_partition};
use crate::{PipelineError, PipelineMetrics};

pub(crate) use decision::{Decision, Pending, Rules, Source, decide_batch};
pub use decision::{DocOutcome, TOMBSTONE_VERSION};
use records::{Item, OutRecord, RecordEncoder};
use transaction::Transactions;

/// Attempts at embedding one batch when the engine's errors can pass (device memory).
const MAX_EMBED_ATTEMPTS: u32 = 5;

/// How long a partition with a waiting document is held back before it is tried again.
const HOLD_FOR: Duration = Duration::from_secs(3);

/// The stream embedder; see the module docs.
pub struct Embedder {
    settings: EmbedderSettings,
    kafka: KafkaConfig,
    member: Member,
    transactions: Transactions,
    documents: DocumentReader,
    encoder: RecordEncoder,
    provider: Arc<ProviderChain>,
    chunker: Chunker,
    state: DedupState,
    metrics: PipelineMetrics,
    escalator: Option<Arc<dyn Escalator>>,
    /// Documents waiting for Temporal, by (partition, offset): since when.
    waiting: std::sync::Mutex<HashMap<(i32, i64), Instant>>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("group_id", &self.settings.group_id)
            .field("model_id", &self.provider.model_id())
            .field("providers", &self.provider.names())
            .finish()
    }
}

impl Embedder {
    /// Creates the topics and schema subjects it needs, the transactional producer (which
    /// fences a previous instance with the same transactional id) and the consumer.
    ///
    /// With an `escalator`, large documents go to their own job. Which model the embedder
    /// runs with is its caller's choice (`vecstream run embedder` follows the alias's
    /// migration state); `provider` embeds in that model's vector space (the local engine,
    /// or remote providers with their fallback).
    pub async fn connect(
        config: &Config,
        provider: Arc<ProviderChain>,
        metrics: PipelineMetrics,
        escalator: Option<Arc<dyn Escalator>>,
    ) -> Result<Self, PipelineError> {
        let settings = config.embedder.clone();
        vecstream_kafka::topics::ensure_topics(&config.kafka).await?;
        let registry = SchemaRegistry::new(&config.registry)?;
        let vectors_id = registry
            .ensure_subject(
                &topics::value_subject(topics::VECTORS),
                schemas::DOCUMENT_VECTORS,
            )
            .await?;
        let lineage_schema = lineage_writer_schema(&registry).await?;
        let chunk_tokens = (settings.chunk_tokens > 0).then_some(settings.chunk_tokens);
        let chunker = Chunker::new(
            provider.tokenizer().clone(),
            chunk_tokens,
            settings.chunk_overlap,
        )?;

        let transactional_id = transaction::transactional_id(&settings);
        let transactions = Transactions::connect(&config.kafka, &transactional_id).await?;
        let member = Member::subscribe(
            &config.kafka,
            &settings.group_id,
            topics::DOCUMENTS,
            "embedder",
            &metrics,
            &[],
        )?;
        tracing::info!(%transactional_id, group = %settings.group_id, model_id = %provider.model_id(), providers = ?provider.names(), "embedder connected");

        let encoder = RecordEncoder {
            lineage: LineageFactory::new(decision::STAGE, "embedder", &config.kafka.brokers),
            vectors_schema: (vectors_id, schemas::parse(schemas::DOCUMENT_VECTORS)?),
            lineage_schema,
            large_document_tokens: settings.large_document_tokens,
            dlq_record_limit: vecstream_kafka::topics::dlq_record_limit(&config.kafka).await,
        };
        Ok(Self {
            settings,
            kafka: config.kafka.clone(),
            member,
            transactions,
            documents: DocumentReader::new(config)?,
            encoder,
            provider,
            chunker,
            state: DedupState::bounded(config.embedder.state_max_documents),
            metrics,
            escalator,
            waiting: Default::default(),
        })
    }

    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            component: "embedder",
            metrics: &self.metrics,
            max_backoff: Duration::from_millis(self.settings.max_backoff_ms),
        }
    }

    fn rules(&self) -> Rules<'_> {
        let limit = self.settings.large_document_tokens;
        Rules {
            model_id: self.provider.model_id(),
            chunker: &self.chunker,
            max_body_bytes: self.settings.max_body_bytes,
            max_chunks: self.settings.max_chunks,
            large_document_tokens: (self.escalator.is_some() && limit > 0).then_some(limit),
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
                // Bounded through the token estimate (four payload bytes per token).
                max_bytes: None,
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
        self.restore_state(&batch, shutdown).await?;

        // Read every record (the registry may be down: retried with the partitions paused,
        // still polling), then decide in order.
        let mut reads = Vec::with_capacity(batch.len());
        for m in &batch {
            let read = self
                .member
                .retry_paused(&self.retrier(), "decode", shutdown, || {
                    self.documents.read(m.key(), m.payload())
                })
                .await?;
            reads.push(read);
        }
        let (batch, decided, mut pending) = self.decide_off_runtime(batch, reads).await?;
        let mut items: Vec<Item> = batch
            .iter()
            .zip(decided)
            .map(|(m, d)| {
                let span = tracing::info_span!(
                    "embed_document",
                    partition = m.partition(),
                    offset = m.offset()
                );
                let trace = continue_trace(&span, traceparent_of(m.headers()));
                Item {
                    partition: m.partition(),
                    offset: m.offset(),
                    decision: d.decision,
                    embed_ms: None,
                    embedded_by: None,
                    trace,
                    _span: span,
                    workflow_id: None,
                    before: d.before,
                }
            })
            .collect();

        let inputs: Vec<EmbedInput> = items
            .iter()
            .flat_map(|i| i.decision.chunks().iter().map(EmbedInput::from))
            .collect();
        let tokens: usize = inputs.iter().map(|i| i.token_ids.len()).sum();
        let vectors: Vec<Vec<f32>> = if inputs.is_empty() {
            Vec::new()
        } else {
            // Device memory that another batch or process held can pass, and so can a
            // provider that is down or throttling (after its own retries and the fallback):
            // the batch is retried with its partitions paused; the engine's device errors a
            // few times only, then the embedder stops and its supervisor restarts it.
            let provider = &self.provider;
            let inputs = &inputs;
            // Shared with the retried closure; the future is Send, hence atomics and a mutex.
            let attempts = std::sync::atomic::AtomicU32::new(0);
            let attempt_started = std::sync::Mutex::new(Instant::now());
            let embedded = self
                .member
                .retry_paused(&self.retrier(), "embed", shutdown, || {
                    let attempt = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    *attempt_started.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    async move {
                        provider
                            .embed(inputs)
                            .await
                            .map_err(|e| embed_error(attempt, e))
                    }
                })
                .await?;
            // The time of the attempt that succeeded, not the backoff before it.
            let embed_started = *attempt_started.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = embed_started.elapsed();
            self.metrics.embed_seconds.observe(elapsed.as_secs_f64());
            for item in &mut items {
                if matches!(item.decision, Decision::Embed { .. }) {
                    item.embed_ms = Some(elapsed.as_millis() as i64);
                    item.embedded_by = Some((embedded.provider.clone(), embedded.backend.clone()));
                }
            }
            embedded.vectors
        };

        // Partitions with a document that must wait (Temporal unreachable, a superseded job
        // still stopping): left out of this batch's transaction and held back; the others
        // go on.
        let mut waiting = self.escalate(&batch, &mut items, &mut pending).await?;
        waiting.extend(self.settle_deletes(&items).await?);

        let next_offsets = next_offsets(items.iter().map(|i| (i.partition, i.offset)));
        let committed_partitions = self
            .member
            .retry_paused(&self.retrier(), "transaction", shutdown, || async {
                // A rebalance during retries moves partitions away: leave their records out.
                let mut assigned = self.member.tracker.snapshot();
                assigned.retain(|p| !waiting.contains(p));
                self.commit_batch(&items, &vectors, &next_offsets, &assigned)
                    .await
            })
            .await?;
        let assigned = self.member.tracker.snapshot();
        for p in waiting.iter().filter(|p| assigned.contains(p)) {
            let first = items
                .iter()
                .filter(|i| i.partition == *p)
                .map(|i| i.offset)
                .min();
            if let Some(first) = first
                && let Err(e) = self.member.hold(topics::DOCUMENTS, *p, first, HOLD_FOR)
            {
                // Revoked meanwhile: its new owner reads from the committed offset anyway.
                tracing::warn!(partition = p, error = %e, "holding a partition back failed");
            }
        }
        self.lock_waiting().retain(|(p, _), _| assigned.contains(p));
        self.metrics
            .embedder_waiting_partitions
            .set(self.member.holding() as i64);

        // Committed: the memory follows, and the counters.
        for ((p, id), st) in pending {
            if committed_partitions.contains(&p) {
                self.state.apply(p, &id, st);
            }
        }
        self.count(&items, &committed_partitions, tokens);
        Ok(())
    }

    /// Decides the batch on a blocking thread: normalising and tokenising megabytes of
    /// text must not hold up the async runtime's workers (the consumer's polling, metrics,
    /// health). The memory travels with the task and comes back with the decisions.
    async fn decide_off_runtime(
        &mut self,
        batch: Vec<OwnedMessage>,
        reads: Vec<crate::document::Read>,
    ) -> Result<(Vec<OwnedMessage>, Vec<decision::Decided>, Pending), PipelineError> {
        let state = std::mem::take(&mut self.state);
        let chunker = self.chunker.clone();
        let model_id = self.provider.model_id().to_owned();
        let Rules {
            max_body_bytes,
            max_chunks,
            large_document_tokens,
            ..
        } = self.rules();
        let decided = tokio::task::spawn_blocking(move || {
            let rules = Rules {
                model_id: &model_id,
                chunker: &chunker,
                max_body_bytes,
                max_chunks,
                large_document_tokens,
            };
            let (decided, pending) =
                decide_batch(batch.iter().map(source_of).zip(reads), &state, rules);
            (batch, decided, pending, state)
        })
        .await;
        match decided {
            Ok((batch, decided, pending, state)) => {
                self.state = state;
                Ok((batch, decided, pending))
            }
            // The memory went with the task: the embedder stops and restores it on restart.
            Err(e) => Err(PipelineError::Config(format!(
                "deciding a batch failed: {e}"
            ))),
        }
    }

    /// Restores the dedup memory of partitions seen for the first time (at start or after
    /// a rebalance), before any of their records is decided.
    async fn restore_state(
        &mut self,
        batch: &[OwnedMessage],
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        let partitions: BTreeSet<i32> = batch.iter().map(|m| m.partition()).collect();
        for p in partitions {
            if self.state.is_restored(p) {
                continue;
            }
            let docs = self
                .member
                .retry_paused(&self.retrier(), "restore_state", shutdown, || {
                    let kafka = self.kafka.clone();
                    async move {
                        tokio::task::spawn_blocking(move || {
                            restore_partition(&kafka, p, Duration::from_secs(60))
                        })
                        .await
                        .map_err(|e| PipelineError::StateRestore {
                            partition: p,
                            message: e.to_string(),
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
        Ok(())
    }

    fn count(&self, items: &[Item], committed: &BTreeSet<i32>, tokens: usize) {
        self.metrics
            .embedder_state_documents
            .set(self.state.len() as i64);
        let forgotten = &self.metrics.embedder_state_forgotten;
        forgotten.inc_by(self.state.forgotten().saturating_sub(forgotten.get()));
        for item in items.iter().filter(|i| committed.contains(&i.partition)) {
            let outcome = item.decision.outcome();
            match &item.decision {
                Decision::Embed { chunks, .. } => {
                    self.metrics.embedder_chunks.inc_by(chunks.len() as u64)
                }
                Decision::DeadLetter(d) => self
                    .metrics
                    .dlq_records
                    .with_label_values(&[decision::STAGE, d.reason.as_str()])
                    .inc(),
                _ => {}
            }
            self.metrics
                .embedder_documents
                .with_label_values(&[outcome.as_str()])
                .inc();
        }
        self.metrics.embedder_tokens.inc_by(tokens as u64);
        self.metrics
            .embedder_batch_records
            .observe(items.len() as f64);
        self.metrics.embedder_batch_tokens.observe(tokens as f64);
    }

    /// Starts the job of every escalated document of the batch (idempotent: a re-delivered
    /// batch finds its jobs started). A job Temporal refuses for good (a validation error)
    /// dead-letters its document: one document never stops its partition. While Temporal
    /// cannot be reached, the document's partition waits (returned: held back, retried),
    /// for at most `embedder.temporal_max_wait_ms`; then the document is dead-lettered
    /// (replay it once Temporal is back) and its partition goes on.
    async fn escalate(
        &self,
        batch: &[OwnedMessage],
        items: &mut [Item],
        pending: &mut Pending,
    ) -> Result<BTreeSet<i32>, PipelineError> {
        let mut waiting = BTreeSet::new();
        let Some(escalator) = &self.escalator else {
            return Ok(waiting);
        };
        let max_wait = Duration::from_millis(self.settings.temporal_max_wait_ms);
        for (item, m) in items.iter_mut().zip(batch) {
            let Decision::Escalate { doc, tokens, hash } = &item.decision else {
                continue;
            };
            if waiting.contains(&item.partition) {
                continue;
            }
            let job = LargeDocumentJob {
                tenant: doc.tenant.clone(),
                doc_id: doc.id.clone(),
                version: doc.version,
                model_id: self.provider.model_id().to_owned(),
                content_hash: hash.clone(),
                partition: item.partition,
                offset: item.offset,
                tokens: *tokens,
                traceparent: item.trace.to_string(),
            };
            let slot = (item.partition, item.offset);
            let why = match escalator.large_document(job.clone()).await {
                Ok(id) => {
                    self.lock_waiting().remove(&slot);
                    tracing::info!(doc_id = %job.doc_id, tokens = job.tokens, workflow_id = %id, "large document escalated to Temporal");
                    item.workflow_id = Some(id);
                    continue;
                }
                Err(e) if e.class().is_retryable() => {
                    let since = *self.lock_waiting().entry(slot).or_insert_with(Instant::now);
                    if since.elapsed() < max_wait {
                        tracing::warn!(doc_id = %job.doc_id, partition = item.partition, error = %e, waited = ?since.elapsed(), "Temporal unreachable: the large document's partition waits, the others go on");
                        waiting.insert(item.partition);
                        continue;
                    }
                    format!(
                        "Temporal unreachable for {} s (embedder.temporal_max_wait_ms); replay \
                         it once Temporal is back: {e}",
                        since.elapsed().as_secs()
                    )
                }
                Err(e) => e.to_string(),
            };
            self.lock_waiting().remove(&slot);
            tracing::error!(doc_id = %job.doc_id, tenant = %job.tenant, error = %why, "the large document's job cannot start: dead-lettered");
            // The memory forgets the escalation unless a later record of the batch changed
            // the document again.
            let model_id = self.provider.model_id();
            if let Some((key, state)) = item.decision.state_after(model_id, item.before.as_ref()) {
                let slot = (item.partition, key);
                if pending.get(&slot) == Some(&state) {
                    pending.insert(slot, item.before.clone());
                }
            }
            item.decision = source_of(m).dead_letter(
                Reason::OverLimits,
                format!(
                    "{} tokens over embedder.large_document_tokens = {}, and its \
                     large-document job could not start: {why}",
                    job.tokens, self.settings.large_document_tokens
                ),
            );
        }
        self.metrics
            .embedder_waiting_documents
            .set(self.lock_waiting().len() as i64);
        Ok(waiting)
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i64), Instant>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before deletes are written: every large-document job the memory holds for each
    /// deleted document must be closed, so no job's vectors arrive after the delete. A job
    /// still running is asked to stop (the delete supersedes it) and the delete's partition
    /// waits (returned: held back, asked again shortly); the batch's other partitions go on.
    async fn settle_deletes(&self, items: &[Item]) -> Result<BTreeSet<i32>, PipelineError> {
        let mut waiting = BTreeSet::new();
        let Some(escalator) = &self.escalator else {
            return Ok(waiting);
        };
        for item in items {
            let (Decision::Delete { doc_id, tenant, .. }, Some(before)) =
                (&item.decision, &item.before)
            else {
                continue;
            };
            if waiting.contains(&item.partition) {
                continue;
            }
            for job in before.pending_jobs(tenant, doc_id) {
                match escalator.large_document_closed(job.clone()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(%doc_id, workflow_id = %job, "the deleted document's job is stopping: its partition waits");
                        waiting.insert(item.partition);
                    }
                    Err(e) if e.class().is_retryable() => {
                        tracing::warn!(%doc_id, workflow_id = %job, error = %e, "cannot tell whether the deleted document's job is closed: its partition waits");
                        waiting.insert(item.partition);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(waiting)
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
        let model_id = self.provider.model_id();
        let mut records: Vec<OutRecord> = Vec::new();
        let mut vector_at = 0usize;
        for item in items {
            let count = item.decision.chunks().len();
            let item_vectors = &vectors[vector_at..vector_at + count];
            vector_at += count;
            if assigned.contains(&item.partition) {
                self.encoder
                    .records_of(item, item_vectors, now, model_id, &mut records)?;
            }
        }
        let committed: BTreeSet<i32> = next_offsets
            .keys()
            .copied()
            .filter(|p| assigned.contains(p))
            .collect();
        if committed.is_empty() {
            return Ok(committed);
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in next_offsets.iter().filter(|(p, _)| committed.contains(p)) {
            offsets.add_partition_offset(topics::DOCUMENTS, *p, Offset::Offset(*o))?;
        }
        let group = self
            .member
            .consumer
            .group_metadata()
            .ok_or_else(|| PipelineError::Config("consumer has no group metadata".into()))?;
        self.transactions.commit(&records, &offsets, group).await?;
        Ok(committed)
    }
}

/// The error of embedding attempt `attempt`: one that can pass stays retryable until
/// [`MAX_EMBED_ATTEMPTS`], then the embedder gives up (permanent: it stops and is restarted).
fn embed_error(attempt: u32, e: vecstream_providers::ProviderError) -> PipelineError {
    // Only the local engine's own errors are bounded: a remote provider down (or every
    // member of the chain) is an outage the batch waits out, like Kafka's.
    let engine_only = matches!(
        &e,
        vecstream_providers::ProviderError::Transient { provider, .. } if provider == "local"
    );
    if !e.class().is_retryable() && e.is_remote() {
        tracing::error!(error = %e, "a remote provider refused the batch; retrying with the partitions paused");
        return PipelineError::ProviderRefused(e);
    }
    if engine_only && attempt >= MAX_EMBED_ATTEMPTS && e.class().is_retryable() {
        PipelineError::GaveUp {
            what: "embedding a batch",
            attempts: attempt,
            last: e.to_string(),
        }
    } else {
        PipelineError::from(e)
    }
}

fn source_of(m: &OwnedMessage) -> Source<'_> {
    Source {
        key: m.key(),
        payload: m.payload(),
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        origin_offset: replayed_from(m).unwrap_or(m.offset()),
    }
}

/// For a dead letter that `vecstream dlq replay` put back into this partition: the offset it
/// had before it was dead-lettered (headers `vecstream.source.partition` and `.offset`).
fn replayed_from(m: &OwnedMessage) -> Option<i64> {
    use rdkafka::message::Headers;
    let headers = m.headers()?;
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
    };
    headers
        .iter()
        .find(|h| h.key == crate::dlq::HEADER_REPLAY_OF)?;
    (value(crate::dlq::HEADER_SOURCE_PARTITION)? == i64::from(m.partition()))
        .then(|| value(crate::dlq::HEADER_SOURCE_OFFSET))
        .flatten()
}

#[cfg(test)]
mod tests {
    use vecstream_core::Classify;
    use vecstream_engine::EngineError;
    use vecstream_providers::ProviderError;

    use super::{MAX_EMBED_ATTEMPTS, embed_error};

    #[test]
    fn device_memory_is_retried_a_few_times_then_the_embedder_gives_up() {
        let oom = || {
            ProviderError::from(EngineError::device(
                "cuda",
                "workspace",
                "CUDA_ERROR_OUT_OF_MEMORY",
            ))
        };
        for attempt in 1..MAX_EMBED_ATTEMPTS {
            assert!(
                embed_error(attempt, oom()).class().is_retryable(),
                "{attempt}"
            );
        }
        let last = embed_error(MAX_EMBED_ATTEMPTS, oom());
        assert!(!last.class().is_retryable());
        assert!(
            last.to_string().contains("gave up after 5 attempts"),
            "{last}"
        );
        // A permanent error stops at once.
        assert!(
            !embed_error(1, EngineError::Stopped.into())
                .class()
                .is_retryable()
        );
    }

    #[test]
    fn a_remote_provider_down_is_waited_out_however_long() {
        let down = ProviderError::Transient {
            provider: "serve".into(),
            message: "unreachable".into(),
            retry_after: None,
        };
        let e = embed_error(MAX_EMBED_ATTEMPTS * 10, down);
        assert!(e.class().is_retryable(), "{e}");
        // A refusal (a rotated key, a model renamed) stalls the batch instead of stopping
        // the embedder to start again on the same batch.
        let refused = ProviderError::Permanent {
            provider: "serve".into(),
            message: "401 Unauthorized".into(),
        };
        assert!(embed_error(1, refused).class().is_retryable());
    }
}
