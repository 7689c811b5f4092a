use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// The Prometheus registry of one process and the metrics registered in it.
///
/// Names are part of vecstream's operating surface and documented in the README;
/// every metric is prefixed `vecstream_`.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `vecstream_build_info{version}`: always 1; tells dashboards which build runs.
    pub build_info: IntGauge,
    /// `vecstream_documents_produced_total{topic}`: documents published by `vecstream produce`.
    pub documents_produced: IntCounterVec,
}

impl Metrics {
    /// A fresh registry with vecstream's metrics registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new(
                "vecstream_build_info",
                "Build of the running vecstream binary.",
            )
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        let documents_produced = IntCounterVec::new(
            Opts::new(
                "vecstream_documents_produced_total",
                "Documents published to Kafka.",
            ),
            &["topic"],
        )
        .expect("valid metric");
        for c in [
            Box::new(build_info.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(documents_produced.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            build_info,
            documents_produced,
        }
    }

    /// The registry, for crates that register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            out = format!("# encoding failed: {e}\n");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_exposes_documented_names() {
        let m = Metrics::new();
        m.documents_produced
            .with_label_values(&["docs.documents.v1"])
            .inc_by(3);
        let text = m.render();
        assert!(text.contains("vecstream_build_info{version="), "{text}");
        assert!(
            text.contains("vecstream_documents_produced_total{topic=\"docs.documents.v1\"} 3"),
            "{text}"
        );
    }
}
