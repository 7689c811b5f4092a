//! Who embeds a batch: the local engine or a remote provider.
//!
//! A [`ProviderChain`] is the provider the configuration names (`engine.provider`) followed
//! by its ordered fallback (`engine.fallback`). Every member shares one vector space (the
//! chain refuses to mix them), so a chunk embedded by the fallback lands next to chunks the
//! provider embedded. Remote members ([`RemoteProvider`]: OpenAI-compatible or
//! text-embeddings-inference) are called within client-side rate limits, retried with
//! exponential backoff and jitter (a `Retry-After` answer honoured), and guarded by a
//! circuit breaker; a call that fails on one member goes to the next. The answer says which
//! member embedded it, for lineage and metrics.

mod chain;
mod error;
mod limits;
mod local;
mod metrics;
mod remote;

pub use chain::{ChainBuilder, Embedded, ProviderChain};
pub use error::ProviderError;
pub use limits::{Backoff, Breaker, RateLimiter};
pub use local::LocalProvider;
pub use metrics::ProviderMetrics;
pub use remote::{RemoteProvider, parse_retry_after, vector_space_of};
pub use vecstream_core::Lane;

use futures::future::BoxFuture;
/// The engine's own normalisation: a remote's vectors get exactly the engine's.
pub use vecstream_engine::cpu::ops::l2_normalize;

/// One text to embed. `token_ids` (`[CLS] … [SEP]` from the local tokenizer) let the local
/// engine skip tokenising again; empty, the provider tokenises `text` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedInput {
    pub text: String,
    pub token_ids: Vec<u32>,
}

impl EmbedInput {
    /// A text the provider tokenises.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            token_ids: Vec::new(),
        }
    }
}

impl From<&vecstream_engine::Chunk> for EmbedInput {
    fn from(c: &vecstream_engine::Chunk) -> Self {
        Self {
            text: c.text.clone(),
            token_ids: c.token_ids.clone(),
        }
    }
}

/// Something that turns texts into vectors of one vector space.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Name in configuration, lineage and metrics (`local` for the engine).
    fn name(&self) -> &str;
    /// What embedded, for lineage: `cpu`/`cuda` for the engine, `openai`/`tei` remotely.
    fn backend(&self) -> &str;
    /// Id of the vector space (a model id): vectors of different spaces never meet.
    fn vector_space(&self) -> &str;
    /// One L2-normalised vector per input, in input order.
    fn embed<'a>(
        &'a self,
        inputs: &'a [EmbedInput],
        lane: Lane,
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, ProviderError>>;
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
