use std::time::Duration;

use vecstream_core::{Classify, ErrorClass};

/// Why a provider did not embed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Worth another try later: timeouts, connection refused, 429, 5xx, an open circuit.
    #[error("provider `{provider}`: {message}")]
    Transient {
        provider: String,
        message: String,
        /// What the provider asked for (`Retry-After`), or when an open circuit closes.
        retry_after: Option<Duration>,
    },
    /// The provider is up but asked us to slow down (429) for longer than
    /// `max_throttle_ms`: the next member may take the call; it is no failure of the
    /// provider (its circuit stays closed).
    #[error("provider `{provider}` is throttling: {message}")]
    Throttled {
        provider: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The same call fails again: a refused key, an unknown model, a malformed answer.
    #[error("provider `{provider}`: {message}")]
    Permanent { provider: String, message: String },
    /// The provider's vectors are not the vector space it claims.
    #[error(
        "provider `{provider}` claims the vector space {space} but its vectors disagree with \
         the local engine's (cosine {cosine:.4} on a probe text): it is not used"
    )]
    WrongSpace {
        provider: String,
        space: String,
        cosine: f32,
    },
    /// A chain that cannot be built as configured.
    #[error("embedding providers: {0}")]
    Config(String),
    /// Every member of the chain failed; the errors in order.
    #[error("every embedding provider failed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<ProviderError>),
}

impl ProviderError {
    /// True when a remote provider (not the local engine) answered it, or any member of a
    /// failed chain.
    pub fn is_remote(&self) -> bool {
        match self {
            ProviderError::Transient { provider, .. }
            | ProviderError::Throttled { provider, .. }
            | ProviderError::Permanent { provider, .. }
            | ProviderError::WrongSpace { provider, .. } => provider != "local",
            ProviderError::AllFailed(all) => all.iter().any(Self::is_remote),
            ProviderError::Config(_) => false,
        }
    }

    /// When the caller should try again, if the failure said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Transient { retry_after, .. }
            | ProviderError::Throttled { retry_after, .. } => *retry_after,
            ProviderError::AllFailed(all) => all.iter().filter_map(Self::retry_after).min(),
            _ => None,
        }
    }
}

impl Classify for ProviderError {
    fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Transient { .. } | ProviderError::Throttled { .. } => {
                ErrorClass::Retryable
            }
            // One member down is enough to try again: it may come back.
            ProviderError::AllFailed(all) if all.iter().any(|e| e.class().is_retryable()) => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<vecstream_engine::EngineError> for ProviderError {
    fn from(e: vecstream_engine::EngineError) -> Self {
        let message = e.to_string();
        if e.class().is_retryable() {
            ProviderError::Transient {
                provider: "local".into(),
                message,
                retry_after: None,
            }
        } else {
            ProviderError::Permanent {
                provider: "local".into(),
                message,
            }
        }
    }
}
