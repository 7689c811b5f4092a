//! Typed Weaviate REST client used by the sink, search and reindex.

mod client;
mod error;
mod schema;

pub use client::{BatchObject, BatchOutcome, Hit, MAX_CHUNKS_PER_DOC, StoredChunk, WeaviateClient};
pub use error::{ObjectError, WeaviateError};
pub use schema::{CollectionSpec, Property, collection_name};
