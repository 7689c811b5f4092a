use vecstream_core::{Classify, ErrorClass};

/// Failures of the embedding engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model directory {path}: {message}")]
    Model { path: String, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("backend {backend} is not available: {reason}")]
    BackendUnavailable { backend: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("the engine thread stopped")]
    Stopped,
}

impl Classify for EngineError {
    fn class(&self) -> ErrorClass {
        match self {
            EngineError::Stopped => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}
