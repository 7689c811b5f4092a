//! `ChunkWriter` (read, plan, apply) against the in-memory store.

use vecstream_core::{ChunkVector, Classify, chunk_id};
use vecstream_weaviate::{Tenancy, collection_name};

use super::memory::MemoryStore;
use super::*;
use crate::document::delete_of;
use crate::embedder::TOMBSTONE_VERSION;

fn writer() -> ChunkWriter<MemoryStore> {
    let metrics = PipelineMetrics::register(&prometheus::Registry::new()).unwrap();
    ChunkWriter::new(MemoryStore::default(), "Chunks", metrics)
}

fn record(id: &str, version: i64, chunks: usize, model: &str) -> DocumentVectors {
    DocumentVectors {
        deleted: false,
        content_hash: format!("h{version}"),
        chunks: (0..chunks)
            .map(|i| ChunkVector {
                chunk_id: chunk_id("t", id, i as u32, model).to_string(),
                index: i as i32,
                text: format!("{id} v{version} chunk {i}"),
                char_start: 0,
                char_end: 10,
                token_count: 5,
                vector: vec![0.6, 0.8],
            })
            .collect(),
        ..delete_of(id, "t", version, model)
    }
}

fn ok(records: Vec<DocumentVectors>) -> Vec<Decoded> {
    records.into_iter().map(Ok).collect()
}

#[tokio::test]
async fn writes_fence_shrink_and_delete_documents() {
    let w = writer();
    let c = collection_name("m", Tenancy::Filter);
    let out = w
        .write(&ok(vec![record("a", 1, 3, "m"), record("b", 1, 1, "m")]))
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            Outcome::Upserted {
                written: 3,
                deleted: 0
            },
            Outcome::Upserted {
                written: 1,
                deleted: 0
            }
        ]
    );
    assert_eq!(
        w.store().alias("Chunks"),
        Some(c.clone()),
        "alias made on first use"
    );
    // A shorter newer version leaves no chunk of the longer one behind.
    let out = w.write(&ok(vec![record("a", 2, 1, "m")])).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::Upserted {
            written: 1,
            deleted: 2
        }]
    );
    assert_eq!(w.store().docs(&c)["a"], (2, vec![0]));
    // An older version arriving late is fenced.
    let out = w.write(&ok(vec![record("a", 1, 3, "m")])).await.unwrap();
    assert_eq!(out, vec![Outcome::Stale { stored_version: 2 }]);
    assert_eq!(w.store().docs(&c)["a"], (2, vec![0]));
    // A tombstone removes every chunk; the document is gone.
    let out = w
        .write(&ok(vec![delete_of("b", "t", TOMBSTONE_VERSION, "m")]))
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Deleted {
            deleted: 1,
            from: vec![c.clone()]
        }]
    );
    assert!(!w.store().docs(&c).contains_key("b"));
}

#[tokio::test]
async fn a_batch_applied_twice_converges_to_the_same_state() {
    let w = writer();
    let c = collection_name("m", Tenancy::Filter);
    let batch = ok(vec![
        record("a", 1, 4, "m"),
        record("a", 2, 2, "m"),
        record("b", 1, 2, "m"),
        delete_of("b", "t", 3, "m"),
    ]);
    let first = w.write(&batch).await.unwrap();
    let after_first = w.store().docs(&c);
    w.write(&batch).await.unwrap();
    assert_eq!(w.store().docs(&c), after_first);
    assert_eq!(first[0], Outcome::Superseded);
    assert_eq!(after_first["a"], (2, vec![0, 1]));
    assert!(!after_first.contains_key("b"));
}

#[tokio::test]
async fn a_delete_for_a_model_never_written_creates_nothing() {
    let w = writer();
    let out = w
        .write(&ok(vec![delete_of("a", "t", 5, "other-model")]))
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Deleted {
            deleted: 0,
            from: vec![]
        }]
    );
    assert!(w.store().collections().is_empty());
    assert_eq!(w.store().alias("Chunks"), None);
}

#[tokio::test]
async fn an_outage_is_a_retryable_error_and_the_retry_completes_the_batch() {
    let w = writer();
    let c = collection_name("m", Tenancy::Filter);
    w.write(&ok(vec![record("a", 1, 3, "m")])).await.unwrap();
    let batch = ok(vec![record("a", 2, 1, "m"), record("b", 1, 2, "m")]);
    // Fail each call in turn: wherever the outage hits, the batch fails retryably and a
    // retry after it ends converges.
    for calls in 1..=4 {
        w.store().fail_next(calls);
        let mut attempts = 0;
        let out = loop {
            attempts += 1;
            match w.write(&batch).await {
                Ok(out) => break out,
                Err(e) => assert!(e.class().is_retryable(), "{e}"),
            }
        };
        assert!(attempts > 1);
        assert!(matches!(out[1], Outcome::Upserted { .. }));
        let docs = w.store().docs(&c);
        assert_eq!(
            (docs["a"].clone(), docs["b"].clone()),
            ((2, vec![0]), (1, vec![0, 1]))
        );
    }
}

#[tokio::test]
async fn a_refused_object_removes_its_document_whole_and_dead_letters_it() {
    let w = writer();
    let c = collection_name("m", Tenancy::Filter);
    let a = record("a", 1, 3, "m");
    w.store().refuse(
        a.chunks[1].chunk_id.parse().unwrap(),
        "new node has a vector with length 2. Existing nodes have vectors with length 384",
    );
    let out = w
        .write(&ok(vec![a.clone(), record("b", 1, 1, "m")]))
        .await
        .unwrap();
    match &out[0] {
        Outcome::DeadLettered(Reason::Rejected, m) => {
            assert!(
                m.contains("refused 1 of 3") && m.contains("length 2"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out[1],
        Outcome::Upserted {
            written: 1,
            deleted: 0
        }
    );
    assert!(
        !w.store().docs(&c).contains_key("a"),
        "no half-written document"
    );
    // Replayed once the cause is gone, it is written whole.
    w.store().forgive();
    assert_eq!(
        w.write(&ok(vec![a])).await.unwrap(),
        vec![Outcome::Upserted {
            written: 3,
            deleted: 0
        }]
    );
}

#[tokio::test]
async fn an_object_refused_for_a_passing_reason_retries_the_batch() {
    let w = writer();
    let a = record("a", 1, 2, "m");
    let id: Uuid = a.chunks[0].chunk_id.parse().unwrap();
    w.store().refuse(id, "context deadline exceeded");
    let err = w.write(&ok(vec![a.clone()])).await.unwrap_err();
    assert!(err.class().is_retryable());
    match err {
        PipelineError::Weaviate(WeaviateError::Object { id: refused, .. }) => {
            assert_eq!(refused, id)
        }
        other => panic!("{other:?}"),
    }
    w.store().forgive();
    assert_eq!(
        w.write(&ok(vec![a])).await.unwrap(),
        vec![Outcome::Upserted {
            written: 2,
            deleted: 0
        }]
    );
}

#[tokio::test]
async fn during_a_migration_deletes_reach_every_collection_and_a_dropped_one_is_never_recreated() {
    let w = writer();
    let (live, pending) = (
        collection_name("live", Tenancy::Filter),
        collection_name("m", Tenancy::Filter),
    );
    // The live model's stream made the alias; a reindex created the pending collection.
    w.write(&ok(vec![
        record("a", 1, 2, "live"),
        record("b", 1, 1, "live"),
    ]))
    .await
    .unwrap();
    w.store()
        .ensure_collection(&CollectionSpec::chunks_named(&pending, Tenancy::Filter))
        .await
        .unwrap();
    w.write(&ok(vec![record("a", 1, 1, "m"), record("b", 1, 1, "m")]))
        .await
        .unwrap();
    // An embedder on either model deletes from both.
    let out = w
        .write(&ok(vec![delete_of("a", "t", TOMBSTONE_VERSION, "m")]))
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![Outcome::Deleted {
            deleted: 3,
            from: vec![live.clone(), pending.clone()]
        }]
    );
    assert!(!w.store().docs(&live).contains_key("a"));
    assert!(!w.store().docs(&pending).contains_key("a"));
    // The pending collection is dropped (rejected): late records of its model are retired.
    // This writer still takes it for existing: the write is refused as a missing class,
    // retryably, and the retry finds the collection gone.
    w.store().drop_collection(&pending);
    let late = ok(vec![record("c", 1, 1, "m")]);
    let err = w.write(&late).await.unwrap_err();
    assert!(err.class().is_retryable(), "{err}");
    let out = w.write(&late).await.unwrap();
    assert_eq!(
        out,
        vec![Outcome::Retired {
            collection: pending.clone()
        }]
    );
    assert!(!w.store().collections().contains(&pending));
    assert_eq!(w.store().alias("Chunks"), Some(live));
}

#[tokio::test]
async fn a_collection_made_by_auto_schema_is_refused_with_its_differences() {
    let w = writer();
    let c = collection_name("m", Tenancy::Filter);
    w.store()
        .create_foreign(&c, "property chunk_index is [\"number\"], not [\"int\"]");
    let err = w
        .write(&ok(vec![record("a", 1, 1, "m")]))
        .await
        .unwrap_err();
    assert!(err.class().is_retryable(), "nothing is lost: it waits");
    let message = err.to_string();
    assert!(
        message.contains(&c) && message.contains("chunk_index") && message.contains("auto-schema"),
        "{message}"
    );
    assert!(w.store().docs(&c).is_empty());
}

#[tokio::test]
async fn the_alias_is_made_on_an_existing_collection_of_a_fresh_deployment() {
    let w = writer();
    let c = collection_name("m", Tenancy::Filter);
    // Another alias's stream (or a reindex) made the collection; this alias has none yet.
    w.store()
        .ensure_collection(&CollectionSpec::chunks_named(&c, Tenancy::Filter))
        .await
        .unwrap();
    w.write(&ok(vec![record("a", 1, 1, "m")])).await.unwrap();
    assert_eq!(w.store().alias("Chunks"), Some(c.clone()));
    // Once it exists, a write for another model creates nothing.
    let out = w
        .write(&ok(vec![record("b", 1, 1, "other")]))
        .await
        .unwrap();
    assert!(matches!(out[0], Outcome::Retired { .. }), "{out:?}");
    assert_eq!(w.store().collections(), vec![c]);
}
