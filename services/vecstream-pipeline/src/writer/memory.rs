//! An in-memory [`VectorStore`] for unit tests: collections of chunk objects and aliases,
//! with outages and per-object refusals on demand. Test-only; Weaviate is the real store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use uuid::Uuid;
use vecstream_weaviate::{
    BatchObject, BatchOutcome, CollectionSpec, ObjectError, StoredChunk, WeaviateError,
};

use super::VectorStore;

/// One stored chunk object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Object {
    /// Its Weaviate tenant (multi-tenant collections).
    pub tenant: Option<String>,
    pub properties: Value,
    pub vector: Vec<f32>,
}

impl Object {
    fn doc_id(&self) -> &str {
        self.properties["doc_id"].as_str().unwrap_or_default()
    }
    fn doc_key(&self) -> &str {
        self.properties["doc_key"].as_str().unwrap_or_default()
    }
    fn chunk_index(&self) -> i64 {
        self.properties["chunk_index"].as_i64().unwrap_or(-1)
    }
    fn doc_version(&self) -> i64 {
        self.properties["doc_version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    }
}

#[derive(Debug, Default)]
struct Inner {
    collections: BTreeMap<String, BTreeMap<Uuid, Object>>,
    aliases: HashMap<String, String>,
    /// Collections made by something else than vecstream (auto-schema): their differences.
    foreign: HashMap<String, Vec<String>>,
    /// Errors the next calls fail with, one per call (an outage of that many calls).
    outage: VecDeque<WeaviateError>,
    /// Objects refused on upsert, with Weaviate's message.
    refuse: HashMap<Uuid, String>,
}

#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `calls` operations fail as if the store were down.
    pub fn fail_next(&self, calls: usize) {
        let mut inner = self.lock();
        for _ in 0..calls {
            inner.outage.push_back(WeaviateError::Unreachable {
                url: "memory://".into(),
                message: "connection refused".into(),
            });
        }
    }

    /// Upserts of `id` are refused with `message` (classified as Weaviate's would be).
    pub fn refuse(&self, id: Uuid, message: &str) {
        self.lock().refuse.insert(id, message.to_owned());
    }

    /// Creates `name` as auto-schema would: with a schema that differs from ours.
    pub fn create_foreign(&self, name: &str, difference: &str) {
        let mut inner = self.lock();
        inner.collections.insert(name.to_owned(), BTreeMap::new());
        inner
            .foreign
            .insert(name.to_owned(), vec![difference.to_owned()]);
    }

    /// Drops a collection (as a migration's end does).
    pub fn drop_collection(&self, name: &str) {
        let mut inner = self.lock();
        inner.collections.remove(name);
        inner.foreign.remove(name);
    }

    pub fn forgive(&self) {
        self.lock().refuse.clear();
    }

    /// Document id → (version, chunk indexes) of a collection.
    pub fn docs(&self, collection: &str) -> BTreeMap<String, (i64, Vec<i64>)> {
        let inner = self.lock();
        let mut out: BTreeMap<String, (i64, Vec<i64>)> = BTreeMap::new();
        for o in inner
            .collections
            .get(collection)
            .into_iter()
            .flat_map(|c| c.values())
        {
            let e = out
                .entry(o.doc_id().to_owned())
                .or_insert((o.doc_version(), Vec::new()));
            e.0 = e.0.max(o.doc_version());
            e.1.push(o.chunk_index());
        }
        for (_, indexes) in out.values_mut() {
            indexes.sort_unstable();
        }
        out
    }

    pub fn collections(&self) -> Vec<String> {
        self.lock().collections.keys().cloned().collect()
    }

    pub fn alias(&self, alias: &str) -> Option<String> {
        self.lock().aliases.get(alias).cloned()
    }

    /// Fails the call when an outage is queued.
    fn call(&self) -> Result<std::sync::MutexGuard<'_, Inner>, WeaviateError> {
        let mut inner = self.lock();
        match inner.outage.pop_front() {
            Some(e) => Err(e),
            None => Ok(inner),
        }
    }
}

impl VectorStore for MemoryStore {
    fn url(&self) -> &str {
        "memory://"
    }

    async fn collection_exists(&self, name: &str) -> Result<bool, WeaviateError> {
        Ok(self.call()?.collections.contains_key(name))
    }

    async fn list_collections(&self) -> Result<Vec<String>, WeaviateError> {
        Ok(self.call()?.collections.keys().cloned().collect())
    }

    async fn schema_differences(
        &self,
        spec: &CollectionSpec,
    ) -> Result<Option<Vec<String>>, WeaviateError> {
        let inner = self.call()?;
        if !inner.collections.contains_key(&spec.name) {
            return Ok(None);
        }
        Ok(Some(
            inner.foreign.get(&spec.name).cloned().unwrap_or_default(),
        ))
    }

    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<bool, WeaviateError> {
        let mut inner = self.call()?;
        if inner.collections.contains_key(&spec.name) {
            return Ok(false);
        }
        inner.collections.insert(spec.name.clone(), BTreeMap::new());
        Ok(true)
    }

    async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, WeaviateError> {
        Ok(self.call()?.aliases.get(alias).cloned())
    }

    async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), WeaviateError> {
        self.call()?
            .aliases
            .insert(alias.to_owned(), collection.to_owned());
        Ok(())
    }

    async fn docs_chunks(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_keys: &[&str],
    ) -> Result<HashMap<String, Vec<StoredChunk>>, WeaviateError> {
        let inner = self.call()?;
        let mut out: HashMap<String, Vec<StoredChunk>> = HashMap::new();
        for (id, o) in inner.collections.get(collection).into_iter().flatten() {
            if o.tenant.as_deref() == scope && doc_keys.contains(&o.doc_key()) {
                out.entry(o.doc_key().to_owned())
                    .or_default()
                    .push(StoredChunk {
                        id: *id,
                        chunk_index: o.chunk_index(),
                        doc_version: o.doc_version(),
                    });
            }
        }
        Ok(out)
    }

    async fn upsert_batch(&self, objects: &[BatchObject]) -> Result<BatchOutcome, WeaviateError> {
        let mut inner = self.call()?;
        let mut outcome = BatchOutcome::default();
        for o in objects {
            if let Some(message) = inner.refuse.get(&o.id) {
                outcome
                    .failed
                    .push((o.id, ObjectError::new(message.clone())));
                continue;
            }
            // Like Weaviate with auto-schema off: no collection, no write.
            let Some(collection) = inner.collections.get_mut(&o.collection) else {
                outcome
                    .failed
                    .push((o.id, ObjectError::new("class not found")));
                continue;
            };
            collection.insert(
                o.id,
                Object {
                    tenant: o.tenant.clone(),
                    properties: o.properties.clone(),
                    vector: o.vector.clone(),
                },
            );
            outcome.written.push(o.id);
        }
        Ok(outcome)
    }

    async fn delete_doc_chunks_from(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_key: &str,
        from_index: i64,
    ) -> Result<u64, WeaviateError> {
        let mut inner = self.call()?;
        let Some(objects) = inner.collections.get_mut(collection) else {
            return Ok(0);
        };
        let before = objects.len();
        objects.retain(|_, o| {
            !(o.tenant.as_deref() == scope
                && o.doc_key() == doc_key
                && o.chunk_index() >= from_index)
        });
        Ok((before - objects.len()) as u64)
    }
}
