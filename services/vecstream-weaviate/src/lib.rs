//! Typed Weaviate REST client used by the sink, search and reindex.

mod client;
mod error;

pub use client::{
    BatchObject, BatchOutcome, CollectionSpec, Hit, MAX_CHUNKS_PER_DOC, Property, StoredChunk,
    WeaviateClient, collection_name,
};
pub use error::WeaviateError;
