//! Prometheus metrics of `vecstream serve`, per lane (documented in the README's metrics
//! table).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Queue, wait and batch share per lane; requests per lane, API and outcome.
#[derive(Debug, Clone)]
pub struct ServeMetrics {
    /// `vecstream_serve_queued_tokens{lane}`: tokens waiting.
    pub queued_tokens: IntGaugeVec,
    /// `vecstream_serve_wait_seconds{lane}`: a text's wait from admission to its batch.
    pub wait_seconds: HistogramVec,
    /// `vecstream_serve_batch_tokens_total{lane}`: tokens embedded; each lane's share of
    /// the engine is its rate over the sum.
    pub batch_tokens: IntCounterVec,
    /// `vecstream_serve_requests_total{lane,api,outcome}`: ok, rejected (429), invalid,
    /// unauthorized, failed.
    pub requests: IntCounterVec,
    /// `vecstream_serve_request_seconds{lane,api}`: a request, received to answered.
    pub request_seconds: HistogramVec,
}

impl ServeMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let m = Self {
            queued_tokens: IntGaugeVec::new(
                Opts::new("vecstream_serve_queued_tokens", "Tokens waiting per lane."),
                &["lane"],
            )?,
            wait_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "vecstream_serve_wait_seconds",
                    "A text's wait from admission to its batch, per lane.",
                )
                .buckets(buckets.clone()),
                &["lane"],
            )?,
            batch_tokens: IntCounterVec::new(
                Opts::new(
                    "vecstream_serve_batch_tokens_total",
                    "Tokens embedded per lane (the lane's share of the engine).",
                ),
                &["lane"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "vecstream_serve_requests_total",
                    "Requests per lane, API and outcome.",
                ),
                &["lane", "api", "outcome"],
            )?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "vecstream_serve_request_seconds",
                    "A request, received to answered.",
                )
                .buckets(buckets),
                &["lane", "api"],
            )?,
        };
        registry.register(Box::new(m.queued_tokens.clone()))?;
        registry.register(Box::new(m.wait_seconds.clone()))?;
        registry.register(Box::new(m.batch_tokens.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.request_seconds.clone()))?;
        Ok(m)
    }
}
