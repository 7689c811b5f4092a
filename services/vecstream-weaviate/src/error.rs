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

impl Classify for WeaviateError {
    fn class(&self) -> ErrorClass {
        match self {
            WeaviateError::Unreachable { .. } => ErrorClass::Retryable,
            WeaviateError::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }
}
