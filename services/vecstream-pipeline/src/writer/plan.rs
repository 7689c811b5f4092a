//! What a batch of vector records does to the stored chunks, decided without I/O.
//!
//! [`needs`] says what to read first (which collections to create or look up, which
//! documents' stored chunks); [`plan`] turns the records and that [`Snapshot`] into the
//! outcome of each record plus the writes and deletes to apply. Everything that judges a
//! record (winners per document, version fencing, validation, stale chunks) lives here.
//!
//! A document is its (tenant, id): records, stored chunks, fencing and deletes are matched
//! on its exact key (`vecstream_core::doc_key`), never on the id alone, and with Weaviate
//! multi-tenancy every read and write names the document's tenant.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;
use uuid::Uuid;
use vecstream_core::{DocumentVectors, check_weaviate_tenant, doc_key};
use vecstream_weaviate::{BatchObject, StoredChunk, Tenancy, collection_name};

use super::{Decoded, Outcome};
use crate::dlq::Reason;
use crate::embedder::TOMBSTONE_VERSION;

/// What must be read from the store before a batch can be planned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Collections the batch writes chunks to: created if missing.
    pub write_to: BTreeSet<String>,
    /// Collections the batch only deletes from: looked up, never created.
    pub delete_from: BTreeSet<String>,
    /// Per collection, the documents whose stored chunks decide fencing and stale chunks.
    pub docs: BTreeMap<String, Vec<DocRef>>,
}

/// A document as the store finds it: its Weaviate tenant (multi-tenancy only) and its
/// exact key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocRef {
    pub scope: Option<String>,
    pub key: String,
}

impl DocRef {
    pub fn of(v: &DocumentVectors, tenancy: Tenancy) -> Self {
        Self {
            scope: tenancy.scope(&v.tenant).map(str::to_owned),
            key: doc_key(&v.tenant, &v.doc_id),
        }
    }
}

/// The stored side of a batch, as read before planning.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Collections that exist (the ones the batch writes to were just ensured).
    pub existing: BTreeSet<String>,
    /// Collection → document key (`doc_key`) → its stored chunks.
    pub stored: HashMap<String, HashMap<String, Vec<StoredChunk>>>,
}

/// A document whose chunks the batch upserts.
#[derive(Debug)]
pub struct DocWrite<'a> {
    /// Index of the record in the batch.
    pub at: usize,
    pub record: &'a DocumentVectors,
    pub collection: String,
    pub doc: DocRef,
    pub objects: Vec<BatchObject>,
    /// Stored chunks from this index on belong to a longer earlier version.
    pub stale_from: Option<i64>,
}

/// A document the batch removes whole.
#[derive(Debug, PartialEq, Eq)]
pub struct DocDelete {
    pub at: usize,
    pub collection: String,
    pub doc: DocRef,
}

/// The decisions for one batch. `outcomes` has one entry per record; the entries of
/// `writes` and `deletes` hold a provisional outcome until they are applied.
#[derive(Debug)]
pub struct Plan<'a> {
    pub outcomes: Vec<Outcome>,
    pub writes: Vec<DocWrite<'a>>,
    pub deletes: Vec<DocDelete>,
}

/// The record of each document that the batch applies (index into `decoded`); the others
/// are superseded. A later record wins unless its version is older than the current
/// winner's: a large document's job may publish its version after a newer one went the
/// inline way. After a tombstone (which outranks every version), a later record is a
/// re-creation and wins. Keyed by the document's exact key: two tenants' documents of one
/// id are two documents.
pub fn winners(decoded: &[Decoded]) -> HashMap<String, usize> {
    let mut winner: HashMap<String, usize> = HashMap::new();
    for (i, d) in decoded.iter().enumerate() {
        let Ok(v) = d else { continue };
        let key = doc_key(&v.tenant, &v.doc_id);
        let replaces = match winner.get(&key).map(|&w| &decoded[w]) {
            Some(Ok(current)) => {
                v.doc_version >= current.doc_version
                    || (current.deleted && current.doc_version == TOMBSTONE_VERSION)
            }
            _ => true,
        };
        if replaces {
            winner.insert(key, i);
        }
    }
    winner
}

/// True when a winner of the batch is a delete: the batch then needs the family's
/// collections listed (see [`needs`]).
pub fn has_deletes(decoded: &[Decoded], winners: &HashMap<String, usize>) -> bool {
    winners
        .values()
        .any(|&i| matches!(&decoded[i], Ok(v) if v.deleted))
}

/// What to read before planning `decoded` (whose winners are `winners`). `family` is every
/// chunk collection of the alias's family that exists (live, pending, kept for rollback): a
/// delete removes the document from each of them, whichever model's record carries it.
pub fn needs(
    decoded: &[Decoded],
    winners: &HashMap<String, usize>,
    family: &BTreeSet<String>,
    tenancy: Tenancy,
) -> Needs {
    let mut needs = Needs::default();
    for &i in winners.values() {
        let Ok(v) = &decoded[i] else { continue };
        let own = collection_name(&v.model_id, tenancy);
        let doc = DocRef::of(v, tenancy);
        if v.deleted {
            for collection in family.iter().chain(std::iter::once(&own)) {
                needs.delete_from.insert(collection.clone());
                needs
                    .docs
                    .entry(collection.clone())
                    .or_default()
                    .push(doc.clone());
            }
        } else {
            needs.write_to.insert(own.clone());
            needs.docs.entry(own).or_default().push(doc);
        }
    }
    // A collection written to is looked up anyway: no separate lookup.
    let written = needs.write_to.clone();
    needs.delete_from.retain(|c| !written.contains(c));
    for docs in needs.docs.values_mut() {
        docs.sort();
        docs.dedup();
    }
    needs
}

/// Decides what each record of `decoded` does, given what the store holds.
pub fn plan<'a>(
    decoded: &'a [Decoded],
    winners: &HashMap<String, usize>,
    snapshot: &Snapshot,
    tenancy: Tenancy,
) -> Plan<'a> {
    let mut plan = Plan {
        outcomes: Vec::with_capacity(decoded.len()),
        writes: Vec::new(),
        deletes: Vec::new(),
    };
    for (i, d) in decoded.iter().enumerate() {
        let v = match d {
            Err((reason, message)) => {
                plan.outcomes
                    .push(Outcome::DeadLettered(*reason, message.clone()));
                continue;
            }
            Ok(v) => v,
        };
        let doc = DocRef::of(v, tenancy);
        if winners.get(&doc.key) != Some(&i) {
            plan.outcomes.push(Outcome::Superseded);
            continue;
        }
        if tenancy == Tenancy::MultiTenant
            && let Err(why) = check_weaviate_tenant(&v.tenant)
        {
            plan.outcomes
                .push(Outcome::DeadLettered(Reason::Invalid, why));
            continue;
        }
        if v.deleted {
            plan_delete(&mut plan, i, doc, v, snapshot);
            continue;
        }
        let collection = collection_name(&v.model_id, tenancy);
        if !snapshot.existing.contains(&collection) {
            // The model's collection is gone (dropped after a migration) or was never made
            // by a reindex: the record's content reaches the family's collections through
            // the migration's catch-up, so nothing is lost by not re-creating it here.
            plan.outcomes.push(Outcome::Retired { collection });
            continue;
        }
        let stored = snapshot
            .stored
            .get(&collection)
            .and_then(|docs| docs.get(&doc.key))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(sv) = stored
            .iter()
            .map(|c| c.doc_version)
            .max()
            .filter(|sv| *sv > v.doc_version)
        {
            plan.outcomes.push(Outcome::Stale { stored_version: sv });
            continue;
        }
        let stored_past = |count: usize| stored.iter().any(|c| c.chunk_index >= count as i64);
        match objects_of(v, &collection, &doc) {
            Err(message) => plan
                .outcomes
                .push(Outcome::DeadLettered(Reason::Invalid, message)),
            Ok(objects) => {
                plan.outcomes.push(Outcome::Upserted {
                    written: 0,
                    deleted: 0,
                });
                let count = v.chunks.len();
                plan.writes.push(DocWrite {
                    at: i,
                    record: v,
                    collection,
                    doc,
                    objects,
                    stale_from: stored_past(count).then_some(count as i64),
                });
            }
        }
    }
    plan
}

/// A delete removes the document from every collection that holds it, each fenced by its
/// own stored version; it is stale only when every collection holding the document holds a
/// newer version of it.
fn plan_delete(
    plan: &mut Plan<'_>,
    at: usize,
    doc: DocRef,
    v: &DocumentVectors,
    snapshot: &Snapshot,
) {
    let mut holders: Vec<(&String, i64)> = snapshot
        .stored
        .iter()
        .filter(|(c, _)| snapshot.existing.contains(*c))
        .filter_map(|(c, docs)| {
            let newest = docs.get(&doc.key)?.iter().map(|c| c.doc_version).max()?;
            Some((c, newest))
        })
        .collect();
    holders.sort();
    let mut from = Vec::new();
    let mut newer = None;
    for (collection, stored_version) in holders {
        if stored_version > v.doc_version {
            newer = newer.max(Some(stored_version));
            continue;
        }
        plan.deletes.push(DocDelete {
            at,
            collection: collection.clone(),
            doc: doc.clone(),
        });
        from.push(collection.clone());
    }
    plan.outcomes.push(match newer {
        Some(stored_version) if from.is_empty() => Outcome::Stale { stored_version },
        _ => Outcome::Deleted { deleted: 0, from },
    });
}

/// The chunk objects of a record, or why the record is invalid (vectors of mixed length
/// or with non-finite values, chunk ids that are not UUIDs).
fn objects_of(
    v: &DocumentVectors,
    collection: &str,
    doc: &DocRef,
) -> Result<Vec<BatchObject>, String> {
    let dim = v.chunks.first().map(|c| c.vector.len());
    if let Some(bad) = v
        .chunks
        .iter()
        .find(|c| Some(c.vector.len()) != dim || c.vector.iter().any(|x| !x.is_finite()))
    {
        return Err(format!(
            "chunk {} has a vector of {} values (expected {:?}) or a non-finite value",
            bad.index,
            bad.vector.len(),
            dim
        ));
    }
    // What filters and keyword search read: the same on every chunk of the document.
    let metadata: Vec<String> = v
        .metadata
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect();
    let metadata_text: String = v
        .metadata
        .iter()
        .map(|(k, val)| format!("{k} {val}"))
        .collect::<Vec<_>>()
        .join("\n");
    let produced_at = v.produced_at.and_then(rfc3339_of_millis);
    v.chunks
        .iter()
        .map(|c| {
            let id = Uuid::parse_str(&c.chunk_id)
                .map_err(|e| format!("chunk id {:?}: {e}", c.chunk_id))?;
            let mut properties = json!({
                "doc_id": v.doc_id,
                "doc_key": doc.key,
                // Exact: see the schema (Weaviate numbers are float64).
                "doc_version": v.doc_version.to_string(),
                "tenant": v.tenant,
                "chunk_index": c.index,
                "text": c.text,
                "char_start": c.char_start,
                "char_end": c.char_end,
                "token_count": c.token_count,
                "content_hash": v.content_hash,
                "model_id": v.model_id,
                "source": v.source,
                "title": v.title,
                "metadata": metadata,
                "metadata_text": metadata_text,
                "produced_at": produced_at,
                "trace_id": v.trace_id,
            });
            // Absent, not null: nothing to filter or score on.
            if let Some(map) = properties.as_object_mut() {
                map.retain(|_, value| !value.is_null());
            }
            Ok(BatchObject {
                collection: collection.to_owned(),
                tenant: doc.scope.clone(),
                id,
                properties,
                vector: c.vector.clone(),
            })
        })
        .collect()
}

/// A producer's `produced_at` as RFC 3339, or none when it is not a time RFC 3339 can
/// write (before 1970 or after 9999): a hostile timestamp loses the filter, not the record.
fn rfc3339_of_millis(ms: i64) -> Option<String> {
    const LAST_MS_OF_9999: i64 = 253_402_300_799_999;
    let ms = u64::try_from(ms)
        .ok()
        .filter(|&ms| ms <= LAST_MS_OF_9999 as u64)?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    Some(humantime::format_rfc3339_millis(t).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::delete_of;
    use vecstream_core::{ChunkVector, chunk_id};

    const F: Tenancy = Tenancy::Filter;

    #[test]
    fn produced_at_outside_rfc3339_years_is_left_out_instead_of_panicking() {
        assert_eq!(
            rfc3339_of_millis(1_764_590_400_000).as_deref(),
            Some("2025-12-01T12:00:00.000Z")
        );
        assert_eq!(
            rfc3339_of_millis(253_402_300_799_999).as_deref(),
            Some("9999-12-31T23:59:59.999Z")
        );
        // Nanoseconds taken for milliseconds, negative and maximal values.
        for hostile in [1_764_000_000_000_000_000, -1, i64::MAX, 253_402_300_800_000] {
            assert_eq!(rfc3339_of_millis(hostile), None, "{hostile}");
        }
    }

    /// The exact key of tenant `t`'s document `id` (every record here is tenant `t`'s).
    fn k(id: &str) -> String {
        doc_key("t", id)
    }

    fn keys(docs: &[DocRef]) -> BTreeSet<String> {
        docs.iter().map(|d| d.key.clone()).collect()
    }

    fn doc(id: &str, version: i64, chunks: usize) -> Decoded {
        Ok(DocumentVectors {
            deleted: false,
            chunks: (0..chunks)
                .map(|i| ChunkVector {
                    chunk_id: chunk_id("t", id, i as u32, "m").to_string(),
                    index: i as i32,
                    text: format!("chunk {i}"),
                    char_start: 0,
                    char_end: 1,
                    token_count: 3,
                    vector: vec![1.0, 0.0],
                })
                .collect(),
            ..delete_of(id, "t", version, "m")
        })
    }

    fn stored(version: i64, chunks: i64) -> Vec<StoredChunk> {
        (0..chunks)
            .map(|i| StoredChunk {
                id: Uuid::from_u128(i as u128),
                chunk_index: i,
                doc_version: version,
            })
            .collect()
    }

    fn snapshot(docs: &[(&str, Vec<StoredChunk>)]) -> Snapshot {
        let c = collection_name("m", F);
        Snapshot {
            existing: [c.clone()].into(),
            stored: [(c, docs.iter().map(|(id, s)| (k(id), s.clone())).collect())].into(),
        }
    }

    #[test]
    fn the_highest_version_of_a_document_wins_its_batch() {
        // A late v1 (a large document's job) after v2: v2 stays.
        let batch = vec![doc("a", 2, 1), doc("a", 1, 1)];
        assert_eq!(winners(&batch)[&k("a")], 0);
        // The same version again (a re-delivery) or a newer one: the later record.
        let batch = vec![
            doc("a", 1, 1),
            doc("a", 1, 1),
            doc("b", 1, 1),
            doc("b", 3, 1),
        ];
        let w = winners(&batch);
        assert_eq!((w[&k("a")], w[&k("b")]), (1, 3));
        // A tombstone outranks every version; a record after it re-creates the document.
        let batch = vec![
            doc("a", 5, 1),
            Ok(delete_of("a", "t", TOMBSTONE_VERSION, "m")),
        ];
        assert_eq!(winners(&batch)[&k("a")], 1);
        let batch = vec![
            Ok(delete_of("a", "t", TOMBSTONE_VERSION, "m")),
            doc("a", 1, 1),
        ];
        assert_eq!(winners(&batch)[&k("a")], 1);
        // Undecodable records take no part.
        let batch = vec![doc("a", 1, 1), Err((Reason::Undecodable, "x".into()))];
        assert_eq!(winners(&batch).len(), 1);
    }

    #[test]
    fn needs_looks_up_written_collections_and_every_collection_of_the_family_for_deletes() {
        let batch = vec![
            doc("a", 1, 1),
            Ok(delete_of("b", "t", 2, "other")),
            Ok(delete_of("c", "t", 2, "m")),
        ];
        let w = winners(&batch);
        assert!(has_deletes(&batch, &w));
        assert!(!has_deletes(&batch[..1], &winners(&batch[..1])));
        let family: BTreeSet<String> = [collection_name("live", F), collection_name("m", F)].into();
        let n = needs(&batch, &w, &family, F);
        assert_eq!(n.write_to, [collection_name("m", F)].into());
        assert_eq!(
            n.delete_from,
            [collection_name("live", F), collection_name("other", F)].into()
        );
        assert_eq!(
            keys(&n.docs[&collection_name("m", F)]),
            [k("a"), k("b"), k("c")].into()
        );
        assert_eq!(
            keys(&n.docs[&collection_name("live", F)]),
            [k("b"), k("c")].into()
        );
        assert_eq!(keys(&n.docs[&collection_name("other", F)]), [k("b")].into());
    }

    #[test]
    fn a_delete_removes_the_document_from_every_collection_holding_it_each_fenced_alone() {
        let (live, pending) = (collection_name("live", F), collection_name("m", F));
        let mut snap = snapshot(&[("a", stored(3, 2)), ("b", stored(9, 1))]);
        snap.existing.insert(live.clone());
        snap.stored.insert(
            live.clone(),
            [(k("a"), stored(2, 1)), (k("b"), stored(9, 1))].into(),
        );
        // A delete carried by the pending model's record reaches the live collection too.
        let batch = vec![
            Ok(delete_of("a", "t", 4, "m")),
            Ok(delete_of("b", "t", 4, "m")),
        ];
        let p = plan(&batch, &winners(&batch), &snap, F);
        let at_a: Vec<&str> = p
            .deletes
            .iter()
            .filter(|d| d.at == 0)
            .map(|d| d.collection.as_str())
            .collect();
        assert_eq!(at_a, vec![live.as_str(), pending.as_str()]);
        assert_eq!(
            p.outcomes[0],
            Outcome::Deleted {
                deleted: 0,
                from: vec![live.clone(), pending.clone()]
            }
        );
        // Every holder has a newer version: stale.
        assert_eq!(p.outcomes[1], Outcome::Stale { stored_version: 9 });
        // A write to a collection that no longer exists is retired, not re-created.
        let batch = vec![doc("c", 1, 1)];
        let p = plan(&batch, &winners(&batch), &Snapshot::default(), F);
        assert_eq!(
            p.outcomes,
            vec![Outcome::Retired {
                collection: pending.clone()
            }]
        );
        assert!(p.writes.is_empty());
    }

    #[test]
    fn an_older_version_is_fenced_by_the_stored_one() {
        let batch = vec![doc("a", 3, 2)];
        let p = plan(
            &batch,
            &winners(&batch),
            &snapshot(&[("a", stored(5, 2))]),
            F,
        );
        assert_eq!(p.outcomes, vec![Outcome::Stale { stored_version: 5 }]);
        assert!(p.writes.is_empty() && p.deletes.is_empty());
    }

    #[test]
    fn a_shorter_new_version_deletes_the_stale_chunks_past_its_count() {
        let batch = vec![doc("a", 6, 2)];
        let p = plan(
            &batch,
            &winners(&batch),
            &snapshot(&[("a", stored(5, 4))]),
            F,
        );
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].stale_from, Some(2));
        assert_eq!(p.writes[0].objects.len(), 2);
        assert_eq!(p.writes[0].objects[1].properties["doc_version"], "6");
        // The same length: nothing stale.
        let p = plan(
            &batch,
            &winners(&batch),
            &snapshot(&[("a", stored(5, 2))]),
            F,
        );
        assert_eq!(p.writes[0].stale_from, None);
    }

    #[test]
    fn deletes_remove_what_is_stored_and_nothing_else() {
        let batch = vec![
            Ok(delete_of("a", "t", 7, "m")),
            Ok(delete_of("b", "t", 7, "m")),
            Ok(delete_of("c", "t", 7, "never-written")),
        ];
        let p = plan(
            &batch,
            &winners(&batch),
            &snapshot(&[("a", stored(5, 3))]),
            F,
        );
        assert_eq!(
            p.deletes,
            vec![DocDelete {
                at: 0,
                collection: collection_name("m", F),
                doc: DocRef {
                    scope: None,
                    key: k("a")
                }
            }]
        );
        let nothing = Outcome::Deleted {
            deleted: 0,
            from: vec![],
        };
        assert_eq!((&p.outcomes[1], &p.outcomes[2]), (&nothing, &nothing));
        // A delete older than the stored version is fenced too.
        let batch = vec![Ok(delete_of("a", "t", 4, "m"))];
        let p = plan(
            &batch,
            &winners(&batch),
            &snapshot(&[("a", stored(5, 3))]),
            F,
        );
        assert_eq!(p.outcomes, vec![Outcome::Stale { stored_version: 5 }]);
    }

    #[test]
    fn invalid_vectors_and_ids_are_dead_letters_not_writes() {
        let mut mixed = doc("a", 1, 2).unwrap();
        mixed.chunks[1].vector = vec![1.0];
        let mut nan = doc("b", 1, 1).unwrap();
        nan.chunks[0].vector[0] = f32::NAN;
        let mut bad_id = doc("c", 1, 1).unwrap();
        bad_id.chunks[0].chunk_id = "not-a-uuid".into();
        let batch = vec![Ok(mixed), Ok(nan), Ok(bad_id)];
        let p = plan(&batch, &winners(&batch), &snapshot(&[]), F);
        assert!(p.writes.is_empty());
        for (o, needle) in p
            .outcomes
            .iter()
            .zip(["chunk 1", "non-finite", "not-a-uuid"])
        {
            match o {
                Outcome::DeadLettered(Reason::Invalid, m) => assert!(m.contains(needle), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn two_tenants_documents_of_one_id_are_two_documents() {
        let mut b = doc("a", 1, 1).unwrap();
        b.tenant = "u".into();
        b.chunks[0].chunk_id = chunk_id("u", "a", 0, "m").to_string();
        // Both are winners of their batch, each written under its own key.
        let batch = vec![doc("a", 2, 1), Ok(b.clone())];
        assert_eq!(winners(&batch).len(), 2);
        let p = plan(
            &batch,
            &winners(&batch),
            &snapshot(&[("a", stored(9, 1))]),
            F,
        );
        // Tenant t's stored v9 fences t's v2, not u's v1.
        assert_eq!(p.outcomes[0], Outcome::Stale { stored_version: 9 });
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].doc.key, doc_key("u", "a"));
        assert_eq!(p.writes[0].objects[0].properties["tenant"], "u");
        // A delete of t's document removes only t's.
        let batch = vec![Ok(delete_of("a", "t", 10, "m"))];
        let mut snap = snapshot(&[("a", stored(9, 1))]);
        snap.stored
            .get_mut(&collection_name("m", F))
            .unwrap()
            .insert(doc_key("u", "a"), stored(9, 1));
        let p = plan(&batch, &winners(&batch), &snap, F);
        assert_eq!(p.deletes.len(), 1);
        assert_eq!(p.deletes[0].doc.key, k("a"));
    }

    #[test]
    fn multi_tenancy_scopes_every_object_and_refuses_names_weaviate_cannot_hold() {
        let mt = Tenancy::MultiTenant;
        let mut bad = doc("b", 1, 1).unwrap();
        bad.tenant = "a tenant".into();
        let batch = vec![doc("a", 1, 1), Ok(bad)];
        let snap = Snapshot {
            existing: [collection_name("m", mt)].into(),
            ..Default::default()
        };
        let p = plan(&batch, &winners(&batch), &snap, mt);
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].objects[0].tenant.as_deref(), Some("t"));
        assert_eq!(p.writes[0].doc.scope.as_deref(), Some("t"));
        match &p.outcomes[1] {
            Outcome::DeadLettered(Reason::Invalid, m) => {
                assert!(m.contains("multi_tenancy"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn superseded_and_undecodable_records_keep_their_place() {
        let batch = vec![
            doc("a", 1, 1),
            Err((Reason::Undecodable, "bad bytes".into())),
            doc("a", 2, 1),
        ];
        let p = plan(&batch, &winners(&batch), &snapshot(&[]), F);
        assert_eq!(p.outcomes[0], Outcome::Superseded);
        assert_eq!(
            p.outcomes[1],
            Outcome::DeadLettered(Reason::Undecodable, "bad bytes".into())
        );
        assert_eq!(p.writes.len(), 1);
        assert_eq!(p.writes[0].at, 2);
    }
}
