//! Prometheus metrics of the providers (documented in the README's metrics table).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Calls, retries, fallbacks and breaker states per provider.
#[derive(Debug, Clone)]
pub struct ProviderMetrics {
    /// `vecstream_provider_calls_total{provider,outcome}`: ok, transient, permanent,
    /// circuit_open (skipped), wrong_space.
    pub calls: IntCounterVec,
    /// `vecstream_provider_retries_total{provider,reason}`: attempts repeated (429, 503,
    /// timeout, 5xx, connect).
    pub retries: IntCounterVec,
    /// `vecstream_provider_fallbacks_total{from,to}`: calls the next member took over.
    pub fallbacks: IntCounterVec,
    /// `vecstream_provider_breaker_open{provider}`: 1 while the circuit is open.
    pub breaker_open: IntGaugeVec,
    /// `vecstream_provider_call_seconds{provider}`: one successful call, waits included.
    pub call_seconds: HistogramVec,
    /// `vecstream_provider_throttled_milliseconds_total{provider}`: time spent waiting for
    /// the client-side rate limits and `Retry-After`.
    pub throttled_ms: IntCounterVec,
    /// `vecstream_provider_inputs_total{provider}`: texts embedded.
    pub inputs: IntCounterVec,
}

impl ProviderMetrics {
    /// Metrics registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.calls.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.fallbacks.clone()))?;
        registry.register(Box::new(m.breaker_open.clone()))?;
        registry.register(Box::new(m.call_seconds.clone()))?;
        registry.register(Box::new(m.throttled_ms.clone()))?;
        registry.register(Box::new(m.inputs.clone()))?;
        Ok(m)
    }

    /// Metrics nobody scrapes (one-shot CLI commands).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            calls: IntCounterVec::new(
                Opts::new(
                    "vecstream_provider_calls_total",
                    "Embedding calls per provider and outcome.",
                ),
                &["provider", "outcome"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "vecstream_provider_retries_total",
                    "Attempts repeated after a transient failure.",
                ),
                &["provider", "reason"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "vecstream_provider_fallbacks_total",
                    "Calls the next provider of the chain took over.",
                ),
                &["from", "to"],
            )?,
            breaker_open: IntGaugeVec::new(
                Opts::new(
                    "vecstream_provider_breaker_open",
                    "1 while the provider's circuit breaker is open.",
                ),
                &["provider"],
            )?,
            call_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "vecstream_provider_call_seconds",
                    "One successful embedding call, waits included.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["provider"],
            )?,
            throttled_ms: IntCounterVec::new(
                Opts::new(
                    "vecstream_provider_throttled_milliseconds_total",
                    "Time spent waiting for the client-side rate limits.",
                ),
                &["provider"],
            )?,
            inputs: IntCounterVec::new(
                Opts::new(
                    "vecstream_provider_inputs_total",
                    "Texts embedded per provider.",
                ),
                &["provider"],
            )?,
        })
    }
}
