//! Prometheus metrics of the OpenLineage exporter (documented in the README's metrics table).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// What the exporter read, sent and lost.
#[derive(Debug, Clone)]
pub struct OpenLineageMetrics {
    /// `vecstream_openlineage_events_read_total`: Avro lineage events read.
    pub read: IntCounter,
    /// `vecstream_openlineage_undecodable_total`: lineage records that did not decode
    /// (skipped, logged).
    pub undecodable: IntCounter,
    /// `vecstream_openlineage_sent_total{transport}`: events the endpoint or topic took.
    pub sent: IntCounterVec,
    /// `vecstream_openlineage_dropped_total{transport,reason}`: events lost: `buffer_full`
    /// (the endpoint was slower than the stream for longer than the buffer lasts),
    /// `undeliverable` (every try failed), `rejected` (a 4xx answer).
    pub dropped: IntCounterVec,
    /// `vecstream_openlineage_retries_total{transport}`: tries repeated.
    pub retries: IntCounterVec,
    /// `vecstream_openlineage_buffered_events`: events waiting for the HTTP endpoint.
    pub buffered: IntGauge,
    /// `vecstream_openlineage_post_seconds`: one successful POST.
    pub post_seconds: Histogram,
}

impl OpenLineageMetrics {
    /// Metrics registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.read.clone()))?;
        registry.register(Box::new(m.undecodable.clone()))?;
        registry.register(Box::new(m.sent.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.buffered.clone()))?;
        registry.register(Box::new(m.post_seconds.clone()))?;
        Ok(m)
    }

    /// Metrics nobody scrapes (one-shot CLI commands).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            read: IntCounter::new(
                "vecstream_openlineage_events_read_total",
                "Avro lineage events the exporter read.",
            )?,
            undecodable: IntCounter::new(
                "vecstream_openlineage_undecodable_total",
                "Lineage records that did not decode.",
            )?,
            sent: IntCounterVec::new(
                Opts::new(
                    "vecstream_openlineage_sent_total",
                    "OpenLineage events delivered, per transport.",
                ),
                &["transport"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "vecstream_openlineage_dropped_total",
                    "OpenLineage events lost, per transport and reason.",
                ),
                &["transport", "reason"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "vecstream_openlineage_retries_total",
                    "OpenLineage sends repeated after a failure.",
                ),
                &["transport"],
            )?,
            buffered: IntGauge::new(
                "vecstream_openlineage_buffered_events",
                "OpenLineage events waiting for the HTTP endpoint.",
            )?,
            post_seconds: Histogram::with_opts(HistogramOpts::new(
                "vecstream_openlineage_post_seconds",
                "One successful POST to the OpenLineage endpoint.",
            ))?,
        })
    }
}
