//! Writes vector records into Weaviate: the one place that decides what a record does to
//! the stored chunks (shared by the sink and the reindex scan).
//!
//! Per batch: the newest record of each document wins; one read of the stored chunks per
//! collection gives version fencing (an older version never overwrites a newer one) and
//! stale-chunk detection; all chunk objects go in batch upserts by their UUIDv5 ids; chunks
//! past a document's new chunk count, and all chunks of a deleted document, are removed.
//! Idempotent: running a batch again converges to the same state.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use uuid::Uuid;
use vecstream_core::DocumentVectors;
use vecstream_weaviate::{BatchObject, CollectionSpec, StoredChunk, WeaviateClient, WeaviateError};

use crate::dlq::Reason;
use crate::{PipelineError, PipelineMetrics};

/// A vector record, or why it cannot be one.
pub type Decoded = Result<DocumentVectors, (Reason, String)>;

/// A record whose chunks go into the batch upsert.
struct Upsert<'a> {
    /// Index of the record in the batch.
    at: usize,
    record: &'a DocumentVectors,
    collection: String,
    ids: Vec<Uuid>,
    /// Stored chunks past the new chunk count exist (a longer earlier version).
    has_stale: bool,
}
/// What became of one vector record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Upserted { written: usize, deleted: u64 },
    Deleted { deleted: u64 },
    Stale { stored_version: i64 },
    Superseded,
    DeadLettered(Reason, String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Upserted { .. } => "upserted",
            Outcome::Deleted { .. } => "deleted",
            Outcome::Stale { .. } => "stale",
            Outcome::Superseded => "superseded",
            Outcome::DeadLettered(..) => "dead_lettered",
        }
    }
}
/// Applies vector records to Weaviate; see the module docs.
pub struct ChunkWriter {
    weaviate: WeaviateClient,
    /// The alias created on the first collection when it does not exist yet.
    alias: String,
    /// Collections known to exist (created or seen) by this process.
    collections: std::sync::Mutex<HashSet<String>>,
    metrics: PipelineMetrics,
}

impl std::fmt::Debug for ChunkWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkWriter")
            .field("weaviate", &self.weaviate.url())
            .field("alias", &self.alias)
            .finish()
    }
}

impl ChunkWriter {
    pub fn new(weaviate: WeaviateClient, alias: &str, metrics: PipelineMetrics) -> Self {
        Self {
            weaviate,
            alias: alias.to_owned(),
            collections: Default::default(),
            metrics,
        }
    }

    /// The client it writes with.
    pub fn weaviate(&self) -> &WeaviateClient {
        &self.weaviate
    }

    /// Applies `decoded` in order and says what became of each record. `Err` only for
    /// failures worth retrying the whole batch for (Weaviate unreachable, transient
    /// per-object errors).
    pub async fn write(&self, decoded: &[Decoded]) -> Result<Vec<Outcome>, PipelineError> {
        let last_of_doc = winners(decoded);
        // One read of the stored chunks per collection for the whole batch (fencing and
        // stale-chunk deletion decide from it), done when the collection is first needed.
        let mut docs_of_collection: HashMap<String, Vec<&str>> = HashMap::new();
        for &i in last_of_doc.values() {
            if let Ok(v) = &decoded[i] {
                docs_of_collection
                    .entry(vecstream_weaviate::collection_name(&v.model_id))
                    .or_default()
                    .push(v.doc_id.as_str());
            }
        }
        let mut stored_of_collection: HashMap<String, HashMap<String, Vec<StoredChunk>>> =
            HashMap::new();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(decoded.len());
        let mut upserts: Vec<Upsert<'_>> = Vec::new();
        let mut objects: Vec<BatchObject> = Vec::new();
        for (i, d) in decoded.iter().enumerate() {
            let v = match d {
                Err((reason, message)) => {
                    outcomes.push(Outcome::DeadLettered(*reason, message.clone()));
                    continue;
                }
                Ok(v) => v,
            };
            if last_of_doc.get(v.doc_id.as_str()) != Some(&i) {
                outcomes.push(Outcome::Superseded);
                continue;
            }
            let collection = vecstream_weaviate::collection_name(&v.model_id);
            let dim = v.chunks.first().map(|c| c.vector.len());
            if !v.deleted {
                self.ensure_collection(&v.model_id).await?;
            } else if !self.collection_known(&collection).await? {
                // Nothing was ever stored for this model: the delete is already true.
                outcomes.push(Outcome::Deleted { deleted: 0 });
                continue;
            }
            if !stored_of_collection.contains_key(&collection) {
                let ids = docs_of_collection
                    .get(&collection)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let stored = self.weaviate.docs_chunks(&collection, ids).await?;
                stored_of_collection.insert(collection.clone(), stored);
            }
            let stored = stored_of_collection[&collection]
                .get(&v.doc_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let stored_version = stored.iter().map(|c| c.doc_version).max();
            let stored_past = |count: usize| stored.iter().any(|c| c.chunk_index >= count as i64);
            if let Some(sv) = stored_version.filter(|sv| *sv > v.doc_version) {
                outcomes.push(Outcome::Stale { stored_version: sv });
                continue;
            }
            if v.deleted {
                let deleted = if stored_past(0) {
                    self.weaviate
                        .delete_doc_chunks_from(&collection, &v.doc_id, 0)
                        .await?
                } else {
                    0
                };
                outcomes.push(Outcome::Deleted { deleted });
                continue;
            }
            if let Some(bad) = v
                .chunks
                .iter()
                .find(|c| Some(c.vector.len()) != dim || c.vector.iter().any(|x| !x.is_finite()))
            {
                outcomes.push(Outcome::DeadLettered(
                    Reason::Invalid,
                    format!(
                        "chunk {} has a vector of {} values (expected {:?}) or a non-finite value",
                        bad.index,
                        bad.vector.len(),
                        dim
                    ),
                ));
                continue;
            }
            let ids: Result<Vec<Uuid>, String> = v
                .chunks
                .iter()
                .map(|c| {
                    Uuid::parse_str(&c.chunk_id)
                        .map_err(|e| format!("chunk id {:?}: {e}", c.chunk_id))
                })
                .collect();
            let ids = match ids {
                Ok(ids) => ids,
                Err(message) => {
                    outcomes.push(Outcome::DeadLettered(Reason::Invalid, message));
                    continue;
                }
            };
            for (c, id) in v.chunks.iter().zip(&ids) {
                objects.push(BatchObject {
                    collection: collection.clone(),
                    id: *id,
                    properties: json!({
                        "doc_id": v.doc_id,
                        "doc_version": v.doc_version,
                        "tenant": v.tenant,
                        "chunk_index": c.index,
                        "text": c.text,
                        "char_start": c.char_start,
                        "char_end": c.char_end,
                        "token_count": c.token_count,
                        "content_hash": v.content_hash,
                        "model_id": v.model_id,
                    }),
                    vector: c.vector.clone(),
                });
            }
            outcomes.push(Outcome::Upserted {
                written: 0,
                deleted: 0,
            });
            let has_stale = stored_past(v.chunks.len());
            upserts.push(Upsert {
                at: i,
                record: v,
                collection,
                ids,
                has_stale,
            });
        }

        // One batch call for every chunk object of the batch.
        let mut failed: HashMap<Uuid, String> = HashMap::new();
        for chunk in objects.chunks(500) {
            let upsert_started = std::time::Instant::now();
            let outcome = self.weaviate.upsert_batch(chunk).await?;
            self.metrics
                .sink_upsert_seconds
                .observe(upsert_started.elapsed().as_secs_f64());
            for (id, message) in outcome.failed {
                failed.insert(id, message);
            }
        }
        if let Some(transient) = failed.values().find(|m| looks_transient(m)) {
            return Err(PipelineError::Weaviate(WeaviateError::Status {
                status: 503,
                what: "batch upsert (per-object error)".into(),
                body: transient.clone(),
            }));
        }
        for u in &upserts {
            let errors: Vec<&String> = u.ids.iter().filter_map(|id| failed.get(id)).collect();
            let outcome = &mut outcomes[u.at];
            if let Some(first) = errors.first() {
                // A half-written document would answer searches with a mix of versions:
                // remove it whole; the dead letter can be replayed once the cause is fixed.
                self.weaviate
                    .delete_doc_chunks_from(&u.collection, &u.record.doc_id, 0)
                    .await?;
                *outcome = Outcome::DeadLettered(
                    Reason::Rejected,
                    format!(
                        "weaviate refused {} of {} chunks (the document's chunks were removed): {first}",
                        errors.len(),
                        u.ids.len()
                    ),
                );
                continue;
            }
            // Chunks past the new count belong to a longer earlier version.
            let deleted = if u.has_stale {
                let count = u.record.chunks.len() as i64;
                self.weaviate
                    .delete_doc_chunks_from(&u.collection, &u.record.doc_id, count)
                    .await?
            } else {
                0
            };
            *outcome = Outcome::Upserted {
                written: u.ids.len(),
                deleted,
            };
        }

        Ok(outcomes)
    }

    fn known_collections(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A poisoned set still holds valid names.
        self.collections.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn collection_known(&self, name: &str) -> Result<bool, PipelineError> {
        if self.known_collections().contains(name) {
            return Ok(true);
        }
        let exists = self.weaviate.collection_exists(name).await?;
        if exists {
            self.known_collections().insert(name.to_owned());
        }
        Ok(exists)
    }

    /// Creates the model's collection on first use; points the alias at it if the alias
    /// does not exist yet (a reindex moves it later).
    async fn ensure_collection(&self, model_id: &str) -> Result<(), PipelineError> {
        let spec = CollectionSpec::chunks(model_id);
        if self.known_collections().contains(&spec.name) {
            return Ok(());
        }
        if self.weaviate.ensure_collection(&spec).await? {
            tracing::info!(collection = %spec.name, model_id, "collection created");
        }
        if self.weaviate.resolve_alias(&self.alias).await?.is_none() {
            self.weaviate.set_alias(&self.alias, &spec.name).await?;
            tracing::info!(alias = %self.alias, collection = %spec.name, "alias created");
        }
        self.known_collections().insert(spec.name);
        Ok(())
    }
}

/// Per-object batch errors that mean "try again" rather than "this object is wrong".
/// The record of each document that the batch applies (index into `decoded`); the others
/// are superseded. A later record wins unless its version is older than the current
/// winner's: a large document's job may publish its version after a newer one went the
/// inline way. After a tombstone (which outranks every version), a later record is a
/// re-creation and wins.
fn winners(decoded: &[Decoded]) -> HashMap<&str, usize> {
    let mut winner: HashMap<&str, usize> = HashMap::new();
    for (i, d) in decoded.iter().enumerate() {
        let Ok(v) = d else { continue };
        let replaces = match winner.get(v.doc_id.as_str()).map(|&w| &decoded[w]) {
            Some(Ok(current)) => {
                v.doc_version >= current.doc_version
                    || (current.deleted
                        && current.doc_version == crate::embedder::TOMBSTONE_VERSION)
            }
            _ => true,
        };
        if replaces {
            winner.insert(v.doc_id.as_str(), i);
        }
    }
    winner
}

fn looks_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "timeout",
        "timed out",
        "unavailable",
        "too many requests",
        "connection",
        "not ready",
        "read only",
        "readonly",
    ]
    .iter()
    .any(|s| m.contains(s))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_version_of_a_document_wins_its_batch() {
        use crate::document::delete_of;
        use crate::embedder::TOMBSTONE_VERSION;
        let doc = |id: &str, version: i64| -> Decoded {
            Ok(DocumentVectors {
                deleted: false,
                ..delete_of(id, "t", version, "m")
            })
        };
        // A late v1 (a large document's job) after v2: v2 stays.
        let batch = vec![doc("a", 2), doc("a", 1)];
        assert_eq!(winners(&batch)["a"], 0);
        // The same version again (a re-delivery) or a newer one: the later record.
        let batch = vec![doc("a", 1), doc("a", 1), doc("b", 1), doc("b", 3)];
        let w = winners(&batch);
        assert_eq!((w["a"], w["b"]), (1, 3));
        // A tombstone outranks every version; a record after it re-creates the document.
        let batch = vec![doc("a", 5), Ok(delete_of("a", "t", TOMBSTONE_VERSION, "m"))];
        assert_eq!(winners(&batch)["a"], 1);
        let batch = vec![Ok(delete_of("a", "t", TOMBSTONE_VERSION, "m")), doc("a", 1)];
        assert_eq!(winners(&batch)["a"], 1);
        // Undecodable records take no part.
        let batch = vec![
            doc("a", 1),
            Err((crate::dlq::Reason::Undecodable, "x".into())),
        ];
        assert_eq!(winners(&batch).len(), 1);
    }

    #[test]
    fn transient_object_errors_are_told_apart_from_bad_objects() {
        assert!(looks_transient("context deadline exceeded: Timeout"));
        assert!(looks_transient("store is read only"));
        assert!(!looks_transient(
            "new node has a vector with length 3. Existing nodes have vectors with length 384"
        ));
        assert_eq!(Outcome::Superseded.label(), "superseded");
    }
}
