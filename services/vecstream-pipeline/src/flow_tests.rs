//! The embedder's decision path and the writer together, in process: documents are read,
//! decided against the dedup memory, "embedded" (a deterministic stand-in for the engine),
//! turned into vector records and applied to the in-memory store, batch after batch, the
//! way the embedder and the sink drive them (minus Kafka).

use std::collections::BTreeMap;

use vecstream_core::DocumentVectors;
use vecstream_weaviate::collection_name;

use crate::document::{Read, delete_of, vectors_of};
use crate::embedder::{Decision, DocOutcome, Rules, Source, decide_batch};
use crate::state::DedupState;
use crate::testing::{chunker, document, metrics};
use crate::writer::memory::MemoryStore;
use crate::writer::{ChunkWriter, Outcome};

const MODEL: &str = "model-a";

struct Pipeline {
    memory: DedupState,
    writer: ChunkWriter<MemoryStore>,
    chunker: vecstream_engine::Chunker,
    offset: i64,
}

impl Pipeline {
    fn new() -> Self {
        let mut memory = DedupState::default();
        memory.insert_partition(0, Default::default());
        Self {
            memory,
            writer: ChunkWriter::new(MemoryStore::default(), "Chunks", metrics()),
            chunker: chunker(6),
            offset: 0,
        }
    }

    /// One embedder batch, committed, then one sink batch of its vector records.
    async fn batch(&mut self, reads: Vec<Read>) -> (Vec<DocOutcome>, Vec<Outcome>) {
        let rules = Rules {
            model_id: MODEL,
            chunker: &self.chunker,
            max_body_bytes: 10_000,
            max_chunks: 8,
            large_document_tokens: None,
        };
        let first = self.offset;
        self.offset += reads.len() as i64;
        let sources = (first..).map(|offset| Source {
            key: None,
            payload: None,
            topic: "docs.documents.v1",
            partition: 0,
            offset,
            origin_offset: offset,
        });
        let (decided, pending) = decide_batch(sources.zip(reads), &self.memory, rules);
        let mut records: Vec<DocumentVectors> = Vec::new();
        for d in &decided {
            match &d.decision {
                Decision::Embed { doc, hash, chunks } => {
                    // Stand-in vectors: unit length, distinct per chunk text.
                    let vectors: Vec<Vec<f32>> = chunks
                        .iter()
                        .map(|c| {
                            let x = (c.text.len() % 7) as f32 / 7.0;
                            vec![x, (1.0 - x * x).sqrt()]
                        })
                        .collect();
                    records.push(vectors_of(doc, hash, chunks, &vectors, MODEL));
                }
                Decision::Delete {
                    doc_id,
                    tenant,
                    version,
                    ..
                } => records.push(delete_of(doc_id, tenant, *version, MODEL)),
                _ => {}
            }
        }
        for ((p, id), state) in pending {
            self.memory.apply(p, &id, state);
        }
        let decoded: Vec<_> = records.into_iter().map(Ok).collect();
        let written = self.writer.write(&decoded).await.expect("store write");
        (
            decided.iter().map(|d| d.decision.outcome()).collect(),
            written,
        )
    }

    /// Document id → (version, chunk count) in the model's collection.
    fn stored(&self) -> BTreeMap<String, (i64, usize)> {
        self.writer
            .store()
            .docs(&collection_name(MODEL, vecstream_weaviate::Tenancy::Filter))
            .into_iter()
            .map(|(id, (v, chunks))| (id, (v, chunks.len())))
            .collect()
    }
}

fn doc(id: &str, version: i64, body: &str) -> Read {
    Read::Doc(document(id, version, body))
}

fn deleted(id: &str, version: i64) -> Read {
    let mut d = document(id, version, "");
    d.deleted = true;
    Read::Doc(d)
}

#[tokio::test]
async fn documents_updates_deletes_and_replays_end_in_the_expected_index() {
    use DocOutcome::*;
    let mut p = Pipeline::new();
    let long = "one two three four five six seven eight nine ten eleven twelve";
    let (outcomes, _) = p
        .batch(vec![
            doc("a", 1, long),
            doc("b", 1, "short text"),
            doc("c", 1, "gone soon"),
            Read::Bad(crate::dlq::Reason::Undecodable, "not avro".into()),
        ])
        .await;
    assert_eq!(outcomes, vec![Embedded, Embedded, Embedded, DeadLettered]);
    assert_eq!(p.stored()["a"], (1, 3), "12 words in windows of 4");

    let (outcomes, written) = p
        .batch(vec![
            // Shorter: its stale chunks go.
            doc("a", 2, "one two"),
            // Re-published unchanged: no vector record at all.
            doc("b", 2, "short text"),
            deleted("c", 2),
        ])
        .await;
    assert_eq!(outcomes, vec![Embedded, Unchanged, Deleted]);
    assert_eq!(
        written[0],
        Outcome::Upserted {
            written: 1,
            deleted: 2
        }
    );

    // Replays and late arrivals of older versions change nothing.
    let (outcomes, _) = p
        .batch(vec![
            doc("a", 1, long),
            doc("c", 1, "gone soon"),
            doc("b", 1, "short text"),
        ])
        .await;
    assert_eq!(outcomes, vec![Stale, StaleAfterDelete, Stale]);

    // A tombstone removes the document; its marker outlives it: a replayed dead letter of
    // the last version stays out.
    let (outcomes, _) = p
        .batch(vec![Read::Tombstone {
            tenant: "default".into(),
            doc_id: "b".into(),
        }])
        .await;
    assert_eq!(outcomes, vec![Deleted]);
    assert!(!p.stored().contains_key("b"));
    let (outcomes, _) = p.batch(vec![doc("b", 2, "short text")]).await;
    assert_eq!(outcomes, vec![StaleAfterDelete]);
    assert!(!p.stored().contains_key("b"));
    // A re-creation (newer, published after the delete) is embedded.
    let (outcomes, _) = p.batch(vec![doc("b", 3, "back again")]).await;
    assert_eq!(outcomes, vec![Embedded]);

    let expected: BTreeMap<String, (i64, usize)> =
        [("a".to_owned(), (2, 1)), ("b".to_owned(), (3, 1))].into();
    assert_eq!(p.stored(), expected);
}

#[tokio::test]
async fn a_store_outage_mid_batch_is_retried_to_the_same_index() {
    let mut p = Pipeline::new();
    p.batch(vec![doc("a", 1, "alpha beta gamma delta epsilon zeta")])
        .await;
    let before = p.stored();
    // The next sink batch meets an outage: `write` fails retryably and, retried, converges.
    p.writer.store().fail_next(2);
    let decoded = vec![Ok(delete_of("a", "default", 2, MODEL))];
    let mut attempts = 0;
    while let Err(e) = p.writer.write(&decoded).await {
        use vecstream_core::Classify;
        assert!(e.class().is_retryable(), "{e}");
        attempts += 1;
    }
    assert_eq!(attempts, 2);
    assert!(before.contains_key("a") && p.stored().is_empty());
}
