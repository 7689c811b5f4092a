//! The reindex scan: re-embeds the compacted documents topic, one partition range at a
//! time, with another model configuration, straight into that model's collection.
//!
//! It judges documents exactly as the stream embedder does ([`crate::document`]) and writes
//! through the same [`ChunkWriter`] as the sink, so the new collection ends up with the
//! chunks the stream would have produced: same ids scheme, fencing, stale and deleted chunks
//! handled. Poison records are skipped (the stream already dead-lettered them) and counted.
//! A scan slice is idempotent: re-running it after a crash rewrites the same objects.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use vecstream_config::Config;
use vecstream_core::topics;
use vecstream_engine::Chunker;
use vecstream_kafka::scan;
use vecstream_providers::{EmbedInput, ProviderChain};
use vecstream_weaviate::WeaviateClient;

use crate::document::{DocumentReader, Read, chunked, delete_of, normalized, vectors_of};
use crate::embedder::TOMBSTONE_VERSION;
use crate::writer::{ChunkWriter, Decoded, Outcome};
use crate::{PipelineError, PipelineMetrics};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What one slice of a scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliceReport {
    /// The offset to continue from.
    pub next_offset: i64,
    /// Records read.
    pub records: u64,
    /// Documents embedded and written.
    pub embedded: u64,
    /// Chunk objects written.
    pub chunks: u64,
    /// Documents removed (tombstones, `deleted = true`).
    pub deleted: u64,
    /// Poison records skipped, older versions fenced, records superseded in the slice.
    pub skipped: u64,
    /// Documents written into the collections a migration keeps current (live, previous)
    /// besides the scan's own.
    #[serde(default)]
    pub kept_current: u64,
}

/// Re-embeds partition ranges of `docs.documents.v1` into its model's collection.
pub struct Reindexer {
    documents: DocumentReader,
    consumer: Arc<BaseConsumer>,
    provider: Arc<ProviderChain>,
    chunker: Arc<Chunker>,
    writer: ChunkWriter,
    max_body_bytes: usize,
    max_chunks: usize,
    slice_records: usize,
    /// Per-document lineage of the scan, naming the reindex's run as parent.
    lineage: Option<ScanLineage>,
}

/// Where and as whose part a scan publishes its documents' lineage.
struct ScanLineage {
    config: Config,
    workflow_id: String,
    parent_run_id: String,
    factory: crate::lineage::LineageFactory,
}

impl std::fmt::Debug for Reindexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reindexer")
            .field("model_id", &self.provider.model_id())
            .finish()
    }
}

impl Reindexer {
    /// Chunking and limits come from `config.embedder`, as for the stream embedder;
    /// `provider` embeds (the `bulk` lane of remote providers).
    pub fn new(
        config: &Config,
        provider: Arc<ProviderChain>,
        metrics: PipelineMetrics,
    ) -> Result<Self, PipelineError> {
        let settings = &config.embedder;
        let chunker = Chunker::new(
            provider.tokenizer().clone(),
            (settings.chunk_tokens > 0).then_some(settings.chunk_tokens),
            settings.chunk_overlap,
        )?;
        Ok(Self {
            documents: DocumentReader::new(config)?,
            consumer: Arc::new(scan::scan_consumer(&config.kafka, "vecstream-reindex")?),
            chunker: Arc::new(chunker),
            writer: ChunkWriter::new(
                WeaviateClient::new(&config.weaviate)?,
                &config.weaviate.alias,
                metrics,
            )
            .with_tenancy(vecstream_weaviate::Tenancy::from_config(
                config.weaviate.multi_tenancy,
            ))
            .without_bootstrap(),
            max_body_bytes: settings.max_body_bytes,
            max_chunks: settings.max_chunks,
            slice_records: settings.batch_max_records.max(1),
            provider,
            lineage: None,
        })
    }

    /// Publishes a lineage event per document the scan writes (job `reindexer`), each
    /// naming `parent_run_id` (the reindex workflow's run) as its parent.
    pub fn with_lineage(mut self, config: &Config, workflow_id: &str, parent_run_id: &str) -> Self {
        self.lineage = Some(ScanLineage {
            config: config.clone(),
            workflow_id: workflow_id.to_owned(),
            parent_run_id: parent_run_id.to_owned(),
            factory: crate::lineage::LineageFactory::new(
                "reindex",
                "reindexer",
                &config.kafka.brokers,
            ),
        });
        self
    }

    /// The model id the scan embeds with.
    pub fn model_id(&self) -> &str {
        self.provider.model_id()
    }

    /// Reads, embeds and writes one slice of `[from, to)` of `partition`; with `tenant`,
    /// documents and tombstones of other tenants are skipped.
    pub async fn scan_slice(
        &self,
        partition: i32,
        from: i64,
        to: i64,
        tenant: Option<&str>,
    ) -> Result<SliceReport, PipelineError> {
        // Blocking work (the read, normalising and tokenising long documents) runs on
        // blocking threads: the activity's heartbeats, sent from the task awaiting this
        // slice, keep going however long a slice of long documents takes on a CPU worker.
        let consumer = self.consumer.clone();
        let slice_records = self.slice_records;
        let (messages, next_offset) = tokio::task::spawn_blocking(move || {
            scan::read_range(
                &consumer,
                topics::DOCUMENTS,
                partition,
                from,
                to,
                slice_records,
                READ_TIMEOUT,
            )
        })
        .await
        .map_err(|e| PipelineError::Blocking {
            what: "reading a reindex slice",
            message: e.to_string(),
        })??;
        let mut report = SliceReport {
            next_offset,
            records: messages.len() as u64,
            ..Default::default()
        };
        let model_id = self.model_id().to_owned();
        // Documents to embed (index into `records`), and the records in offset order.
        let mut records: Vec<Option<Decoded>> = Vec::with_capacity(messages.len());
        let mut to_prepare = Vec::new();
        for m in &messages {
            let read = self.documents.read(m.key(), m.payload()).await?;
            let record = match read {
                Read::Bad(reason, message) => {
                    tracing::debug!(partition, offset = m.offset(), reason = reason.as_str(), %message, "reindex skips a poison record");
                    None
                }
                Read::Doc(doc) if tenant.is_some_and(|t| t != doc.tenant) => None,
                Read::Tombstone { tenant: of, .. } if tenant.is_some_and(|t| t != of) => None,
                Read::Tombstone { tenant, doc_id } => Some(Ok(delete_of(
                    &doc_id,
                    &tenant,
                    TOMBSTONE_VERSION,
                    &model_id,
                ))),
                Read::Doc(doc) if doc.deleted => {
                    Some(Ok(delete_of(&doc.id, &doc.tenant, doc.version, &model_id)))
                }
                Read::Doc(doc) => {
                    to_prepare.push((records.len(), doc));
                    None
                }
            };
            records.push(record);
        }
        let (chunker, max_body_bytes, max_chunks) =
            (self.chunker.clone(), self.max_body_bytes, self.max_chunks);
        let to_embed: Vec<_> = tokio::task::spawn_blocking(move || {
            to_prepare
                .into_iter()
                .filter_map(|(at, doc)| {
                    let (text, hash) = normalized(&doc, max_body_bytes).ok()?;
                    let chunks = chunked(&chunker, &text, max_chunks).ok()?;
                    Some((at, doc, hash, chunks))
                })
                .collect()
        })
        .await
        .map_err(|e| PipelineError::Blocking {
            what: "preparing a reindex slice",
            message: e.to_string(),
        })?;
        let inputs: Vec<EmbedInput> = to_embed
            .iter()
            .flat_map(|(_, _, _, chunks)| chunks.iter().map(EmbedInput::from))
            .collect();
        let mut vectors = if inputs.is_empty() {
            Vec::new()
        } else {
            self.provider.embed(&inputs).await?.vectors
        }
        .into_iter();
        for (at, doc, hash, chunks) in &to_embed {
            let v: Vec<Vec<f32>> = vectors.by_ref().take(chunks.len()).collect();
            records[*at] = Some(Ok(vectors_of(doc, hash, chunks, &v, &model_id)));
        }
        let decoded: Vec<Decoded> = records.into_iter().flatten().collect();
        report.skipped = report.records - decoded.len() as u64;
        let outcomes = self.writer.write(&decoded).await?;
        if let Some(lineage) = &self.lineage {
            self.publish_lineage(lineage, &decoded, &outcomes).await?;
        }
        for outcome in outcomes {
            match outcome {
                Outcome::Upserted { written, .. } => {
                    report.embedded += 1;
                    report.chunks += written as u64;
                }
                Outcome::Deleted { .. } => report.deleted += 1,
                Outcome::Stale { .. } | Outcome::Superseded => report.skipped += 1,
                // The scan writes only collections in use: one missing is a collection
                // still propagating (or an operator's drop), never a reason to skip offsets.
                Outcome::Retired { collection } => {
                    return Err(PipelineError::MissingCollection { collection });
                }
                Outcome::DeadLettered(reason, message) => {
                    tracing::warn!(reason = reason.as_str(), %message, "weaviate refused a reindexed document");
                    report.skipped += 1;
                }
            }
        }
        Ok(report)
    }

    /// One lineage event per document of the slice, acknowledged before the slice counts
    /// as done (its heartbeat moves past it only then).
    async fn publish_lineage(
        &self,
        lineage: &ScanLineage,
        decoded: &[Decoded],
        outcomes: &[Outcome],
    ) -> Result<(), PipelineError> {
        use vecstream_core::{EventType, VecstreamFacet};
        let now = crate::lineage::now_ms();
        let weaviate = lineage.config.weaviate.url.clone();
        let mut events = Vec::with_capacity(decoded.len());
        for (record, outcome) in decoded.iter().zip(outcomes) {
            let Ok(v) = record else { continue };
            let event_type = match outcome {
                Outcome::Upserted { .. } | Outcome::Deleted { .. } => EventType::Complete,
                Outcome::DeadLettered(..) => EventType::Fail,
                _ => EventType::Other,
            };
            let collection =
                vecstream_weaviate::collection_name(&v.model_id, self.writer.tenancy());
            let facet = VecstreamFacet {
                doc_id: Some(v.doc_id.clone()),
                tenant: Some(v.tenant.clone()),
                doc_version: Some(v.doc_version),
                content_hash: (!v.content_hash.is_empty()).then(|| v.content_hash.clone()),
                chunk_ids: v.chunks.iter().map(|c| c.chunk_id.clone()).collect(),
                model_id: Some(v.model_id.clone()),
                source_topic: Some(topics::DOCUMENTS.into()),
                target_collection: Some(collection.clone()),
                workflow_id: Some(lineage.workflow_id.clone()),
                error: match outcome {
                    Outcome::DeadLettered(reason, message) => {
                        Some(format!("{}: {message}", reason.as_str()))
                    }
                    _ => None,
                },
                ..Default::default()
            };
            let outputs = match outcome {
                Outcome::Upserted { .. } | Outcome::Deleted { .. } => {
                    vec![vecstream_core::Dataset {
                        namespace: weaviate.clone(),
                        name: collection,
                    }]
                }
                _ => Vec::new(),
            };
            let label = match outcome {
                Outcome::Upserted { .. } => "embedded",
                other => other.label(),
            };
            let mut event = lineage.factory.event(
                event_type,
                label,
                facet,
                vec![lineage.factory.topic(topics::DOCUMENTS)],
                outputs,
                now,
            );
            event.run.parent_run_id = Some(lineage.parent_run_id.clone());
            events.push((v.record_key(), event));
        }
        crate::lineage::publish_many(&lineage.config, &events).await
    }
}
