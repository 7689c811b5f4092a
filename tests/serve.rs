//! `vecstream serve` as users drive it: OpenAI's stock Python client and a plain HTTP
//! client in text-embeddings-inference's format get the vectors `vecstream embed` computes;
//! the query lane overtakes a saturated bulk lane (and does not without lanes); a full lane
//! answers 429 with Retry-After; and the stream embedder embeds through `vecstream serve`,
//! slowed by its 429s without a dead letter, and carries on with the local engine when it
//! stops, lineage naming who embedded each document.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vecstream_core::topics;
use vecstream_e2e::pipeline::{
    TopicReader, lineage_of_keys, metric_value, metrics_text, start_group_at_end,
};
use vecstream_e2e::{Running, cache_dir, describe, repo_root, require_service, unique, vecstream};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

fn vectors_of(path: &Path, field: &str) -> BTreeMap<String, Vec<f32>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let vector = v[field]
                .as_array()
                .unwrap_or_else(|| panic!("{field} in {l}"))
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (v["id"].as_str().unwrap().to_owned(), vector)
        })
        .collect()
}

fn model_id() -> String {
    vecstream_engine::model::ModelSpec::load(&cache_dir().join("models/all-MiniLM-L6-v2"), None)
        .expect("model in the cache")
        .0
        .model_id
}

/// Texts of every kind the corpus has: short, long (past the 256-token limit: truncated),
/// accents, CJK, emoji, markup.
fn texts() -> Vec<(String, String)> {
    let long =
        "Lighthouse keepers kept the lamps burning through every storm of the winter. ".repeat(40);
    [
        "hello world",
        "Zebra finches learn their songs from their fathers during a sensitive period.",
        "Ça déménage : l'été à Zürich, naïveté et façade.",
        "東京の天気は晴れです。明日は雨が降るでしょう。",
        "🚀 launch day — emoji and dashes — <b>markup</b> & entities &amp; stay",
        &long,
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (format!("t{i}"), t.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_openai_client_and_tei_http_get_the_vectors_of_vecstream_embed() {
    let python = vecstream_e2e::venv_python();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.jsonl");
    let texts = texts();
    std::fs::write(
        &input,
        texts
            .iter()
            .map(|(id, t)| serde_json::json!({"id": id, "text": t}).to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();

    // The reference: `vecstream embed` on the same texts.
    let embedded = dir.path().join("embed.jsonl");
    let out = vecstream(&[
        "embed",
        "-i",
        input.to_str().unwrap(),
        "-o",
        embedded.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let reference = vectors_of(&embedded, "vector");

    let serve = Running::serve(19881, &[], &[], dir.path());
    let base = "http://127.0.0.1:19881";

    // OpenAI's Python client: its default encoding (base64) and floats.
    let from_python = dir.path().join("openai.jsonl");
    let out = Command::new(&python)
        .args([
            repo_root()
                .join("tests/python/serve_clients.py")
                .to_str()
                .unwrap(),
            "--base-url",
            &format!("{base}/v1"),
            "--model",
            "all-MiniLM-L6-v2",
            "--input",
            input.to_str().unwrap(),
            "--output",
            from_python.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", describe(&out), serve.log());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["model"],
        model_id().as_str(),
        "the answer names the model id"
    );
    assert!(
        summary["prompt_tokens"].as_u64().unwrap() > 256,
        "usage counts tokens: {summary}"
    );
    assert_eq!(summary["single_len"], 384);
    for field in ["vector", "float_vector"] {
        let got = vectors_of(&from_python, field);
        assert_eq!(got.len(), reference.len());
        for (id, want) in &reference {
            let c = cosine(&got[id], want);
            assert!(c >= 0.99999, "{field} of {id}: cosine {c}");
        }
    }

    // TEI's /embed from a plain HTTP client.
    let http = reqwest::Client::new();
    let inputs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
    let resp = http
        .post(format!("{base}/embed"))
        .json(&serde_json::json!({"inputs": inputs, "truncate": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tei: Vec<Vec<f32>> = resp.json().await.unwrap();
    for ((id, _), v) in texts.iter().zip(&tei) {
        let c = cosine(v, &reference[id]);
        assert!(c >= 0.99999, "tei {id}: cosine {c}");
    }
    let single: Vec<Vec<f32>> = http
        .post(format!("{base}/embed"))
        .json(&serde_json::json!({"inputs": texts[0].1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(cosine(&single[0], &reference["t0"]) >= 0.99999);

    // Clear refusals, in each API's error format.
    let refused = |body: serde_json::Value, path: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = refused(serde_json::json!({"inputs": texts[5].1}), "/embed").await;
    assert_eq!(
        status, 413,
        "TEI refuses an over-long input without truncate: {body}"
    );
    assert_eq!(body["error_type"], "Validation");
    let (status, body) = refused(
        serde_json::json!({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 128}),
        "/v1/embeddings",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "dimensions_not_supported", "{body}");
    let (status, body) = refused(
        serde_json::json!({"model": "text-embedding-3-small", "input": "x"}),
        "/v1/embeddings",
    )
    .await;
    assert_eq!(
        status, 404,
        "another model's vectors are never passed off: {body}"
    );
    let (status, _) = refused(
        serde_json::json!({"model": "all-MiniLM-L6-v2", "input": []}),
        "/v1/embeddings",
    )
    .await;
    assert_eq!(status, 400);
    let metrics = metrics_text(19881).await;
    assert!(
        metric_value(
            &metrics,
            r#"vecstream_serve_requests_total{api="openai",lane="query",outcome="ok"}"#
        ) >= 3.0,
        "{metrics}"
    );
    drop(serve);
}

/// Texts of about 120 tokens each.
fn bulk_texts(n: usize, salt: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{salt} {i}: a reindex re-reads the compacted documents topic and embeds every \
                 document again with the new model, slice after slice, while the stream goes on. "
            )
            .repeat(3)
        })
        .collect()
}

/// Starts `bulk` requests in the bulk lane, then one query once they are queued; returns
/// how many bulk requests were still unanswered when the query's answer came.
async fn bulk_left_when_the_query_answers(port: u16, bulk: usize) -> usize {
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for r in 0..bulk {
        let (http, base, done) = (http.clone(), base.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/v1/embeddings"))
                .header("x-vecstream-lane", "bulk")
                .json(&serde_json::json!({"model": "all-MiniLM-L6-v2", "input": bulk_texts(32, &format!("r{r}"))}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    // Every bulk request queued before the query.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the bulk requests were never queued"
        );
        let m = metrics_text(port).await;
        let queued = metric_value(&m, r#"vecstream_serve_queued_tokens{lane="bulk"}"#);
        let taken = metric_value(&m, r#"vecstream_serve_batch_tokens_total{lane="bulk"}"#);
        if queued + taken >= (bulk * 32 * 100) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = http
        .post(format!("{base}/v1/embeddings"))
        .header("x-vecstream-lane", "query")
        .json(&serde_json::json!({"model": "all-MiniLM-L6-v2", "input": "where are the lighthouse keepers?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-vecstream-lane"], "query");
    let left = bulk - done.load(std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn the_query_lane_overtakes_a_saturated_bulk_lane_and_a_full_lane_says_when_to_retry() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--max-queued-tokens",
        "bulk=1000000",
        "--batch-tokens",
        "4096",
    ];
    let with_lanes = Running::serve(19882, &flags, &[], dir.path());
    let left = bulk_left_when_the_query_answers(19882, 6).await;
    assert!(
        left >= 4,
        "the query waited behind the bulk lane: only {left} of 6 bulk requests left"
    );
    drop(with_lanes);

    // The baseline: one first-come queue; the query waits for everything queued before it.
    let fifo_flags = [flags.as_slice(), &["--no-lanes"]].concat();
    let without = Running::serve(19883, &fifo_flags, &[], dir.path());
    let left = bulk_left_when_the_query_answers(19883, 6).await;
    assert!(
        left <= 1,
        "without lanes the query queued behind the bulk texts: {left} left"
    );
    drop(without);

    // A tiny bulk lane: a second request while one waits is refused with Retry-After; the
    // query lane is limited apart and answers.
    let tiny = Running::serve(
        19884,
        &["--max-queued-tokens", "bulk=2000", "--batch-tokens", "1024"],
        &[],
        dir.path(),
    );
    let http = reqwest::Client::new();
    let send = |lane: &'static str, n: usize| {
        let http = http.clone();
        async move {
            http.post("http://127.0.0.1:19884/v1/embeddings")
                .header("x-vecstream-lane", lane)
                .json(
                    &serde_json::json!({"model": "all-MiniLM-L6-v2", "input": bulk_texts(n, lane)}),
                )
                .send()
                .await
                .unwrap()
        }
    };
    let too_large = send("bulk", 64).await;
    assert_eq!(
        too_large.status(),
        413,
        "a request over the lane's limit by itself never fits"
    );
    let body: serde_json::Value = too_large.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_too_large", "{body}");
    // Six requests of ~1,600 tokens at once: one fits the 2,000-token lane at a time, the
    // others are refused with Retry-After.
    let burst: Vec<_> = (0..6).map(|_| tokio::spawn(send("bulk", 14))).collect();
    let mut refused = None;
    let mut served = 0;
    for b in burst {
        let r = b.await.unwrap();
        match r.status().as_u16() {
            200 => served += 1,
            429 => refused = Some(r),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(served >= 1, "the lane took what fits");
    let refused = refused.expect("a full bulk lane refuses");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "lane_full", "{body}");
    assert_eq!(
        send("query", 1).await.status(),
        200,
        "the query lane has its own limit"
    );
    let m = metrics_text(19884).await;
    assert!(
        metric_value(
            &m,
            r#"vecstream_serve_requests_total{api="openai",lane="bulk",outcome="rejected"}"#
        ) >= 1.0
    );
    drop(tiny);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedder_embeds_through_serve_slows_on_429_and_falls_back_to_the_local_engine() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    let run = unique("e2e-serve-");
    let dir = tempfile::tempdir().unwrap();
    let model_id = model_id();
    // The stream lane of this serve holds little: requests while it is full are answered
    // 429.
    let serve = Running::serve(
        19885,
        &["--max-queued-tokens", "stream=500", "--batch-tokens", "512"],
        &[],
        dir.path(),
    );
    let config = dir.path().join("vecstream.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[engine]
provider = "serve"
fallback = ["local"]

[[engine.providers]]
name = "serve"
kind = "openai"
url = "http://127.0.0.1:19885/v1"
model = "{model_id}"
send_token_ids = true
max_batch = 4
max_attempts = 3
backoff_initial_ms = 50
backoff_max_ms = 3000
breaker_failures = 2
breaker_open_ms = 60000
timeout_ms = 10000
"#
        ),
    )
    .unwrap();
    let (registry, publisher) = vecstream_e2e::pipeline::publisher().await;
    let group = format!("{run}-embedder");
    start_group_at_end(&group, topics::DOCUMENTS);
    let sets = vec![
        format!("embedder.group_id={group}"),
        format!("embedder.transactional_id={run}-txn"),
        "embedder.batch_max_records=2".to_owned(),
    ];
    let embedder = Running::start_with(
        "embedder",
        19886,
        &[
            "--config",
            config.to_str().unwrap(),
            "--log-level",
            "info,vecstream_providers=debug",
        ],
        &sets,
        dir.path(),
    );

    // Other clients (TEI's API, so their refusals count apart) keep the stream lane at its
    // limit of 500 tokens (requests of ~230 tokens from six loops: two fit) until serve has
    // refused the embedder (OpenAI's API) at least once; then they stop and the embedder's
    // retries get in.
    let stop_load = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop_load.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http
                        .post("http://127.0.0.1:19885/embed")
                        .header("x-vecstream-lane", "stream")
                        .json(
                            &serde_json::json!({"inputs": bulk_texts(2, "load"), "truncate": true}),
                        )
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 429) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let stop = stop_load.clone();
    load.push(tokio::spawn(async move {
        let embedder_refused =
            r#"vecstream_serve_requests_total{api="openai",lane="stream",outcome="rejected"}"#;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while metric_value(&metrics_text(19885).await, embedder_refused) < 1.0
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }));

    let mut lineage = TopicReader::new(topics::LINEAGE);
    let body =
        |i: usize| format!("Document {i} of {run}: lighthouse keepers and fog horns, entry {i}.");
    let first: Vec<String> = (0..24).map(|i| format!("{run}-a{i}")).collect();
    for (i, id) in first.iter().enumerate() {
        let doc = vecstream_core::Document {
            tenant: "default".into(),
            ..vecstream_e2e::pipeline::doc(id, 1, &body(i))
        };
        publisher.publish(&doc).await.unwrap();
    }
    let providers = embedded_by(&mut lineage, &registry, &first, &[&embedder, &serve]).await;
    assert!(
        providers.values().all(|p| p == "serve"),
        "every document of the first phase was embedded by serve: {providers:?}"
    );
    stop_load.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let m = metrics_text(19886).await;
    assert!(
        metric_value(
            &m,
            r#"vecstream_provider_retries_total{provider="serve",reason="429"}"#
        ) >= 1.0,
        "the embedder met 429s and waited them out:\n{}",
        m.lines()
            .filter(|l| l.contains("provider"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let sm = metrics_text(19885).await;
    assert!(
        metric_value(
            &sm,
            r#"vecstream_serve_requests_total{api="openai",lane="stream",outcome="rejected"}"#
        ) >= 1.0
    );

    // The provider stops mid-stream: the stream carries on with the local engine.
    serve.kill();
    let second: Vec<String> = (0..6).map(|i| format!("{run}-b{i}")).collect();
    for (i, id) in second.iter().enumerate() {
        let doc = vecstream_core::Document {
            tenant: "default".into(),
            ..vecstream_e2e::pipeline::doc(id, 1, &body(100 + i))
        };
        publisher.publish(&doc).await.unwrap();
    }
    let providers = embedded_by(&mut lineage, &registry, &second, &[&embedder]).await;
    assert!(
        providers.values().all(|p| p == "local"),
        "after serve stopped the local engine embedded: {providers:?}"
    );
    let m = metrics_text(19886).await;
    assert!(
        metric_value(
            &m,
            r#"vecstream_provider_fallbacks_total{from="serve",to="local"}"#
        ) >= 1.0
    );
    assert_eq!(
        metric_value(&m, r#"vecstream_provider_breaker_open{provider="serve"}"#),
        1.0
    );
    assert_eq!(
        metric_value(
            &m,
            r#"vecstream_embedder_documents_total{outcome="dead_lettered"}"#
        ),
        0.0,
        "nothing was dead-lettered"
    );
    assert!(
        embedder
            .log()
            .contains("embedding moved to the fallback provider")
    );
    embedder.stop();
}

/// Waits for the `embedded` event of each id; returns who embedded it (the facet's
/// `provider`). Fails on a dead letter.
async fn embedded_by(
    lineage: &mut TopicReader,
    registry: &vecstream_kafka::SchemaRegistry,
    ids: &[String],
    logs: &[&Running],
) -> BTreeMap<String, String> {
    let started = std::time::Instant::now();
    let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut out = BTreeMap::new();
    while out.len() < ids.len() {
        for e in lineage_of_keys(lineage, registry, &keys).await {
            let id = e.vecstream.doc_id.clone().unwrap_or_default();
            assert!(
                !e.vecstream.stage.ends_with("dead_lettered"),
                "{id}: {:?}",
                e.vecstream.error
            );
            if e.vecstream.stage == "embed:embedded" {
                out.insert(id, e.vecstream.provider.clone().unwrap_or_default());
            }
        }
        vecstream_e2e::pipeline::give_up_after(
            started,
            &format!("embedded events of {ids:?} (have {out:?})"),
            logs,
        );
    }
    out
}
