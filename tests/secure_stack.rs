//! The pipeline against the secure mode of the native stack (`compose/local/stack up
//! secure`): Kafka over SASL_SSL (SCRAM-SHA-512) with the stack's own CA, Weaviate with an
//! API key and no anonymous access behind TLS, Temporal and the registry behind TLS. Every
//! process reads `$VECSTREAM_CACHE/secure/vecstream.toml`, as a user's would. Then the ways
//! it goes wrong: a wrong password, an untrusted certificate, a wrong API key each stop the
//! component at start with a message naming the service, and nothing is consumed.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use vecstream_config::{Config, LoadOptions};
use vecstream_e2e::pipeline::eventually;
use vecstream_e2e::{Running, cache_dir, describe, require_service, unique, vecstream_bin};

fn secure_config() -> PathBuf {
    let path = cache_dir().join("secure/vecstream.toml");
    assert!(
        path.exists(),
        "{} is missing: start the secure mode with `compose/local/stack up secure`",
        path.display()
    );
    path
}

/// `vecstream --config <secure> <sets> args...`, with the test reviewers' keys unset (not
/// needed here).
fn secure(sets: &[String], args: &[&str]) -> std::process::Output {
    let config = secure_config();
    let mut cmd = Command::new(vecstream_bin());
    cmd.arg("--config")
        .arg(&config)
        .args(["--log-level", "warn"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.args(args).output().expect("vecstream runs")
}

fn secure_ok(sets: &[String], args: &[&str]) -> String {
    let out = secure(sets, args);
    assert!(out.status.success(), "{args:?}\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `vecstream run <component>` with a broken setting and returns its stderr once it
/// exits (it must, within 30 s: nothing retries a configuration mistake).
fn fails_at_start(component: &str, sets: &[String], broken: &str) -> String {
    let config = secure_config();
    let mut child = Command::new(vecstream_bin())
        .arg("--config")
        .arg(&config)
        .args(["--metrics-addr", "127.0.0.1:19861", "--log-level", "error"])
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .args(["--set", broken, "run", component])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vecstream starts");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "{component} with {broken} succeeded");
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return err;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("{component} with {broken} still runs after 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The offsets group `group` has committed on the documents topic, over the secure
/// listener (none: `Offset::Invalid` everywhere).
fn committed_documents_offsets(group: &str) -> Vec<rdkafka::Offset> {
    let (config, _) = Config::load(&LoadOptions {
        file: Some(secure_config()),
        ..Default::default()
    })
    .unwrap();
    let consumer: BaseConsumer = vecstream_kafka::client_config(&config.kafka)
        .set("group.id", group)
        .create()
        .unwrap();
    let topic = vecstream_core::topics::DOCUMENTS;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut partitions = rdkafka::TopicPartitionList::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        partitions.add_partition(topic, p.id());
    }
    consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_runs_over_sasl_ssl_tls_and_api_keys_and_bad_credentials_stop_it_at_start() {
    require_service("kafka-secure", 19092);
    require_service("weaviate-secure (tls-front)", 18443);
    require_service("temporal (tls-front)", 17233);
    require_service("registry (tls-front)", 18081);
    let run = unique("e2e-secure-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("embedder.group_id={run}-embedder"),
        format!("embedder.transactional_id={run}-txn"),
        format!("sink.group_id={run}-sink"),
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
    ];
    let secure_s = secure_config().to_string_lossy().into_owned();
    let flags = ["--config", secure_s.as_str()];

    // Every service answers over its secure endpoint; no plaintext-credential warning.
    let out = secure(&sets, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    for endpoint in [
        "127.0.0.1:19092",
        "https://127.0.0.1:18081",
        "https://127.0.0.1:17233",
        "https://127.0.0.1:18443",
    ] {
        assert!(text.contains(endpoint), "{text}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("unencrypted"),
        "{}",
        describe(&out)
    );

    // Bad credentials stop each component at start, naming the service; nothing consumed.
    let err = fails_at_start("embedder", &sets, "kafka.sasl_password=wrong");
    assert!(
        err.contains("kafka at 127.0.0.1:19092") && err.contains("authentication failed"),
        "{err}"
    );
    let other_ca = cache_dir().join("secure/other-ca.pem");
    let other_ca = other_ca.to_string_lossy();
    let err = fails_at_start("sink", &sets, &format!("kafka.ssl_ca_location={other_ca}"));
    assert!(
        err.contains("kafka at 127.0.0.1:19092") && err.contains("TLS"),
        "{err}"
    );
    let err = fails_at_start("sink", &sets, "weaviate.api_key=wrong");
    assert!(
        err.contains("weaviate at https://127.0.0.1:18443") && err.contains("API key"),
        "{err}"
    );
    let err = fails_at_start("worker", &sets, &format!("weaviate.tls_ca_cert={other_ca}"));
    assert!(err.contains("weaviate at") && err.contains("TLS"), "{err}");
    let err = fails_at_start("worker", &sets, &format!("temporal.tls_ca_cert={other_ca}"));
    assert!(
        err.contains("temporal unreachable at https://127.0.0.1:17233"),
        "{err}"
    );
    let err = fails_at_start("embedder", &sets, "registry.password=wrong");
    assert!(
        err.contains("schema registry at https://127.0.0.1:18081") && err.contains("refused"),
        "{err}"
    );
    let err = fails_at_start("sink", &sets, &format!("registry.tls_ca_cert={other_ca}"));
    assert!(
        err.contains("schema registry unreachable") && err.contains("certificate"),
        "{err}"
    );
    for cmd in [vec!["dlq", "list"], vec!["lineage", "tail", "--doc", "x"]] {
        let mut args = vec!["--set", "kafka.sasl_password=wrong"];
        args.extend(cmd.iter().copied());
        let out = secure(&sets, &args);
        assert!(!out.status.success(), "{cmd:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("authentication failed"),
            "{cmd:?}: {}",
            describe(&out)
        );
    }
    let docs = tempfile::tempdir().unwrap();
    let input = docs.path().join("docs.jsonl");
    let id = |i: usize| format!("{run}-{i}");
    let bodies = [
        "Lichens are partnerships of a fungus and an alga that weather bare rock.",
        "Glaciers carve U-shaped valleys and leave moraines where they melt.",
        "Sourdough starters keep wild yeasts and lactic bacteria alive in flour and water.",
    ];
    let lines: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| serde_json::json!({"id": id(i), "body": b, "tenant": run}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let input_s = input.to_string_lossy().into_owned();
    let out = secure(
        &sets,
        &[
            "--set",
            "kafka.sasl_password=wrong",
            "produce",
            "--input",
            &input_s,
            "--quiet",
        ],
    );
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("authentication failed"),
        "{}",
        describe(&out)
    );

    // The embedder refused at start consumed nothing: its group has no offsets.
    let committed = committed_documents_offsets(&format!("{run}-embedder"));
    assert!(!committed.is_empty());
    assert!(
        committed.iter().all(|o| *o == rdkafka::Offset::Invalid),
        "{committed:?}"
    );

    // The pipeline over the secure endpoints: produce, embed, sink, search, lineage.
    let embedder = Running::start_with("embedder", 19862, &flags, &sets, logs.path());
    let sink = Running::start_with("sink", 19863, &flags, &sets, logs.path());
    let worker = Running::start_with("worker", 19864, &flags, &sets, logs.path());
    secure_ok(&sets, &["produce", "--input", &input_s, "--quiet"]);
    let hits = eventually("the documents searchable", &[&embedder, &sink], || async {
        let out = secure(
            &sets,
            &["search", bodies[1], "--tenant", &run, "--json", "-k", "3"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains(&id(1))).then_some(text)
    })
    .await;
    assert!(hits.contains(&id(1)), "{hits}");
    let trace = eventually("the lineage of a document", &[&embedder, &sink], || async {
        let out = secure(
            &sets,
            &["lineage", "trace", &id(2), "--tenant", &run, "--json"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("sink:upserted")).then_some(text)
    })
    .await;
    assert!(trace.contains("embed:embedded"), "{trace}");
    // The worker's activities over the secure endpoints: an evaluation (Temporal over TLS,
    // Weaviate with its API key).
    let suite = docs.path().join("suite.jsonl");
    std::fs::write(
        &suite,
        serde_json::json!({"query": "how do glaciers shape valleys?", "relevant_doc_ids": [id(1)]})
            .to_string()
            + "\n",
    )
    .unwrap();
    let suite_s = suite.to_string_lossy().into_owned();
    let report = secure_ok(
        &sets,
        &[
            "eval", "run", "--suite", &suite_s, "--tenant", &run, "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["rows"][0]["queries"], 1, "{report}");
    assert_eq!(report["rows"][0]["recall_at_k"], 1.0, "{report}");
    // ... and the one with the right credentials commits over SASL_SSL.
    let committed = committed_documents_offsets(&format!("{run}-embedder"));
    assert!(
        committed
            .iter()
            .any(|o| matches!(o, rdkafka::Offset::Offset(_))),
        "{committed:?}"
    );
    let dlq = secure_ok(&sets, &["dlq", "list", "--json"]);
    assert!(
        !dlq.contains(&run),
        "nothing of this run dead-lettered: {dlq}"
    );
    let worker_log = worker.log();
    assert!(worker_log.contains("worker polling"), "{worker_log}");
    embedder.stop();
    sink.stop();
    worker.stop();
}
