use vecstream_core::{Classify, ErrorClass};

/// Failures talking to Weaviate.
#[derive(Debug, thiserror::Error)]
pub enum WeaviateError {
    #[error("weaviate unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
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
            WeaviateError::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            // Answered while a restarting Weaviate is still loading its schema or shards.
            WeaviateError::Status {
                status: 422, body, ..
            } if still_loading(body) => ErrorClass::Retryable,
            WeaviateError::GraphQl { message, .. } if still_loading(message) => {
                ErrorClass::Retryable
            }
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
}
