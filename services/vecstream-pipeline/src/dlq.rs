//! Dead-letter records: the original key and bytes, and headers saying what went wrong and
//! where the record came from (DESIGN section 2). `vecstream dlq list|replay` reads them back.

use rdkafka::message::{Header, OwnedHeaders};
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

impl DeadLetter {
    /// The headers of DESIGN section 2.
    pub fn headers(&self, now_ms: i64) -> OwnedHeaders {
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
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        })
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
}
