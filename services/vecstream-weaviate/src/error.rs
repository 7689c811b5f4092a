use vecstream_core::{Classify, ErrorClass};

/// Failures talking to Weaviate.
#[derive(Debug, thiserror::Error)]
pub enum WeaviateError {
    #[error("weaviate unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// Weaviate refused our API key, or its certificate is not trusted: a configuration
    /// problem (permanent).
    #[error("weaviate at {url}: {reason}")]
    Access { url: String, reason: String },
    #[error("weaviate answered {status} to {what}: {body}")]
    Status {
        status: u16,
        what: String,
        body: String,
    },
    #[error("weaviate GraphQL error in {what}: {message}")]
    GraphQl { what: String, message: String },
    #[error("unexpected answer from weaviate to {what}: {message}")]
    Unexpected { what: String, message: String },
    /// One object of a batch upsert refused for a reason that passes (a shard still
    /// loading, a timeout inside Weaviate): the whole batch is worth retrying.
    #[error("weaviate refused object {id} of a batch: {error}")]
    Object { id: uuid::Uuid, error: ObjectError },
    /// A batch delete that removed only part of what it matched: retried until complete
    /// (a document must not stay half there).
    #[error("weaviate deleted {deleted} of {matched} objects in {what} ({failed} failed)")]
    PartialDelete {
        what: String,
        matched: u64,
        deleted: u64,
        failed: u64,
    },
}

/// Why Weaviate refused one object of a batch upsert.
///
/// Weaviate reports these inside a successful (200) batch answer, as messages without a
/// status of their own; the class is read from the message here, where the answer is
/// parsed, so no caller matches strings or invents a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectError {
    message: String,
    class: ErrorClass,
}

impl ObjectError {
    pub fn new(message: impl Into<String>) -> Self {
        let message = message.into();
        let class = if object_error_passes(&message) {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        };
        Self { message, class }
    }

    /// The object's collection does not exist (it was dropped, and auto-schema is off).
    /// Retryable: the retry looks the collection up again.
    pub fn is_missing_collection(&self) -> bool {
        missing_collection(&self.message.to_ascii_lowercase())
    }

    /// Weaviate's message(s) for the object.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ObjectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.class)
    }
}

impl Classify for ObjectError {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// Per-object messages that mean "Weaviate could not do it now" rather than "this object
/// is wrong": timeouts, a store gone read-only (disk pressure), shards or the node not ready.
fn object_error_passes(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    still_loading(&m)
        || missing_collection(&m)
        || [
            "timeout",
            "timed out",
            "deadline exceeded",
            "unavailable",
            "too many requests",
            "connection",
            "read only",
            "readonly",
            "read-only",
            // A node stopping, or out of disk (Weaviate turns read-only on disk pressure),
            // or an internal call cut short: the object is fine, the moment is not.
            "shutting down",
            "shutdown",
            "out of disk",
            "disk usage",
            "no space left",
            "context canceled",
            "resource exhausted",
            "broken pipe",
            "unexpected eof",
            "try again",
            "temporarily",
        ]
        .iter()
        .any(|s| m.contains(s))
}

/// Messages of a write to a collection (class) that does not exist.
fn missing_collection(message: &str) -> bool {
    [
        "class not found",
        "not present in schema",
        "not found in schema",
        "could not find class",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Messages of a Weaviate that is up but has not loaded its schema or indexes yet.
fn still_loading(message: &str) -> bool {
    [
        "no graphql provider present",
        "non-existing index",
        "not ready",
        "shard not found",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl Classify for WeaviateError {
    fn class(&self) -> ErrorClass {
        match self {
            WeaviateError::Unreachable { .. } => ErrorClass::Retryable,
            // Refused credentials (a key rotated or revoked while running) are the
            // deployment's problem, not the record's: retried, never dead-lettered. A
            // component meets them at start as `Access` (`check_access`), which stops it.
            WeaviateError::Status { status, .. }
                if *status >= 500 || matches!(*status, 401 | 403 | 429) =>
            {
                ErrorClass::Retryable
            }
            // Answered while a restarting Weaviate is still loading its schema or shards.
            WeaviateError::Status {
                status: 422, body, ..
            } if still_loading(body) => ErrorClass::Retryable,
            WeaviateError::GraphQl { message, .. } if still_loading(message) => {
                ErrorClass::Retryable
            }
            WeaviateError::Object { error, .. } => error.class(),
            WeaviateError::PartialDelete { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_restarts_are_retryable_bad_requests_are_not() {
        let status = |status: u16, body: &str| WeaviateError::Status {
            status,
            what: "x".into(),
            body: body.into(),
        };
        assert!(status(503, "").class().is_retryable());
        // A key revoked while the sink runs must not send every record to the DLQ.
        assert!(
            status(401, "unauthorized: invalid api key")
                .class()
                .is_retryable()
        );
        assert!(status(403, "forbidden").class().is_retryable());
        let refused_at_start = WeaviateError::Access {
            url: "u".into(),
            reason: "refused the API key".into(),
        };
        assert!(!refused_at_start.class().is_retryable());
        assert!(
            status(
                422,
                "no graphql provider present, this is most likely because no schema is present"
            )
            .class()
            .is_retryable()
        );
        assert!(
            !status(422, "vector lengths don't match")
                .class()
                .is_retryable()
        );
        let down = WeaviateError::Unreachable {
            url: "u".into(),
            message: "refused".into(),
        };
        assert!(down.class().is_retryable());
        let loading = WeaviateError::GraphQl {
            what: "x".into(),
            message: "explorer: list class: search: tried to browse non-existing index for C"
                .into(),
        };
        assert!(loading.class().is_retryable());
        let bad = WeaviateError::GraphQl {
            what: "x".into(),
            message: "Cannot query field".into(),
        };
        assert!(!bad.class().is_retryable());
    }

    #[test]
    fn object_errors_that_pass_are_told_apart_from_bad_objects() {
        for passing in [
            "context deadline exceeded: Timeout",
            "store is read only",
            "shard not found: not ready yet",
            "put object: shard Chunk_x: server is shutting down",
            "disk usage 91% exceeds read-only threshold: out of disk",
            "write: no space left on device",
            "rpc error: code = Canceled desc = context canceled",
        ] {
            let e = ObjectError::new(passing);
            assert!(e.class().is_retryable(), "{passing}");
            let whole = WeaviateError::Object {
                id: uuid::Uuid::nil(),
                error: e,
            };
            assert!(whole.class().is_retryable(), "{passing}");
        }
        let bad = ObjectError::new(
            "new node has a vector with length 3. Existing nodes have vectors with length 384",
        );
        assert!(!bad.class().is_retryable());
        assert!(bad.to_string().contains("length 3"));
    }

    #[test]
    fn a_write_to_a_dropped_collection_is_retried_and_recognised() {
        // Weaviate 1.39 with auto-schema off.
        let e = ObjectError::new("class 'Chunk_m_1234' not present in schema");
        assert!(e.is_missing_collection());
        assert!(e.class().is_retryable());
        assert!(!ObjectError::new("vector length 3").is_missing_collection());
    }
}
