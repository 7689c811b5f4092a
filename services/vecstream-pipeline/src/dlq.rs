//! Dead-letter records: the original key and bytes, and headers saying what went wrong and
//! where the record came from (DESIGN section 2). `vecstream dlq list|replay` reads them back.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use vecstream_core::ErrorClass;

/// `retryable` or `permanent` (DLQ records are permanent by construction, but a replay
/// tool may want to know).
pub const HEADER_CLASS: &str = "vecstream.error.class";
/// Machine-readable reason: see [`Reason`].
pub const HEADER_REASON: &str = "vecstream.error.reason";
/// Human-readable detail of the reason.
pub const HEADER_MESSAGE: &str = "vecstream.error.message";
/// `embed` or `sink`.
pub const HEADER_STAGE: &str = "vecstream.error.stage";
pub const HEADER_SOURCE_TOPIC: &str = "vecstream.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "vecstream.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "vecstream.source.offset";
/// Milliseconds since the epoch when the record was dead-lettered.
pub const HEADER_TIME: &str = "vecstream.error.time";
/// Set when the dead letter could not hold the original bytes (the record would exceed the
/// DLQ topic's limit): their size. The original is where the source headers say.
pub const HEADER_PAYLOAD_OMITTED: &str = "vecstream.dlq.payload_omitted";
/// Set when the original key was too long to keep (`vecstream_core::bounded_key`): its hex
/// SHA-256 (the record's key is then `sha256:<hex>`).
pub const HEADER_KEY_SHA256: &str = "vecstream.dlq.key_sha256";
/// Bytes a record takes beyond its key, value and headers (batch and record framing),
/// counted generously.
const RECORD_OVERHEAD: usize = 1024;

/// On a record `vecstream dlq replay` republished: `<dlq partition>/<dlq offset>`. The
/// replayed record also carries [`HEADER_SOURCE_PARTITION`] and [`HEADER_SOURCE_OFFSET`]:
/// where it was before it was dead-lettered.
pub const HEADER_REPLAY_OF: &str = "vecstream.replay.of";

/// Why a record was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not Confluent wire format, or Avro that does not decode with its writer schema.
    Undecodable,
    /// The schema id is not in the registry.
    UnknownSchema,
    /// Decoded, but violates the contract (key ≠ id, missing key, bad values).
    Invalid,
    /// No text to embed.
    EmptyBody,
    /// Body or chunk count over the configured limits.
    OverLimits,
    /// Weaviate refused the object (wrong dimensions, invalid property).
    Rejected,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::UnknownSchema => "unknown_schema",
            Reason::Invalid => "invalid",
            Reason::EmptyBody => "empty_body",
            Reason::OverLimits => "over_limits",
            Reason::Rejected => "rejected",
        }
    }
}

/// A poison record on its way to the DLQ.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: Reason,
    pub message: String,
    pub stage: &'static str,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
}

/// A dead letter as written: within the DLQ topic's record limit.
#[derive(Debug)]
pub struct DlqRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
}

impl DeadLetter {
    /// The headers of DESIGN section 2.
    pub fn headers(&self, now_ms: i64) -> OwnedHeaders {
        self.headers_with(now_ms, &[])
    }

    fn headers_with(&self, now_ms: i64, extra: &[(&str, String)]) -> OwnedHeaders {
        let partition = self.source_partition.to_string();
        let offset = self.source_offset.to_string();
        let time = now_ms.to_string();
        let message: String = self.message.chars().take(2000).collect();
        [
            (HEADER_CLASS, ErrorClass::Permanent.as_str()),
            (HEADER_REASON, self.reason.as_str()),
            (HEADER_MESSAGE, message.as_str()),
            (HEADER_STAGE, self.stage),
            (HEADER_SOURCE_TOPIC, self.source_topic.as_str()),
            (HEADER_SOURCE_PARTITION, partition.as_str()),
            (HEADER_SOURCE_OFFSET, offset.as_str()),
            (HEADER_TIME, time.as_str()),
        ]
        .into_iter()
        .chain(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        })
    }

    /// The record to write, at most `limit` bytes (the DLQ topic's `max.message.bytes`, see
    /// `vecstream_kafka::topics::dlq_record_limit`): whole when it fits; else without the
    /// original bytes ([`HEADER_PAYLOAD_OMITTED`] says how many; the source headers say
    /// where they are). A key too long for a record key is replaced by its hash
    /// ([`HEADER_KEY_SHA256`]), as its lineage names it. A dead letter is always written: none can stop the stream.
    pub fn to_record(&self, now_ms: i64, limit: usize) -> DlqRecord {
        let mut extra = Vec::new();
        let key = self.key.as_deref().map(|k| {
            let bounded = vecstream_core::bounded_key(k);
            if matches!(bounded, std::borrow::Cow::Owned(_)) {
                extra.push((HEADER_KEY_SHA256, vecstream_core::key_hash(k)));
            }
            bounded.into_owned()
        });
        let size = |payload: Option<&Vec<u8>>, extra: &[(&str, String)]| {
            let headers: usize = self
                .headers_with(now_ms, extra)
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + 8)
                .sum();
            key.as_ref().map_or(0, Vec::len)
                + payload.map_or(0, Vec::len)
                + headers
                + RECORD_OVERHEAD
        };
        let mut payload = self.payload.clone();
        if size(payload.as_ref(), &extra) > limit
            && let Some(p) = payload.take()
        {
            extra.push((HEADER_PAYLOAD_OMITTED, p.len().to_string()));
        }
        DlqRecord {
            headers: self.headers_with(now_ms, &extra),
            key,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers;

    use super::*;

    #[test]
    fn headers_carry_reason_stage_and_source() {
        let d = DeadLetter {
            key: Some(b"doc-1".to_vec()),
            payload: Some(vec![1, 2, 3]),
            reason: Reason::Undecodable,
            message: "magic byte 0x01".into(),
            stage: "embed",
            source_topic: "docs.documents.v1".into(),
            source_partition: 3,
            source_offset: 42,
        };
        let h = d.headers(1_700_000_000_000);
        let get = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(get(HEADER_REASON).as_deref(), Some("undecodable"));
        assert_eq!(get(HEADER_CLASS).as_deref(), Some("permanent"));
        assert_eq!(get(HEADER_STAGE).as_deref(), Some("embed"));
        assert_eq!(get(HEADER_SOURCE_PARTITION).as_deref(), Some("3"));
        assert_eq!(get(HEADER_SOURCE_OFFSET).as_deref(), Some("42"));
        assert_eq!(get(HEADER_MESSAGE).as_deref(), Some("magic byte 0x01"));
    }

    fn header(h: &OwnedHeaders, name: &str) -> Option<String> {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn a_dead_letter_too_large_for_the_topic_is_written_without_its_payload() {
        let d = DeadLetter {
            key: Some(b"doc-1".to_vec()),
            payload: Some(vec![7; 900_000]),
            reason: Reason::OverLimits,
            message: "body of 900000 bytes".into(),
            stage: "embed",
            source_topic: "docs.documents.v1".into(),
            source_partition: 1,
            source_offset: 9,
        };
        // Fits a 20 MiB topic whole.
        let whole = d.to_record(1, 20 << 20);
        assert_eq!(whole.payload.as_ref().map(Vec::len), Some(900_000));
        assert_eq!(header(&whole.headers, HEADER_PAYLOAD_OMITTED), None);
        // A topic of the broker's default limit (1 MiB) takes it; one of 900,000 does not.
        assert!(d.to_record(1, 1_048_588).payload.is_some());
        let slim = d.to_record(1, 900_000);
        assert_eq!(slim.payload, None);
        assert_eq!(
            header(&slim.headers, HEADER_PAYLOAD_OMITTED).as_deref(),
            Some("900000")
        );
        assert_eq!(
            header(&slim.headers, HEADER_SOURCE_OFFSET).as_deref(),
            Some("9")
        );
        assert_eq!(slim.key.as_deref(), Some(&b"doc-1"[..]));
        // A key too long to keep is named by its hash.
        let long = DeadLetter {
            key: Some(vec![b'k'; 1_000_000]),
            payload: None,
            ..d
        };
        let r = long.to_record(1, 1_048_588);
        let k = String::from_utf8(r.key.unwrap()).unwrap();
        assert!(k.starts_with("sha256:") && k.len() == 7 + 64, "{k}");
        assert_eq!(header(&r.headers, HEADER_KEY_SHA256).unwrap(), k[7..]);
    }
}
