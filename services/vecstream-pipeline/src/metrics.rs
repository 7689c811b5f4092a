//! Prometheus metrics of the pipeline, registered in the process's registry (documented in
//! the README's metrics table).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and histograms of the embedder and the sink.
#[derive(Debug, Clone)]
pub struct PipelineMetrics {
    /// `vecstream_embedder_documents_total{outcome}`: embedded, unchanged, stale, deleted,
    /// dead_lettered.
    pub embedder_documents: IntCounterVec,
    /// `vecstream_embedder_chunks_total`: chunks embedded.
    pub embedder_chunks: IntCounter,
    /// `vecstream_embedder_tokens_total`: tokens embedded.
    pub embedder_tokens: IntCounter,
    /// `vecstream_embedder_batch_seconds`: one micro-batch, gathered to committed.
    pub embedder_batch_seconds: Histogram,
    /// `vecstream_pipeline_retries_total{component,reason}`: transient failures retried.
    pub retries: IntCounterVec,
    /// `vecstream_pipeline_paused_partitions{component}`: partitions paused by backpressure
    /// or a retry.
    pub paused_partitions: prometheus::IntGaugeVec,
    /// `vecstream_dlq_records_total{stage,reason}`: records dead-lettered.
    pub dlq_records: IntCounterVec,
    /// `vecstream_sink_records_total{outcome}`: upserted, deleted, stale, dead_lettered.
    pub sink_records: IntCounterVec,
    /// `vecstream_sink_chunks_written_total`: chunk objects written to Weaviate.
    pub sink_chunks_written: IntCounter,
    /// `vecstream_sink_chunks_deleted_total`: stale or deleted chunk objects removed.
    pub sink_chunks_deleted: IntCounter,
    /// `vecstream_sink_schema_mismatches_total`: lookups of a chunk collection whose
    /// schema is not vecstream's (auto-schema made it); the sink writes nothing to it.
    pub sink_schema_mismatches: IntCounter,
    /// `vecstream_embedder_model_rejected`: 1 while the embedder's configured model is one
    /// the alias's migration rejected (or rolled back), so it embeds with the live model.
    pub embedder_model_rejected: IntGauge,
    /// `vecstream_embedder_state_documents`: documents in the embedder's dedup memory.
    pub embedder_state_documents: IntGauge,
    /// `vecstream_embedder_waiting_documents`: large documents waiting for Temporal.
    pub embedder_waiting_documents: IntGauge,
    /// `vecstream_embedder_waiting_partitions`: partitions held back for a waiting document.
    pub embedder_waiting_partitions: IntGauge,
    /// `vecstream_embedder_state_forgotten_total`: documents the dedup memory forgot to stay
    /// within `embedder.state_max_documents`.
    pub embedder_state_forgotten: prometheus::IntCounter,
    /// `vecstream_pipeline_consumer_lag{component,topic,partition}`: records behind the end.
    pub consumer_lag: prometheus::IntGaugeVec,
    /// `vecstream_embedder_batch_records`: messages per micro-batch.
    pub embedder_batch_records: Histogram,
    /// `vecstream_embedder_batch_tokens`: tokens embedded per micro-batch.
    pub embedder_batch_tokens: Histogram,
    /// `vecstream_sink_batch_seconds`: one sink batch, Weaviate writes through lineage acks.
    pub sink_batch_seconds: Histogram,
    /// `vecstream_embed_seconds`: the engine's forward pass of one micro-batch (embedding
    /// only: no decoding, chunking or Kafka).
    pub embed_seconds: Histogram,
    /// `vecstream_sink_upsert_seconds`: one Weaviate batch upsert request (writes only).
    pub sink_upsert_seconds: Histogram,
    /// `vecstream_activity_executions_total{activity,outcome}`: Temporal activities run by
    /// this worker: completed, failed (retried by Temporal), cancelled.
    pub activity_executions: IntCounterVec,
    /// `vecstream_activity_seconds{activity}`: duration of one activity attempt.
    pub activity_seconds: prometheus::HistogramVec,
    /// `vecstream_workflow_events_total{workflow,phase}`: phase events of the long jobs
    /// (`reindex`: preparing, scanning, evaluating, awaiting_review, approved, rejected,
    /// failed): started minus finished ones are the running workflows.
    pub workflow_events: IntCounterVec,
    /// `vecstream_provider_*`: calls, retries, fallbacks and breakers of the embedding
    /// providers (see `vecstream_providers::ProviderMetrics`).
    pub providers: vecstream_providers::ProviderMetrics,
}

impl PipelineMetrics {
    /// Registers the pipeline's metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let m = Self {
            embedder_documents: counter_vec(
                "vecstream_embedder_documents_total",
                "Documents handled by the embedder, by outcome.",
                &["outcome"],
            )?,
            embedder_chunks: IntCounter::new(
                "vecstream_embedder_chunks_total",
                "Chunks embedded.",
            )?,
            embedder_tokens: IntCounter::new(
                "vecstream_embedder_tokens_total",
                "Tokens embedded.",
            )?,
            embedder_batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vecstream_embedder_batch_seconds",
                    "Duration of one embedder micro-batch, gathered to committed.",
                )
                .buckets(latency_buckets()),
            )?,
            retries: counter_vec(
                "vecstream_pipeline_retries_total",
                "Transient failures retried, by component and reason.",
                &["component", "reason"],
            )?,
            paused_partitions: prometheus::IntGaugeVec::new(
                Opts::new(
                    "vecstream_pipeline_paused_partitions",
                    "Partitions paused while a batch is retried.",
                ),
                &["component"],
            )?,
            dlq_records: counter_vec(
                "vecstream_dlq_records_total",
                "Records sent to the dead-letter topic, by stage and reason.",
                &["stage", "reason"],
            )?,
            sink_records: counter_vec(
                "vecstream_sink_records_total",
                "Vector records handled by the sink, by outcome.",
                &["outcome"],
            )?,
            sink_chunks_written: IntCounter::new(
                "vecstream_sink_chunks_written_total",
                "Chunk objects written to Weaviate.",
            )?,
            sink_chunks_deleted: IntCounter::new(
                "vecstream_sink_chunks_deleted_total",
                "Stale or deleted chunk objects removed from Weaviate.",
            )?,
            sink_schema_mismatches: IntCounter::new(
                "vecstream_sink_schema_mismatches_total",
                "Lookups of a chunk collection whose schema is not vecstream's (not written to).",
            )?,
            embedder_model_rejected: IntGauge::new(
                "vecstream_embedder_model_rejected",
                "1 while the configured model was rejected for the alias and the embedder uses the live model.",
            )?,
            embedder_state_documents: IntGauge::new(
                "vecstream_embedder_state_documents",
                "Documents in the embedder's dedup memory (assigned partitions).",
            )?,
            embedder_waiting_documents: IntGauge::new(
                "vecstream_embedder_waiting_documents",
                "Large documents waiting for Temporal to start their job.",
            )?,
            embedder_waiting_partitions: IntGauge::new(
                "vecstream_embedder_waiting_partitions",
                "Partitions held back while one of their documents waits (Temporal, a job stopping).",
            )?,
            embedder_state_forgotten: prometheus::IntCounter::new(
                "vecstream_embedder_state_forgotten_total",
                "Documents the dedup memory forgot to stay within embedder.state_max_documents.",
            )?,
            consumer_lag: prometheus::IntGaugeVec::new(
                Opts::new(
                    "vecstream_pipeline_consumer_lag",
                    "Records between the consumer's position and the end of the partition.",
                ),
                &["component", "topic", "partition"],
            )?,
            embedder_batch_records: Histogram::with_opts(
                HistogramOpts::new(
                    "vecstream_embedder_batch_records",
                    "Messages per embedder micro-batch.",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
            )?,
            embedder_batch_tokens: Histogram::with_opts(
                HistogramOpts::new(
                    "vecstream_embedder_batch_tokens",
                    "Tokens embedded per embedder micro-batch.",
                )
                .buckets(vec![
                    64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
                ]),
            )?,
            sink_batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vecstream_sink_batch_seconds",
                    "Duration of one sink batch: Weaviate writes and deletes through lineage acks.",
                )
                .buckets(latency_buckets()),
            )?,
            embed_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vecstream_embed_seconds",
                    "Engine time to embed one micro-batch.",
                )
                .buckets(latency_buckets()),
            )?,
            sink_upsert_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vecstream_sink_upsert_seconds",
                    "Duration of one Weaviate batch upsert request.",
                )
                .buckets(latency_buckets()),
            )?,
            activity_executions: counter_vec(
                "vecstream_activity_executions_total",
                "Temporal activities run by this worker, by outcome.",
                &["activity", "outcome"],
            )?,
            activity_seconds: prometheus::HistogramVec::new(
                HistogramOpts::new(
                    "vecstream_activity_seconds",
                    "Duration of one Temporal activity attempt.",
                )
                .buckets(vec![0.01, 0.05, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0]),
                &["activity"],
            )?,
            workflow_events: counter_vec(
                "vecstream_workflow_events_total",
                "Phase events of the long jobs (Temporal workflows).",
                &["workflow", "phase"],
            )?,
            providers: vecstream_providers::ProviderMetrics::register(registry)?,
        };
        registry.register(Box::new(m.embed_seconds.clone()))?;
        registry.register(Box::new(m.activity_executions.clone()))?;
        registry.register(Box::new(m.activity_seconds.clone()))?;
        registry.register(Box::new(m.workflow_events.clone()))?;
        registry.register(Box::new(m.sink_upsert_seconds.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.embedder_batch_records.clone()))?;
        registry.register(Box::new(m.embedder_batch_tokens.clone()))?;
        registry.register(Box::new(m.sink_batch_seconds.clone()))?;
        registry.register(Box::new(m.embedder_documents.clone()))?;
        registry.register(Box::new(m.embedder_chunks.clone()))?;
        registry.register(Box::new(m.embedder_tokens.clone()))?;
        registry.register(Box::new(m.embedder_batch_seconds.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.paused_partitions.clone()))?;
        registry.register(Box::new(m.dlq_records.clone()))?;
        registry.register(Box::new(m.sink_records.clone()))?;
        registry.register(Box::new(m.sink_chunks_written.clone()))?;
        registry.register(Box::new(m.sink_chunks_deleted.clone()))?;
        registry.register(Box::new(m.embedder_state_documents.clone()))?;
        registry.register(Box::new(m.embedder_state_forgotten.clone()))?;
        registry.register(Box::new(m.embedder_waiting_documents.clone()))?;
        registry.register(Box::new(m.embedder_waiting_partitions.clone()))?;
        registry.register(Box::new(m.sink_schema_mismatches.clone()))?;
        registry.register(Box::new(m.embedder_model_rejected.clone()))?;
        Ok(m)
    }
}

/// Seconds buckets of the latency histograms: 5 ms to 30 s.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}
