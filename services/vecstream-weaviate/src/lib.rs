//! Typed Weaviate REST client used by the sink, search and reindex.

mod client;
mod error;

pub use client::{
    BatchObject, BatchOutcome, CollectionSpec, Hit, Property, WeaviateClient, collection_name,
};
pub use error::WeaviateError;
