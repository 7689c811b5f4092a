//! Crashes and an outage in the middle of a run change nothing in the end result: while 1,000
//! documents (plus updates to fewer chunks and deletes) flow, the embedder and the sink are
//! killed with SIGKILL and restarted, and Weaviate is stopped for 30 s. Afterwards Weaviate
//! holds exactly the expected chunk objects: no loss, no duplicate, no stale chunk.
//!
//! Its own test binary: it stops the real Weaviate.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vecstream_core::chunk_id;
use vecstream_e2e::pipeline::{converge_to, doc};
use vecstream_e2e::{Running, ServiceDown, cache_dir, config, require_service, unique};
use vecstream_engine::{Chunker, Engine, EngineConfig};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry};
use vecstream_weaviate::{Tenancy, collection_name};

const DOCS: usize = 1000;
const CHUNK_TOKENS: usize = 32;
const OVERLAP: usize = 4;

fn body(i: usize, version: i64) -> String {
    let words = [
        "kafka", "vector", "search", "lineage", "chunk", "model", "tensor", "stream", "index",
        "replica", "offset", "schema",
    ];
    // Some documents span several chunks; version 2 is always one short sentence.
    let sentences = if version == 1 { 1 + i % 4 } else { 1 };
    (0..sentences)
        .map(|s| {
            format!(
                "Document {i} version {version} sentence {s} talks about {} and {} in plain words.",
                words[(i + s) % words.len()],
                words[(i * 7 + s) % words.len()]
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn kills_and_an_outage_leave_exactly_the_expected_chunks() {
    require_service("kafka", 9092);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-faults-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        "embedder.group_id=e2e-faults-embedder".to_owned(),
        "embedder.transactional_id=e2e-faults-txn".to_owned(),
        format!("embedder.chunk_tokens={CHUNK_TOKENS}"),
        format!("embedder.chunk_overlap={OVERLAP}"),
        "embedder.batch_max_records=64".to_owned(),
        "sink.group_id=e2e-faults-sink".to_owned(),
        "sink.max_backoff_ms=2000".to_owned(),
    ];
    let mut port = 19500;
    let mut start = |component: &str| {
        port += 1;
        Running::start(component, port, &sets, logs.path())
    };
    let mut embedder = start("embedder");
    let mut sink = start("sink");

    // The expected end state, from the same tokenizer and chunking settings.
    let engine = Engine::start(EngineConfig::new(
        cache_dir().join("models/all-MiniLM-L6-v2"),
    ))
    .expect("engine");
    let model_id = engine.info().model_id.clone();
    let chunker = Chunker::new(engine.tokenizer().clone(), Some(CHUNK_TOKENS), OVERLAP).unwrap();
    let id = |i: usize| format!("{run}-{i:04}");
    let updated = |i: usize| i % 10 == 3;
    let deleted = |i: usize| i % 10 == 7;
    let mut expected = BTreeSet::new();
    for i in 0..DOCS {
        if deleted(i) {
            continue;
        }
        let version = if updated(i) { 2 } else { 1 };
        let n = chunker.chunk(&body(i, version)).unwrap().len();
        for c in 0..n {
            expected.insert(chunk_id(&run, &id(i), c as u32, &model_id).to_string());
        }
    }
    drop(engine);

    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    let publisher = DocumentPublisher::connect(&cfg.kafka, &registry)
        .await
        .unwrap();
    let with_tenant = |d: vecstream_core::Document| vecstream_core::Document {
        tenant: run.clone(),
        ..d
    };
    let publish_range = |from: usize, to: usize| {
        let publisher = publisher.clone();
        let docs: Vec<_> = (from..to)
            .map(|i| with_tenant(doc(&id(i), 1, &body(i, 1))))
            .collect();
        async move {
            for d in &docs {
                publisher.publish(d).await.unwrap();
            }
        }
    };

    publish_range(0, 300).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    embedder.kill();
    embedder = start("embedder");
    publish_range(300, 600).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sink.kill();
    sink = start("sink");

    // Weaviate away for 30 s while more documents, updates and deletes arrive.
    let restart = ServiceDown::stop("weaviate");
    let outage = Instant::now();
    publish_range(600, DOCS).await;
    for i in (0..DOCS).filter(|i| updated(*i)) {
        publisher
            .publish(&with_tenant(doc(&id(i), 2, &body(i, 2))))
            .await
            .unwrap();
    }
    embedder.kill();
    embedder = start("embedder");
    for i in (0..DOCS).filter(|i| deleted(*i)) {
        publisher.publish_tombstone(&run, &id(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    drop(restart);
    sink.kill();
    sink = start("sink");

    // Converges to exactly the expected objects.
    let collection = collection_name(&model_id, Tenancy::Filter);
    converge_to(
        &cfg.weaviate.url,
        &collection,
        &run,
        &expected,
        Duration::from_secs(240),
        &[&embedder, &sink],
    )
    .await;
    embedder.stop();
    sink.stop();
}
