//! Joins `tracing` spans to the W3C trace a record carries across Kafka.
//!
//! When OTLP export is on, the span becomes a real child of the sender's span and the
//! next hop names it; when it is off, the trace id still travels (with a fresh span id),
//! so lineage and downstream hops stay on one trace whatever the configuration.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vecstream_core::TraceParent;

/// Makes `span` continue `parent` (or start a new trace when there is none) and returns
/// the context to send downstream: `span`'s own when it is exported, otherwise a child
/// hop of `parent`.
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    let parent = parent.unwrap_or_else(TraceParent::new_root);
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    // Fails only when no OpenTelemetry layer is installed: then there is nothing to join.
    if span.set_parent(cx).is_err() {
        return parent.child();
    }
    own_hop(span).unwrap_or_else(|| parent.child())
}

/// The context of `span` as a hop, when OpenTelemetry records it.
pub fn own_hop(span: &tracing::Span) -> Option<TraceParent> {
    let cx = span.context();
    let own = cx.span().span_context().clone();
    own.is_valid().then(|| TraceParent {
        trace_id: own.trace_id().to_bytes(),
        span_id: own.span_id().to_bytes(),
        flags: own.trace_flags().to_u8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_the_trace_id_still_travels() {
        let parent = TraceParent::new_root();
        let span = tracing::info_span!("hop");
        let hop = continue_trace(&span, Some(parent));
        assert_eq!(hop.trace_id, parent.trace_id);
        assert_ne!(hop.span_id, parent.span_id);
        let fresh = continue_trace(&span, None);
        assert_ne!(fresh.trace_id, parent.trace_id);
    }

    #[test]
    fn with_an_opentelemetry_layer_the_span_is_a_child_of_the_sender() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let parent = TraceParent::new_root();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("hop");
            let hop = continue_trace(&span, Some(parent));
            assert_eq!(hop.trace_id, parent.trace_id);
            assert_ne!(hop.span_id, parent.span_id);
            assert_eq!(own_hop(&span), Some(hop));
        });
    }
}
