//! The few vector-store operations the writer and the reindex need, as a trait: Weaviate is
//! the one real implementation; unit tests use an in-memory one behind the same trait.

use std::collections::HashMap;
use std::future::Future;

use vecstream_weaviate::{
    BatchObject, BatchOutcome, CollectionSpec, StoredChunk, WeaviateClient, WeaviateError,
};

/// A vector store holding chunk collections and an alias per family.
pub trait VectorStore: Send + Sync {
    /// Where it lives, for logs and lineage datasets.
    fn url(&self) -> &str;

    fn collection_exists(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<bool, WeaviateError>> + Send;

    /// Names of every collection the store holds.
    fn list_collections(&self) -> impl Future<Output = Result<Vec<String>, WeaviateError>> + Send;

    /// How the stored schema of `spec.name` differs from `spec`; `None` when the collection
    /// does not exist.
    fn schema_differences(
        &self,
        spec: &CollectionSpec,
    ) -> impl Future<Output = Result<Option<Vec<String>>, WeaviateError>> + Send;

    /// Creates the collection unless it exists; true when it was created.
    fn ensure_collection(
        &self,
        spec: &CollectionSpec,
    ) -> impl Future<Output = Result<bool, WeaviateError>> + Send;

    fn resolve_alias(
        &self,
        alias: &str,
    ) -> impl Future<Output = Result<Option<String>, WeaviateError>> + Send;

    fn set_alias(
        &self,
        alias: &str,
        collection: &str,
    ) -> impl Future<Output = Result<(), WeaviateError>> + Send;

    /// The stored chunks of each of `doc_keys` (exact keys, `vecstream_core::doc_key`) in
    /// Weaviate tenant `scope` (multi-tenancy only); documents without chunks are absent.
    fn docs_chunks(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_keys: &[&str],
    ) -> impl Future<Output = Result<HashMap<String, Vec<StoredChunk>>, WeaviateError>> + Send;

    /// Writes objects by id (create or replace); each object's refusal is reported apart.
    fn upsert_batch(
        &self,
        objects: &[BatchObject],
    ) -> impl Future<Output = Result<BatchOutcome, WeaviateError>> + Send;

    /// Deletes the chunks of document `doc_key` (in tenant `scope`) with `chunk_index >=
    /// from_index`; how many went.
    fn delete_doc_chunks_from(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_key: &str,
        from_index: i64,
    ) -> impl Future<Output = Result<u64, WeaviateError>> + Send;
}

impl VectorStore for WeaviateClient {
    fn url(&self) -> &str {
        WeaviateClient::url(self)
    }

    async fn collection_exists(&self, name: &str) -> Result<bool, WeaviateError> {
        WeaviateClient::collection_exists(self, name).await
    }

    async fn list_collections(&self) -> Result<Vec<String>, WeaviateError> {
        WeaviateClient::list_collections(self).await
    }

    async fn schema_differences(
        &self,
        spec: &CollectionSpec,
    ) -> Result<Option<Vec<String>>, WeaviateError> {
        WeaviateClient::schema_differences(self, spec).await
    }

    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<bool, WeaviateError> {
        WeaviateClient::ensure_collection(self, spec).await
    }

    async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, WeaviateError> {
        WeaviateClient::resolve_alias(self, alias).await
    }

    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), WeaviateError> {
        WeaviateClient::set_alias(self, alias, collection).await
    }

    async fn docs_chunks(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_keys: &[&str],
    ) -> Result<HashMap<String, Vec<StoredChunk>>, WeaviateError> {
        WeaviateClient::docs_chunks(self, collection, scope, doc_keys).await
    }

    async fn upsert_batch(&self, objects: &[BatchObject]) -> Result<BatchOutcome, WeaviateError> {
        WeaviateClient::upsert_batch(self, objects).await
    }

    async fn delete_doc_chunks_from(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_key: &str,
        from_index: i64,
    ) -> Result<u64, WeaviateError> {
        WeaviateClient::delete_doc_chunks_from(self, collection, scope, doc_key, from_index).await
    }
}
