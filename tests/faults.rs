//! Crashes and an outage in the middle of a run change nothing in the end result: while 1,000
//! documents (plus updates to fewer chunks and deletes) flow, the embedder and the sink are
//! killed with SIGKILL and restarted, and Weaviate is stopped for 30 s. Afterwards Weaviate
//! holds exactly the expected chunk objects: no loss, no duplicate, no stale chunk.
//!
//! Its own test binary: it stops the real Weaviate.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use vecstream_core::chunk_id;
use vecstream_e2e::pipeline::doc;
use vecstream_e2e::{Running, cache_dir, config, describe, require_service, stack, unique};
use vecstream_engine::{Chunker, Engine, EngineConfig};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry};
use vecstream_weaviate::collection_name;

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

struct RestartWeaviate;

impl Drop for RestartWeaviate {
    fn drop(&mut self) {
        let _ = stack(&["up", "weaviate"]);
    }
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
            expected.insert(chunk_id(&id(i), c as u32, &model_id).to_string());
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
    let out = stack(&["down", "weaviate"]);
    assert!(out.status.success(), "{}", describe(&out));
    let restart = RestartWeaviate;
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
        publisher.publish_tombstone(&id(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    drop(restart);
    sink.kill();
    sink = start("sink");

    // Converges to exactly the expected objects.
    let collection = collection_name(&model_id);
    let http = reqwest_like_post;
    let started = Instant::now();
    let mut last = BTreeSet::new();
    while started.elapsed() < Duration::from_secs(240) {
        let query = json!({ "query": format!(
            "{{ Get {{ {collection}(where: {{path: [\"tenant\"], operator: Equal, valueText: \"{run}\"}}, limit: 10000) {{ _additional {{ id }} }} }} }}"
        )});
        if let Some(ids) = http(&cfg.weaviate.url, &query) {
            last = ids;
            if last == expected {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let missing: Vec<_> = expected.difference(&last).take(5).collect();
    let extra: Vec<_> = last.difference(&expected).take(5).collect();
    assert!(
        last == expected,
        "{} objects, {} expected; missing e.g. {missing:?}; extra (stale/duplicate) e.g. {extra:?}\n--- embedder\n{}\n--- sink\n{}",
        last.len(),
        expected.len(),
        embedder.log(),
        sink.log()
    );
    embedder.stop();
    sink.stop();
}

/// Object ids of a GraphQL answer, through curl (the test crate has no HTTP client).
fn reqwest_like_post(base: &str, body: &serde_json::Value) -> Option<BTreeSet<String>> {
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            &format!("{base}/v1/graphql"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let rows = v
        .pointer("/data/Get")?
        .as_object()?
        .values()
        .next()?
        .as_array()?;
    Some(
        rows.iter()
            .filter_map(|r| r.pointer("/_additional/id")?.as_str().map(str::to_owned))
            .collect(),
    )
}
