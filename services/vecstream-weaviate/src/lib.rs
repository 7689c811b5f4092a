//! Typed Weaviate REST client used by the sink, search and reindex.

mod client;
mod error;
mod schema;
mod search;

pub use client::{
    BatchObject, BatchOutcome, Hit, MAX_CHUNKS_PER_DOC, StoredChunk, WeaviateClient,
    is_tenant_not_found,
};
pub use error::{ObjectError, WeaviateError};
pub use schema::{
    CHUNK_COLLECTION_PREFIX, CollectionSpec, Property, Tenancy, collection_name,
    is_chunk_collection, is_collection_of,
};
pub use search::{
    Condition, Fusion, KEYWORD_PROPERTIES, ScoredHit, SearchMode, SearchQuery, best_per_document,
    parse_filter, where_argument,
};
