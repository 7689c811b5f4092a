//! vecstream's embedding engine.
//!
//! A sentence-transformers BERT-family model directory is loaded once; the forward pass runs
//! on a [`Backend`] (the CPU one here, CUDA behind a feature later) on the engine's own
//! threads, fed through a bounded channel, never on the async runtime's workers.

pub mod adapter;
pub mod backend;
pub mod chunk;
pub mod cpu;
// cudarc's API is FFI: the launches and GEMMs are `unsafe`, each with its reason.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod cuda;
mod engine;
mod error;
pub mod model;
pub mod tensor_io;
pub mod tokenize;
pub mod weights;

pub use backend::{Backend, BackendKind, Precision, TokenBatch};
pub use chunk::{Chunk, Chunker};
pub use engine::{BackendChoice, Embedding, Engine, EngineConfig, EngineInfo};
pub use error::EngineError;
