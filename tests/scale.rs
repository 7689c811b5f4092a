//! 500 real documents through the pipeline while the embedder group rebalances: a second
//! embedder joins mid-stream and the first one leaves. Weaviate ends with exactly the
//! expected chunk objects (count and ids) and every document is found by a search for its
//! opening passage, in the run's tenant.

use std::collections::BTreeSet;
use std::time::Duration;

use vecstream_core::chunk_id;
use vecstream_e2e::pipeline::{converge_to, eventually, metric_value, metrics_text};
use vecstream_e2e::{Running, cache_dir, config, repo_root, require_service, unique};
use vecstream_engine::{Chunker, Engine, EngineConfig};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};

const DOCS: usize = 500;
const CHUNK_TOKENS: usize = 64;
const OVERLAP: usize = 8;
const EMBEDDED: &str = "vecstream_embedder_documents_total{outcome=\"embedded\"}";

/// 500 distinct real texts: CPython docstrings and the engine fixture's prose.
fn corpus() -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut texts = Vec::new();
    for file in [
        "tests/fixtures/retrieval/docs.jsonl",
        "tests/fixtures/embeddings/texts.jsonl",
    ] {
        let raw = std::fs::read_to_string(repo_root().join(file)).unwrap();
        for line in raw.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap().trim().to_owned();
            if text.chars().count() >= 20 && seen.insert(text.clone()) {
                texts.push(text);
            }
        }
    }
    assert!(texts.len() >= DOCS, "only {} distinct texts", texts.len());
    texts.truncate(DOCS);
    texts
}

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_documents_across_a_rebalance_are_all_indexed_and_found() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-scale-");
    let logs = tempfile::tempdir().unwrap();
    let sets = |txn: &str| {
        vec![
            "embedder.group_id=e2e-scale-embedder".to_owned(),
            format!("embedder.transactional_id=e2e-scale-{txn}"),
            format!("embedder.chunk_tokens={CHUNK_TOKENS}"),
            format!("embedder.chunk_overlap={OVERLAP}"),
            "embedder.batch_max_records=32".to_owned(),
            "sink.group_id=e2e-scale-sink".to_owned(),
        ]
    };
    let first = Running::start("embedder", 19601, &sets("a"), logs.path());
    let sink = Running::start("sink", 19602, &sets("a"), logs.path());

    // The expected objects, from the same tokenizer and chunking settings.
    let engine = Engine::start(EngineConfig::new(
        cache_dir().join("models/all-MiniLM-L6-v2"),
    ))
    .expect("engine");
    let model_id = engine.info().model_id.clone();
    let chunker = Chunker::new(engine.tokenizer().clone(), Some(CHUNK_TOKENS), OVERLAP).unwrap();
    let texts = corpus();
    let id = |i: usize| format!("{run}-{i:03}");
    let mut expected = BTreeSet::new();
    let mut openings = Vec::with_capacity(DOCS);
    for (i, text) in texts.iter().enumerate() {
        let chunks = chunker.chunk(text).unwrap();
        for c in &chunks {
            expected.insert(chunk_id(&run, &id(i), c.index, &model_id).to_string());
        }
        openings.push(chunks[0].text.clone());
    }
    let multi = texts
        .iter()
        .filter(|t| chunker.chunk(t).unwrap().len() > 1)
        .count();
    assert!(multi > 100, "the corpus exercises multi-chunk documents");

    let (_, publisher) = vecstream_e2e::pipeline::publisher().await;
    let publish = |from: usize, to: usize| {
        let docs: Vec<_> = (from..to)
            .map(|i| vecstream_core::Document {
                tenant: run.clone(),
                ..vecstream_e2e::pipeline::doc(&id(i), 1, &texts[i])
            })
            .collect();
        let publisher = publisher.clone();
        async move {
            for d in &docs {
                publisher.publish(d).await.unwrap();
            }
        }
    };

    // The first embedder starts on half the stream; a second one joins (rebalance) while
    // it works, the rest arrives, and once the newcomer has embedded documents of its own
    // the first one leaves (a second rebalance, SIGTERM: it drains and commits).
    publish(0, DOCS / 2).await;
    eventually("the first embedder at work", &[&first], || async {
        (metric_value(&metrics_text(19601).await, EMBEDDED) > 0.0).then_some(())
    })
    .await;
    let second = Running::start("embedder", 19603, &sets("b"), logs.path());
    publish(DOCS / 2, DOCS).await;
    eventually(
        "the second embedder at work",
        &[&first, &second],
        || async { (metric_value(&metrics_text(19603).await, EMBEDDED) > 0.0).then_some(()) },
    )
    .await;
    let first_embedded = metric_value(&metrics_text(19601).await, EMBEDDED);
    let first_log = first.stop();
    assert!(first_embedded > 0.0, "{first_log}");

    let collection = collection_name(&model_id, Tenancy::Filter);
    converge_to(
        &cfg.weaviate.url,
        &collection,
        &run,
        &expected,
        Duration::from_secs(300),
        &[&second, &sink],
    )
    .await;

    // Every document is found by a search for its opening passage (what `vecstream search`
    // does: the same model embeds the query, nearVector on the collection, tenant filter).
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let queries = engine.embed(openings).await.unwrap();
    let mut not_found = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let hits = weaviate
            .near_vector_where(
                &collection,
                &q.vector,
                3,
                &["doc_id", "chunk_index"],
                Some(("tenant", run.as_str())),
                None,
            )
            .await
            .unwrap();
        if !hits
            .iter()
            .any(|h| h.properties.get("doc_id").and_then(|d| d.as_str()) == Some(id(i).as_str()))
        {
            not_found.push(id(i));
        }
    }
    assert!(not_found.is_empty(), "not found by search: {not_found:?}");

    // A search through the CLI answers from the alias too.
    let out =
        vecstream_e2e::vecstream(&["search", &texts[7], "-k", "3", "--tenant", &run, "--json"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&id(7)),
        "{}",
        vecstream_e2e::describe(&out)
    );
    // Engine time and Weaviate upsert time are measured apart.
    assert!(metric_value(&metrics_text(19603).await, "vecstream_embed_seconds_count") > 0.0);
    assert!(
        metric_value(
            &metrics_text(19602).await,
            "vecstream_sink_upsert_seconds_count"
        ) > 0.0
    );
    second.stop();
    sink.stop();
}
