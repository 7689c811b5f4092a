//! The streaming pipeline of DESIGN sections 1-3.
//!
//! - [`embedder`]: `docs.documents.v1` → decode, validate, normalise, chunk, skip unchanged,
//!   embed → `docs.vectors.v1` + `docs.lineage.v1` (+ `docs.documents.dlq.v1`), each
//!   micro-batch in one Kafka transaction together with its consumer offsets.
//! - [`sink`]: `docs.vectors.v1` → idempotent Weaviate upserts, stale-chunk deletes,
//!   version fencing → lineage; offsets committed after Weaviate acknowledged.

mod common;
pub mod dlq;
pub mod embedder;
mod error;
pub mod lineage;
pub mod metrics;
pub mod normalize;
pub mod sink;
mod state;

pub use embedder::Embedder;
pub use error::PipelineError;
pub use metrics::PipelineMetrics;
pub use sink::Sink;
