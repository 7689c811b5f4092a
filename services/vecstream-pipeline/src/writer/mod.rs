//! Writes vector records into Weaviate: the one place that decides what a record does to
//! the stored chunks (shared by the sink and the reindex scan).
//!
//! Per batch: the newest record of each document wins; one read of the stored chunks per
//! collection gives version fencing (an older version never overwrites a newer one) and
//! stale-chunk detection; all chunk objects go in batch upserts by their UUIDv5 ids; chunks
//! past a document's new chunk count, and all chunks of a deleted document, are removed.
//! Idempotent: running a batch again converges to the same state.
//!
//! Two halves: [`plan`] decides without I/O what each record does; [`ChunkWriter`] reads
//! what the plan needs from a [`VectorStore`], then applies the plan.

#[cfg(test)]
pub(crate) mod memory;
mod plan;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;
use vecstream_core::{Classify, DocumentVectors};
use vecstream_weaviate::{CollectionSpec, ObjectError, Tenancy, WeaviateClient, WeaviateError};

use crate::dlq::Reason;
use crate::{PipelineError, PipelineMetrics};

pub use plan::{
    DocDelete, DocRef, DocWrite, Needs, Plan, Snapshot, has_deletes, needs, plan, winners,
};
pub use store::VectorStore;

/// Most chunk objects in one upsert request.
const UPSERT_BATCH_OBJECTS: usize = 500;

/// A vector record, or why it cannot be one.
pub type Decoded = Result<DocumentVectors, (Reason, String)>;

/// What became of one vector record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Upserted {
        written: usize,
        deleted: u64,
    },
    /// Removed from the collections in `from` (every collection of the family that held
    /// it); `deleted` chunks in all.
    Deleted {
        deleted: u64,
        from: Vec<String>,
    },
    Stale {
        stored_version: i64,
    },
    /// The record's collection no longer exists (a migration dropped it): not re-created.
    Retired {
        collection: String,
    },
    Superseded,
    DeadLettered(Reason, String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Upserted { .. } => "upserted",
            Outcome::Deleted { .. } => "deleted",
            Outcome::Stale { .. } => "stale",
            Outcome::Retired { .. } => "retired",
            Outcome::Superseded => "superseded",
            Outcome::DeadLettered(..) => "dead_lettered",
        }
    }
}
/// Applies vector records to a vector store (Weaviate); see the module docs.
pub struct ChunkWriter<S: VectorStore = WeaviateClient> {
    store: S,
    /// The alias created on the first collection when it does not exist yet.
    alias: String,
    /// Collections known to exist (created or seen) by this process.
    collections: std::sync::Mutex<HashSet<String>>,
    /// The alias was seen to exist (or this writer never makes it): no bootstrapping.
    alias_seen: std::sync::atomic::AtomicBool,
    tenancy: Tenancy,
    metrics: PipelineMetrics,
}

impl<S: VectorStore> std::fmt::Debug for ChunkWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkWriter")
            .field("store", &self.store.url())
            .field("alias", &self.alias)
            .finish()
    }
}

impl<S: VectorStore> ChunkWriter<S> {
    pub fn new(store: S, alias: &str, metrics: PipelineMetrics) -> Self {
        Self {
            store,
            alias: alias.to_owned(),
            collections: Default::default(),
            alias_seen: Default::default(),
            tenancy: Tenancy::Filter,
            metrics,
        }
    }

    /// How its collections keep tenants apart (`weaviate.multi_tenancy`; default: the
    /// `tenant` property).
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }

    /// How its collections keep tenants apart.
    pub fn tenancy(&self) -> Tenancy {
        self.tenancy
    }

    /// A writer that never creates a collection or the alias (the reindex scan's: only the
    /// sink makes a fresh alias's first collection, the reindex's prepare its target).
    pub fn without_bootstrap(self) -> Self {
        self.alias_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// The store it writes to.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Applies `decoded` in order and says what became of each record. `Err` only for
    /// failures worth retrying the whole batch for (the store unreachable, objects refused
    /// for a reason that passes).
    pub async fn write(&self, decoded: &[Decoded]) -> Result<Vec<Outcome>, PipelineError> {
        let winners = winners(decoded);
        let family = if has_deletes(decoded, &winners) {
            self.family().await?
        } else {
            BTreeSet::new()
        };
        let snapshot = self
            .read(&needs(decoded, &winners, &family, self.tenancy))
            .await?;
        let plan = plan(decoded, &winners, &snapshot, self.tenancy);
        self.apply(plan).await
    }

    /// The chunk collections that exist: the family a delete removes a document from.
    /// Listed afresh for each batch with deletes, so a collection a reindex has just created
    /// is included (one created after the listing is filled by the reindex's own scan,
    /// which reads the delete from the documents topic).
    pub async fn family(&self) -> Result<BTreeSet<String>, PipelineError> {
        Ok(self
            .store
            .list_collections()
            .await?
            .into_iter()
            .filter(|c| vecstream_weaviate::is_chunk_collection(c))
            .collect())
    }

    /// Reads what a plan needs: looks up the collections written to and deleted from, and
    /// reads the stored chunks of the batch's documents (one query per collection). A
    /// collection is created here only while the alias does not exist yet (the first model
    /// of a fresh deployment); after that only a reindex creates collections.
    pub async fn read(&self, needs: &Needs) -> Result<Snapshot, PipelineError> {
        let mut snapshot = Snapshot::default();
        for collection in &needs.write_to {
            let exists = self.collection_known(collection).await?;
            if self.bootstrap(collection, exists).await? || exists {
                snapshot.existing.insert(collection.clone());
            }
        }
        for collection in &needs.delete_from {
            match self.collection_known(collection).await {
                Ok(true) => {
                    snapshot.existing.insert(collection.clone());
                }
                Ok(false) => {}
                // A foreign collection among the family holds none of ours: deletes go on
                // everywhere else (it is refused for writes, where it matters).
                Err(PipelineError::Schema {
                    collection,
                    differences,
                }) => {
                    tracing::warn!(%collection, %differences, "not vecstream's schema: skipped for deletes");
                }
                Err(e) => return Err(e),
            }
        }
        for (collection, docs) in &needs.docs {
            if !snapshot.existing.contains(collection) {
                continue;
            }
            // One query per Weaviate tenant (one in all without multi-tenancy).
            let mut by_scope: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
            for d in docs {
                by_scope
                    .entry(d.scope.as_deref())
                    .or_default()
                    .push(d.key.as_str());
            }
            let mut stored = HashMap::new();
            for (scope, keys) in by_scope {
                stored.extend(self.store.docs_chunks(collection, scope, &keys).await?);
            }
            snapshot.stored.insert(collection.clone(), stored);
        }
        Ok(snapshot)
    }

    /// Carries out a plan: whole-document deletes, one batch upsert for every chunk
    /// object, then per document either its stale chunks removed or, when the store refused
    /// some of its objects, the document removed whole and dead-lettered.
    pub async fn apply(&self, plan: Plan<'_>) -> Result<Vec<Outcome>, PipelineError> {
        let Plan {
            mut outcomes,
            writes,
            deletes,
        } = plan;
        for d in &deletes {
            let removed = self
                .store
                .delete_doc_chunks_from(&d.collection, d.doc.scope.as_deref(), &d.doc.key, 0)
                .await?;
            if let Outcome::Deleted { deleted, .. } = &mut outcomes[d.at] {
                *deleted += removed;
            }
        }

        let objects: Vec<_> = writes
            .iter()
            .flat_map(|w| w.objects.iter().cloned())
            .collect();
        let mut refused: HashMap<Uuid, ObjectError> = HashMap::new();
        for batch in objects.chunks(UPSERT_BATCH_OBJECTS) {
            let upsert_started = std::time::Instant::now();
            let outcome = self.store.upsert_batch(batch).await?;
            self.metrics
                .sink_upsert_seconds
                .observe(upsert_started.elapsed().as_secs_f64());
            refused.extend(outcome.failed);
        }
        if let Some((id, error)) = refused.iter().find(|(_, e)| e.class().is_retryable()) {
            if error.is_missing_collection() {
                // Dropped since it was looked up: the retry finds it gone.
                self.known_collections().clear();
            }
            return Err(PipelineError::Weaviate(WeaviateError::Object {
                id: *id,
                error: error.clone(),
            }));
        }
        for w in &writes {
            let errors: Vec<&ObjectError> = w
                .objects
                .iter()
                .filter_map(|o| refused.get(&o.id))
                .collect();
            if let Some(first) = errors.first() {
                // A half-written document would answer searches with a mix of versions:
                // remove it whole; the dead letter can be replayed once the cause is fixed.
                self.store
                    .delete_doc_chunks_from(&w.collection, w.doc.scope.as_deref(), &w.doc.key, 0)
                    .await?;
                outcomes[w.at] = Outcome::DeadLettered(
                    Reason::Rejected,
                    format!(
                        "weaviate refused {} of {} chunks (the document's chunks were removed): {}",
                        errors.len(),
                        w.objects.len(),
                        first.message()
                    ),
                );
                continue;
            }
            let deleted = match w.stale_from {
                Some(from) => {
                    self.store
                        .delete_doc_chunks_from(
                            &w.collection,
                            w.doc.scope.as_deref(),
                            &w.doc.key,
                            from,
                        )
                        .await?
                }
                None => 0,
            };
            outcomes[w.at] = Outcome::Upserted {
                written: w.objects.len(),
                deleted,
            };
        }
        Ok(outcomes)
    }

    fn known_collections(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned set still holds valid names.
        self.collections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the collection exists. The first time a process sees a collection, it
    /// checks that its schema is the one vecstream creates: a collection that auto-schema
    /// made from guessed types is refused (with the differences), never written to.
    async fn collection_known(&self, name: &str) -> Result<bool, PipelineError> {
        if self.known_collections().contains(name) {
            return Ok(true);
        }
        let spec = CollectionSpec::chunks_named(name, self.tenancy);
        let Some(differences) = self.store.schema_differences(&spec).await? else {
            return Ok(false);
        };
        if !differences.is_empty() {
            self.metrics.sink_schema_mismatches.inc();
            return Err(PipelineError::Schema {
                collection: name.to_owned(),
                differences: differences.join("; "),
            });
        }
        self.known_collections().insert(name.to_owned());
        Ok(true)
    }

    /// While the alias does not exist yet (a fresh deployment's first model): creates the
    /// collection with its schema unless it `exists`, and the alias on it; true then. Once
    /// the alias exists, nothing (only a reindex creates collections).
    async fn bootstrap(&self, name: &str, exists: bool) -> Result<bool, PipelineError> {
        if self.alias_seen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        if self.store.resolve_alias(&self.alias).await?.is_some() {
            self.alias_seen
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        let spec = CollectionSpec::chunks_named(name, self.tenancy);
        if !exists && self.store.ensure_collection(&spec).await? {
            tracing::info!(collection = %spec.name, "collection created");
        }
        self.store.set_alias(&self.alias, &spec.name).await?;
        tracing::info!(alias = %self.alias, collection = %spec.name, "alias created");
        self.alias_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.known_collections().insert(spec.name);
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
