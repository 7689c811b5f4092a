//! The W3C `traceparent` in Kafka record headers.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use vecstream_core::{TRACEPARENT_HEADER, TraceParent};

/// The trace context a record carries, if it carries a valid one. A malformed header is
/// ignored (the record starts a new trace) rather than failing the record: tracing must
/// never cost a document.
pub fn traceparent_of<H: Headers + ?Sized>(headers: Option<&H>) -> Option<TraceParent> {
    let headers = headers?;
    // The last value wins, as with HTTP headers set twice by middleware.
    (0..headers.count())
        .rev()
        .map(|i| headers.get(i))
        .find(|h| h.key.eq_ignore_ascii_case(TRACEPARENT_HEADER))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(TraceParent::parse)
}

/// `headers` plus the `traceparent` of `hop`.
pub fn with_traceparent(headers: OwnedHeaders, hop: &TraceParent) -> OwnedHeaders {
    let value = hop.to_string();
    headers.insert(Header {
        key: TRACEPARENT_HEADER,
        value: Some(value.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_headers_read_back() {
        let hop = TraceParent::new_root();
        let headers = with_traceparent(OwnedHeaders::new(), &hop);
        assert_eq!(traceparent_of(Some(&headers)), Some(hop));
        assert_eq!(traceparent_of::<OwnedHeaders>(None), None);
    }

    #[test]
    fn malformed_values_are_ignored() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("not-a-trace"),
        });
        assert_eq!(traceparent_of(Some(&headers)), None);
    }
}
