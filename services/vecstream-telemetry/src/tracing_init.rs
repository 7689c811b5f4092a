use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};
use vecstream_config::TelemetryConfig;

/// Telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid telemetry.log_level {0:?}: {1}")]
    Filter(String, String),
    #[error("cannot build the OTLP exporter for {0}: {1}")]
    Otlp(String, String),
    #[error("cannot bind the metrics/health server on {0}: {1}")]
    Bind(String, std::io::Error),
}

/// Flushes and shuts the trace exporter down when dropped.
#[derive(Debug)]
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Errors here only mean the collector went away; nothing to do at exit.
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global `tracing` subscriber: logs to stderr (stdout belongs to command
/// output) and, when `otlp_endpoint` is set, OTLP trace export.
///
/// Must be called from within a Tokio runtime when OTLP is enabled.
pub fn init_tracing(cfg: &TelemetryConfig) -> Result<TracingGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&cfg.log_level)
        .map_err(|e| TelemetryError::Filter(cfg.log_level.clone(), e.to_string()))?;
    // Colours only on a terminal: log files and collectors get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let fmt = if cfg.log_format == "json" {
        fmt.json().boxed()
    } else {
        fmt.compact().boxed()
    };

    let provider = if cfg.otlp_endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&cfg.otlp_endpoint)
            .build()
            .map_err(|e| TelemetryError::Otlp(cfg.otlp_endpoint.clone(), e.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer("vecstream"))
    });

    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TracingGuard { provider })
}
