//! The streaming pipeline of DESIGN sections 1-3.
//!
//! - [`embedder`]: `docs.documents.v1` → decode, validate, normalise, chunk, skip unchanged,
//!   embed → `docs.vectors.v1` + `docs.lineage.v1` (+ `docs.documents.dlq.v1`), each
//!   micro-batch in one Kafka transaction together with its consumer offsets.
//! - [`sink`]: `docs.vectors.v1` → idempotent Weaviate upserts, stale-chunk deletes,
//!   version fencing → lineage; offsets committed after Weaviate acknowledged.
//! - [`writer`]: what a vector record does to the stored chunks (sink and reindex share it).

mod common;
pub mod dlq;
pub mod document;
pub mod embedder;
mod error;
pub mod escalate;
#[cfg(test)]
mod flow_tests;
pub mod lineage;
pub mod metrics;
pub mod normalize;
pub mod reindex;
pub mod sink;
mod state;
#[cfg(test)]
mod testing;
pub mod writer;

pub use embedder::Embedder;
pub use error::PipelineError;
pub use escalate::{Escalator, LargeDocumentJob};
pub use metrics::PipelineMetrics;
pub use reindex::{Reindexer, SliceReport};
pub use sink::{CommitStrategy, EffectsThenOffsets, Sink};
pub use writer::{ChunkWriter, VectorStore};
