//! What analysts and searchers get (issue 19), driven as they drive it:
//! - documents published by a stock Python producer; `vecstream lineage status --wait`
//!   returns once each is searchable, a poison record's receipt says dead-lettered;
//! - the OpenLineage exporter (`vecstream run openlineage`) with its HTTP endpoint down:
//!   the stream is unaffected, the loss is counted, and the Kafka transport's events,
//!   read by a stock consumer, validate against the official OpenLineage schema; then
//!   `vecstream lineage export --from-beginning` back-fills them to a live HTTP endpoint;
//! - hybrid search against vector-only on the committed keyword-heavy labelled set, and
//!   filters that return only matching documents.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vecstream_e2e::pipeline::metrics_text;
use vecstream_e2e::{Running, cli_ok, describe, repo_root, require_service, unique};

/// Sum of the series of `name` whose labels include `label` (e.g. `transport="http"`).
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn receipts_and_openlineage_export_with_the_endpoint_down_then_back_filled() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let run = unique("e2e-ol-");
    let test_started = Instant::now();
    let logs = tempfile::tempdir().unwrap();
    let ol_topic = format!("{run}.openlineage");
    let sets = vec![
        format!("embedder.group_id={run}-embedder"),
        format!("embedder.transactional_id={run}-txn"),
        format!("sink.group_id={run}-sink"),
        format!("openlineage.group_id={run}-ol"),
        format!("openlineage.kafka_topic={ol_topic}"),
        // Nothing listens there: the HTTP transport's endpoint is down all along.
        "openlineage.http_url=http://127.0.0.1:19909".to_owned(),
        "openlineage.http_buffer_events=4".to_owned(),
        "openlineage.http_max_attempts=2".to_owned(),
        "openlineage.http_timeout_ms=500".to_owned(),
    ];
    // The exporter's group starts at the lineage topic's end: this test's events, not the
    // history of every earlier run.
    vecstream_e2e::pipeline::start_group_at_end(
        &format!("{run}-ol"),
        vecstream_core::topics::LINEAGE,
    );
    let embedder = Running::start("embedder", 19901, &sets, logs.path());
    let sink = Running::start("sink", 19902, &sets, logs.path());
    let exporter = Running::start("openlineage", 19903, &sets, logs.path());

    // A stock producer publishes; each receipt waits until its document is searchable.
    let ids: Vec<String> = (0..3).map(|i| format!("{run}-doc-{i}")).collect();
    let out = Command::new(vecstream_e2e::venv_python())
        .args([
            repo_root()
                .join("tests/python/stock_clients.py")
                .to_str()
                .unwrap(),
            "produce",
            "--ids",
            &ids.join(","),
            "--tenant",
            &run,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    for id in &ids {
        let out = vecstream_e2e::vecstream(&vecstream_e2e::with_sets(
            &sets,
            &[
                "lineage",
                "status",
                id,
                "--tenant",
                &run,
                "--wait",
                "--timeout",
                "180",
            ],
        ));
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}\n--- embedder\n{}\n--- sink\n{}",
            describe(&out),
            embedder.log(),
            sink.log()
        );
        // `indexed` may follow `searchable` here: the sink's event comes after Weaviate's ack.
        for step in ["searchable", "accepted", "embedded", "alias Chunks"] {
            assert!(line.contains(step), "{step}: {line}");
        }
    }
    // The receipt as JSON names the steps with their times.
    let json = cli_ok(
        &sets,
        &["lineage", "status", &ids[0], "--tenant", &run, "--json"],
    );
    let receipt: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(receipt["state"], "searchable", "{receipt}");
    assert!(
        receipt["indexed"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("Chunk_"),
        "{receipt}"
    );
    assert!(
        receipt["accepted"]["detail"]
            .as_str()
            .unwrap()
            .contains("docs.documents.v1/")
    );
    // A document that never came: not searchable, exit 1, after the wait.
    let out = vecstream_e2e::vecstream(&vecstream_e2e::with_sets(
        &sets,
        &[
            "lineage",
            "status",
            "never-published",
            "--tenant",
            &run,
            "--wait",
            "--timeout",
            "2",
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    // A poison record (not Avro) under a key of the tenant: dead-lettered, receipt exit 2.
    let poison = format!("{run}-poison");
    let producer: rdkafka::producer::FutureProducer =
        vecstream_kafka::client_config(&vecstream_e2e::config().kafka)
            .create()
            .unwrap();
    let key = vecstream_core::record_key(&run, &poison);
    producer
        .send(
            rdkafka::producer::FutureRecord::to(vecstream_core::topics::DOCUMENTS)
                .key(key.as_str())
                .payload(b"not avro".as_slice()),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let out = vecstream_e2e::vecstream(&vecstream_e2e::with_sets(
        &sets,
        &[
            "lineage",
            "status",
            &poison,
            "--tenant",
            &run,
            "--wait",
            "--timeout",
            "120",
        ],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dead-lettered"),
        "{}",
        describe(&out)
    );

    // The Kafka transport, read by a stock consumer: every event valid, runs ended, the
    // sink's runs parented by the embedder's, the dead letter's FAIL with its error.
    let out = Command::new(vecstream_e2e::venv_python())
        .args([
            repo_root()
                .join("tests/python/openlineage_check.py")
                .to_str()
                .unwrap(),
            "kafka",
            "--topic",
            &ol_topic,
            "--tenant",
            &run,
            "--docs",
            &ids.join(","),
            "--timeout",
            "120",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n--- exporter\n{}",
        describe(&out),
        exporter.log()
    );
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let types = summary["types"].to_string();
    for t in ["START", "RUNNING", "COMPLETE"] {
        assert!(types.contains(t), "{summary}");
    }
    let datasets = summary["datasets"].to_string();
    assert!(datasets.contains("kafka://"), "{summary}");
    assert!(datasets.contains("weaviate://"), "{summary}");

    // The endpoint down: the stream went on (every document is searchable above), and what
    // the buffer could not hold is counted and logged.
    let text = metrics_text(19903).await;
    let dropped = metric(
        &text,
        "vecstream_openlineage_dropped_total",
        "transport=\"http\"",
    );
    assert!(dropped > 0.0, "{text}");
    assert!(
        metric(
            &text,
            "vecstream_openlineage_sent_total",
            "transport=\"kafka\""
        ) > 0.0
    );
    assert!(
        exporter.log().contains("dropped events"),
        "{}",
        exporter.log()
    );
    exporter.stop();

    // Back-fill: the events again, to a live endpoint with an API key, none dropped.
    let receiver = Command::new(vecstream_e2e::venv_python())
        .args([
            repo_root()
                .join("tests/python/openlineage_check.py")
                .to_str()
                .unwrap(),
            "http",
            "--port",
            "19908",
            "--tenant",
            &run,
            "--api-key",
            "s3cret",
            "--min",
            "12",
            "--seconds",
            "120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let backfill_sets = vec![
        "openlineage.http_url=http://127.0.0.1:19908".to_owned(),
        "openlineage.http_api_key=s3cret".to_owned(),
    ];
    // Since this test began (the topic also holds other tests' events).
    let since = format!("{}s", test_started.elapsed().as_secs() + 30);
    let started = Instant::now();
    let out = cli_ok(
        &backfill_sets,
        &["lineage", "export", "--from-beginning", "--since", &since],
    );
    let receiver = receiver.wait_with_output().unwrap();
    assert!(
        receiver.status.success(),
        "{}\nexport: {out} ({:?})",
        describe(&receiver),
        started.elapsed()
    );
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&receiver.stdout).trim()).unwrap();
    assert!(summary["events"].as_u64().unwrap() >= 12, "{summary}");
    embedder.stop();
    sink.stop();
}

/// recall@10 of one search mode on the keyword suite, through `vecstream search --json`.
fn recall_at_10(sets: &[String], tenant: &str, mode: &str) -> f64 {
    let suite =
        std::fs::read_to_string(repo_root().join("examples/eval/keyword/suite.jsonl")).unwrap();
    let mut found = 0usize;
    let mut total = 0usize;
    for line in suite.lines() {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let query = q["query"].as_str().unwrap();
        let relevant = q["relevant_doc_ids"][0].as_str().unwrap();
        let out = cli_ok(
            sets,
            &[
                "search", query, "--tenant", tenant, "--mode", mode, "-k", "10", "--json",
            ],
        );
        total += 1;
        if out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|h| h["doc_id"] == relevant)
        {
            found += 1;
        }
    }
    found as f64 / total as f64
}

#[test]
fn hybrid_beats_vector_on_keyword_queries_and_filters_return_only_matches() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let run = unique("e2e-kw-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("embedder.group_id={run}-embedder"),
        format!("embedder.transactional_id={run}-txn"),
        format!("sink.group_id={run}-sink"),
    ];
    let embedder = Running::start("embedder", 19904, &sets, logs.path());
    let sink = Running::start("sink", 19905, &sets, logs.path());
    cli_ok(
        &sets,
        &[
            "produce",
            "--input",
            repo_root()
                .join("examples/eval/keyword/corpus.jsonl")
                .to_str()
                .unwrap(),
            "--tenant",
            &run,
            "--quiet",
        ],
    );
    // Wait until the last document is searchable.
    let out = vecstream_e2e::vecstream(&vecstream_e2e::with_sets(
        &sets,
        &[
            "lineage",
            "status",
            "kw/api-5",
            "--tenant",
            &run,
            "--wait",
            "--timeout",
            "300",
        ],
    ));
    assert!(
        out.status.success(),
        "{}\n--- embedder\n{}\n--- sink\n{}",
        describe(&out),
        embedder.log(),
        sink.log()
    );

    let vector = recall_at_10(&sets, &run, "vector");
    let hybrid = recall_at_10(&sets, &run, "hybrid");
    let keyword = recall_at_10(&sets, &run, "keyword");
    eprintln!(
        "recall@10 on the keyword suite: vector {vector:.3}, hybrid {hybrid:.3}, keyword {keyword:.3}"
    );
    assert!(hybrid > vector, "hybrid {hybrid} vs vector {vector}");

    // Filters: only matching documents, by source, metadata and time.
    let hits = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "search",
            "replication lag",
            "--tenant",
            &run,
            "-k",
            "50",
            "--json",
        ];
        args.extend_from_slice(extra);
        cli_ok(&sets, &args)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let by_source = hits(&["--where", "source=kb://database"]);
    assert_eq!(by_source.len(), 30, "{by_source:?}");
    assert!(by_source.iter().all(|h| h["source"] == "kb://database"));
    // Best chunk per document: each document once.
    let mut ids: Vec<&str> = by_source
        .iter()
        .map(|h| h["doc_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    let by_meta = hits(&["--where", "metadata.family=shipping"]);
    assert!(!by_meta.is_empty());
    assert!(
        by_meta
            .iter()
            .all(|h| h["doc_id"].as_str().unwrap().starts_with("kw/shipping-"))
    );
    let both = hits(&[
        "--where",
        "metadata.family=hr",
        "--where",
        "source=kb://database",
    ]);
    assert!(both.is_empty(), "{both:?}");
    assert!(hits(&["--since", "1h"]).len() >= 10);
    assert!(hits(&["--since", "2100-01-01T00:00:00Z"]).is_empty());
    // Hits carry the version and the lineage trace id.
    let top = &hits(&["--mode", "hybrid"])[0];
    assert_eq!(
        top["doc_version"].as_i64().map(|v| v > 0),
        Some(true),
        "{top}"
    );
    assert_eq!(top["trace_id"].as_str().map(str::len), Some(32), "{top}");
    embedder.stop();
    sink.stop();
}
