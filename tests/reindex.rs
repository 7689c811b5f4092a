//! Blue/green reindex on the real Temporal, Kafka and Weaviate, through the CLI an operator
//! uses: 1,000 documents re-embedded with a second model configuration (its own model id,
//! max_seq_length 128) while searches keep answering and new documents arrive; the
//! progress query advances; the evaluation compares both collections; approval swaps the
//! alias, rollback swaps it back; a rejection and a review timeout drop the new collection;
//! a second start of the same reindex is refused; `eval run` reports on a labelled set.
//!
//! The test owns its alias and task queues, so it never moves `Chunks` under other tests.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vecstream_e2e::pipeline::{TopicReader, eventually, publisher, tenant_doc_ids, wait_for_stage};
use vecstream_e2e::{
    Running, cache_dir, cli_ok as cli, config, describe, reindex_progress, require_service, unique,
    vecstream, with_sets,
};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};

const DOCS: usize = 1000;

fn body(i: usize) -> String {
    let topics = [
        "tidal energy in narrow straits",
        "the grammar of bird song",
        "sourdough fermentation",
        "volcanic soil and vineyards",
        "glacier retreat measured by satellites",
        "the history of movable type",
        "bees navigating by polarised light",
        "desalination with graphene membranes",
    ];
    format!(
        "Note {i} is about {}. It records observation {} and compares it with note {}.",
        topics[i % topics.len()],
        i * 7 % 101,
        (i + 3) % DOCS
    )
}

fn progress(sets: &[String], id: &str) -> serde_json::Value {
    serde_json::from_str(&cli(sets, &["reindex", "status", id, "--json"])).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn reindex_with_review_evaluation_rollback_reject_and_timeout() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-reindex-");
    let small = format!("{run}-small");
    let alias = format!("E2eReindex{}", run.replace('-', ""));
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
        "embedder.group_id=e2e-reindex-embedder".to_owned(),
        "embedder.transactional_id=e2e-reindex-txn".to_owned(),
        "sink.group_id=e2e-reindex-sink".to_owned(),
        // Four-eyes: whoever started a job (the tests sign starts with key `e2e`) cannot
        // approve it.
        "review.four_eyes=true".to_owned(),
    ];
    let embedder = Running::start("embedder", 19711, &sets, logs.path());
    let sink = Running::start("sink", 19712, &sets, logs.path());
    let mut worker = Running::start("worker", 19713, &sets, logs.path());

    let model_dir = cache_dir().join("models/all-MiniLM-L6-v2");
    let model_dir_s = model_dir.to_string_lossy().into_owned();
    let live_id = vecstream_engine::model::ModelSpec::load(&model_dir, None)
        .unwrap()
        .0
        .model_id;
    let live = collection_name(&live_id, Tenancy::Filter);
    let id = |i: usize| format!("{run}-{i:04}");

    // 1. The stream indexes 1,000 documents (and 20 of a second tenant) into the live model.
    let (registry, publisher) = publisher().await;
    let publish = |tenant: String, from: usize, to: usize| {
        let publisher = publisher.clone();
        async move {
            for i in from..to {
                let d = vecstream_core::Document {
                    tenant: tenant.clone(),
                    ..vecstream_e2e::pipeline::doc(&format!("{tenant}-{i:04}"), 1, &body(i))
                };
                publisher.publish(&d).await.unwrap();
            }
        }
    };
    publish(run.clone(), 0, DOCS).await;
    publish(small.clone(), 0, 20).await;
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    eventually(
        "1,020 documents indexed by the stream",
        &[&embedder, &sink],
        || async {
            (tenant_doc_ids(&cfg.weaviate.url, &live, &run).len() == DOCS
                && tenant_doc_ids(&cfg.weaviate.url, &live, &small).len() == 20)
                .then_some(())
        },
    )
    .await;
    weaviate.set_alias(&alias, &live).await.unwrap();

    // A labelled suite on this corpus: each query names its document.
    let suite = logs.path().join("suite.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({"query": body(i * 25), "relevant_doc_ids": [id(i * 25)]}).to_string()
        })
        .collect();
    std::fs::write(&suite, lines.join("\n")).unwrap();
    let suite_s = suite.to_string_lossy().into_owned();

    // 2. Start the reindex; a second start of the same job is refused.
    let start = [
        "reindex",
        "start",
        "--alias",
        &alias,
        "--tenant",
        &run,
        "--model-dir",
        &model_dir_s,
        "--max-seq-length",
        "128",
        "--range-offsets",
        "1000",
        "--eval-suite",
        &suite_s,
        "--eval-tenant",
        &run,
        "--review-timeout",
        "600",
        "--catch-up-secs",
        "2",
        "--heartbeat-secs",
        "10",
        "--switch-grace",
        "2",
        "--rollback-window",
        "1800",
    ];
    let wf = cli(&sets, &start).trim().to_owned();
    assert!(
        wf.starts_with(&format!("reindex-{alias}-all-MiniLM-L6-v2-")),
        "{wf}"
    );
    let mut again_args: Vec<&str> = Vec::new();
    for s in &sets {
        again_args.extend(["--set", s.as_str()]);
    }
    again_args.extend(start);
    let again = vecstream(&again_args);
    assert!(!again.status.success(), "second start accepted");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("refused"),
        "{}",
        describe(&again)
    );

    // 3. While it scans: progress advances, searches answer, new documents arrive, and the
    //    gpu worker is killed (-9) mid-scan and restarted.
    let started = Instant::now();
    let mut seen_done = BTreeSet::new();
    let mut killed = false;
    let mut searches = 0;
    loop {
        let Some(p) = reindex_progress(&sets, &wf) else {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "{}",
                worker.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let done = p["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|x| x["done"].as_i64().unwrap() - x["start"].as_i64().unwrap())
                    .sum::<i64>()
            })
            .unwrap_or(0);
        seen_done.insert(done);
        let out = cli(
            &sets,
            &[
                "search",
                &body(5),
                "--collection",
                &alias,
                "--tenant",
                &run,
                "--json",
            ],
        );
        assert!(out.contains(&id(5)), "search during the reindex: {out}");
        searches += 1;
        if !killed && p["phase"] == "scanning" && p["ranges_done"].as_u64().unwrap_or(0) >= 1 {
            publish(run.clone(), DOCS, DOCS + 20).await;
            worker.kill();
            std::thread::sleep(Duration::from_secs(1));
            worker = Running::start("worker", 19714, &sets, logs.path());
            killed = true;
        }
        if p["awaiting_review"] == true {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no review phase: {p}\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(killed, "the worker was killed mid-scan");
    assert!(seen_done.len() >= 3, "progress advanced: {seen_done:?}");
    assert!(searches >= 2);
    let p = progress(&sets, &wf);
    let eval = &p["evaluation"]["rows"];
    assert_eq!(
        eval.as_array().unwrap().len(),
        2,
        "live and new side by side: {p}"
    );
    assert!(eval[1]["recall_at_k"].as_f64().unwrap() > 0.8, "{p}");
    let text = cli(&sets, &["reindex", "status", &wf]);
    assert!(
        text.contains("awaiting review") && text.contains("recall@k"),
        "{text}"
    );

    // 4. Approve, signed: the starter's own approval (four-eyes) and a key the worker does
    //    not trust are refused, recorded, and the job keeps waiting; a second reviewer's is
    //    accepted. Then the alias moves; every document, including those produced during
    //    the reindex, is in the new collection.
    let keys = vecstream_e2e::review_keys();
    // The run's lineage events are keyed by its workflow id: read them from now on.
    let mut lineage = TopicReader::new(vecstream_core::topics::LINEAGE);
    let refused = |key: &std::path::Path, code: &str| {
        let key = key.to_string_lossy().into_owned();
        let out = vecstream(&with_sets(
            &sets,
            &["review", "approve", &wf, "--key", &key],
        ));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && stderr.contains(code),
            "{}",
            describe(&out)
        );
    };
    refused(&keys.key, "four_eyes_self_approval");
    refused(&keys.outsider, "unknown_key");
    let p = progress(&sets, &wf);
    assert_eq!(p["phase"], "awaiting_review", "still waiting: {p}");
    assert!(p["review"].is_null(), "{p}");
    let codes: Vec<&str> = p["refused_reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["four_eyes_self_approval", "unknown_key"], "{p}");
    let second = keys.second.to_string_lossy().into_owned();
    let accepted = cli(
        &sets,
        &[
            "review",
            "approve",
            &wf,
            "--key",
            &second,
            "--reviewer",
            "e2e-second",
            "--comment",
            "looks good",
        ],
    );
    assert!(accepted.contains("accepted the review"), "{accepted}");
    let p = progress(&sets, &wf);
    assert_eq!(p["review"]["reviewer"], "e2e-second", "{p}");
    let fingerprint = p["review"]["key_fingerprint"].as_str().unwrap().to_owned();
    assert!(fingerprint.starts_with("SHA256:"), "{p}");
    assert!(accepted.contains(&fingerprint), "{accepted}");
    // The lineage event that follows the approval names the verified reviewer and key.
    let events = wait_for_stage(
        &mut lineage,
        &registry,
        &wf,
        &["reindex:rollback_window"],
        &[&worker],
    )
    .await;
    let approved = events
        .iter()
        .find(|e| e.vecstream.stage == "reindex:rollback_window")
        .unwrap();
    assert_eq!(approved.vecstream.reviewer.as_deref(), Some("e2e-second"));
    assert_eq!(
        approved.vecstream.reviewer_key.as_deref(),
        Some(fingerprint.as_str())
    );
    let target = p["target_collection"].as_str().unwrap().to_owned();
    eventually("the alias on the new collection", &[&worker], || async {
        (weaviate.resolve_alias(&alias).await.ok()?? == target).then_some(())
    })
    .await;
    let expected: BTreeSet<String> = (0..DOCS + 20).map(id).collect();
    let indexed = tenant_doc_ids(&cfg.weaviate.url, &target, &run);
    assert_eq!(
        indexed.len(),
        expected.len(),
        "missing {:?}",
        expected.difference(&indexed).take(5).collect::<Vec<_>>()
    );
    assert_eq!(indexed, expected);
    assert!(
        tenant_doc_ids(&cfg.weaviate.url, &target, &small).is_empty(),
        "the tenant filter kept other tenants out"
    );
    // Each document was embedded once: the range retried after the kill resumed from its
    // last heartbeat instead of starting over (the count would exceed 1,020 otherwise).
    // The alias moves before the workflow records the migration step and its phase.
    let done = eventually("the reindex in its rollback window", &[&worker], || async {
        let p = progress(&sets, &wf);
        (p["phase"] == "rollback_window").then_some(p)
    })
    .await;
    assert_eq!(done["documents_embedded"], (DOCS + 20) as u64, "{done}");
    let resumes = worker
        .log()
        .matches("resumes from its last heartbeat")
        .count();
    eprintln!("scan activities resumed from a heartbeat after the kill: {resumes}");

    // 5. Rollback (in the window) points the alias back. It is signed too: a key the worker
    //    does not trust is refused (and recorded), the window stays open.
    let outsider = keys.outsider.to_string_lossy().into_owned();
    let out = vecstream(&with_sets(
        &sets,
        &["reindex", "rollback", &wf, "--key", &outsider],
    ));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown_key"),
        "{}",
        describe(&out)
    );
    let p = progress(&sets, &wf);
    assert_eq!(p["phase"], "rollback_window", "{p}");
    assert!(p["rollback"].is_null(), "{p}");
    cli(&sets, &["reindex", "rollback", &wf, "--reason", "worse"]);
    assert_eq!(
        weaviate.resolve_alias(&alias).await.unwrap(),
        Some(live.clone())
    );
    let p = progress(&sets, &wf);
    assert_eq!(p["rollback"]["reviewer"], "e2e", "{p}");
    assert!(
        p["rollback"]["key_fingerprint"]
            .as_str()
            .is_some_and(|k| k.starts_with("SHA256:")),
        "{p}"
    );

    // 6. A rejected reindex drops its collection; the alias stays.
    let small_start = |len: &'static str, timeout: &'static str| {
        vec![
            "reindex".to_owned(),
            "start".into(),
            "--alias".into(),
            alias.clone(),
            "--tenant".into(),
            small.clone(),
            "--model-dir".into(),
            model_dir_s.clone(),
            "--max-seq-length".into(),
            len.into(),
            "--review-timeout".into(),
            timeout.into(),
            // A small history budget: these runs continue-as-new while scanning and waiting.
            "--history-budget".into(),
            "30".into(),
            "--range-offsets".into(),
            "400".into(),
            "--catch-up-secs".into(),
            "1".into(),
            "--switch-grace".into(),
            "2".into(),
        ]
    };
    let args = small_start("96", "600");
    let rejected = cli(&sets, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .trim()
        .to_owned();
    eventually("the second reindex awaiting review", &[&worker], || async {
        (progress(&sets, &rejected)["awaiting_review"] == true).then_some(())
    })
    .await;
    let rejected_collection = progress(&sets, &rejected)["target_collection"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        tenant_doc_ids(&cfg.weaviate.url, &rejected_collection, &small).len(),
        20
    );
    // The stock Temporal CLI queries and signals these workflows too.
    let temporal = cache_dir().join("venv/bin/temporal");
    let stock = |args: &[&str]| {
        let out = std::process::Command::new(&temporal)
            .args(args)
            .args(["--address", "127.0.0.1:7233"])
            .output()
            .expect("temporal CLI runs");
        assert!(
            out.status.success(),
            "temporal {args:?}\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let queried = stock(&[
        "workflow",
        "query",
        "--workflow-id",
        &rejected,
        "--type",
        "progress",
    ]);
    assert!(queried.contains("awaiting_review"), "{queried}");
    // An unsigned signal from the stock CLI (what the README used to show) is refused and
    // recorded; the job keeps waiting.
    stock(&[
        "workflow",
        "signal",
        "--workflow-id",
        &rejected,
        "--name",
        "review",
        "--input",
        r#"{"approve": true, "reviewer": "stock-cli", "comment": "trust me"}"#,
    ]);
    let p = eventually("the unsigned signal refused", &[&worker], || async {
        let p = progress(&sets, &rejected);
        (p["refused_reviews"].as_array()?.len() == 1).then_some(p)
    })
    .await;
    assert_eq!(p["refused_reviews"][0]["code"], "unsigned", "{p}");
    assert_eq!(p["phase"], "awaiting_review", "{p}");
    assert!(p["review"].is_null(), "{p}");
    // A signal with no payload at all is refused as malformed: it does not fail the run.
    stock(&[
        "workflow",
        "signal",
        "--workflow-id",
        &rejected,
        "--name",
        "review",
    ]);
    let p = eventually("the empty signal refused", &[&worker], || async {
        let p = progress(&sets, &rejected);
        (p["refused_reviews"].as_array()?.len() == 2).then_some(p)
    })
    .await;
    assert_eq!(p["refused_reviews"][1]["code"], "malformed", "{p}");
    assert_eq!(p["phase"], "awaiting_review", "{p}");
    // A signed decision through the stock CLI's update: `vecstream review sign` makes the
    // payload (rejecting one's own job passes four-eyes).
    let payload = cli(
        &sets,
        &[
            "review",
            "sign",
            &rejected,
            "--decision",
            "reject",
            "--comment",
            "worse",
        ],
    );
    let answer = stock(&[
        "workflow",
        "update",
        "execute",
        "--workflow-id",
        &rejected,
        "--name",
        "review",
        "--input",
        payload.trim(),
    ]);
    // The CLI prints the update's result (Go's map notation, or JSON with `-o json`).
    let compact: String = answer.split_whitespace().collect();
    assert!(
        compact.contains("accepted:true") || compact.contains(r#""accepted":true"#),
        "{answer}"
    );
    eventually("the rejected collection dropped", &[&worker], || async {
        (!weaviate
            .collection_exists(&rejected_collection)
            .await
            .ok()?)
        .then_some(())
    })
    .await;
    // The collection goes first; the phase follows with the workflow's next task.
    let p = eventually("the rejection recorded", &[&worker], || async {
        let p = progress(&sets, &rejected);
        (p["phase"] == "rejected").then_some(p)
    })
    .await;
    assert!(p["runs"].as_u64().unwrap() > 1, "continued as new: {p}");
    assert_eq!(p["review"]["reviewer"], "e2e", "{p}");
    assert_eq!(p["review"]["approve"], false, "{p}");
    assert_eq!(
        weaviate.resolve_alias(&alias).await.unwrap(),
        Some(live.clone())
    );

    // 7. Nobody answers: the review times out and counts as a reject.
    let args = small_start("64", "3");
    let timed_out = cli(&sets, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .trim()
        .to_owned();
    eventually("the unanswered reindex rejected", &[&worker], || async {
        (progress(&sets, &timed_out)["phase"] == "rejected").then_some(())
    })
    .await;
    let p = progress(&sets, &timed_out);
    assert!(p["review"].is_null(), "{p}");
    assert!(
        !weaviate
            .collection_exists(p["target_collection"].as_str().unwrap())
            .await
            .unwrap()
    );

    // 8. The evaluation workflow on its own, from the CLI.
    let report = cli(
        &sets,
        &[
            "eval",
            "run",
            "--suite",
            &suite_s,
            "--collection",
            &format!("{live}={model_dir_s}"),
            "--tenant",
            &run,
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["rows"][0]["queries"], 40);
    assert!(report["rows"][0]["mrr"].as_f64().unwrap() > 0.8, "{report}");

    // The worker counts its activities and the jobs' phases.
    let metrics = vecstream_e2e::pipeline::metrics_text(19714).await;
    for series in [
        "vecstream_activity_executions_total{activity=\"reindex.scan_range\",outcome=\"completed\"}",
        "vecstream_activity_seconds_count{activity=\"eval.collection\"}",
        "vecstream_workflow_events_total{phase=\"rejected\",workflow=\"reindex\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }

    let _ = weaviate.delete_alias(&alias).await;
    worker.stop();
    embedder.stop();
    sink.stop();
}

/// Long documents reindexed by one CPU worker with a short heartbeat timeout: normalising,
/// tokenising and embedding a slice of them takes longer than the timeout, yet the scan
/// heartbeats throughout and the reindex reaches review. `--watch` then exits 0; once the
/// workflow is terminated, `--watch` ends at once, says so and exits non-zero (it used to
/// watch a closed workflow forever).
#[tokio::test(flavor = "multi_thread")]
async fn a_reindex_of_long_documents_on_one_cpu_worker_completes_and_watch_says_how_it_ended() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-longreindex-");
    let alias = format!("E2eLong{}", run.replace('-', ""));
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
    ];
    let worker = Running::start("worker", 19715, &sets, logs.path());

    // Three documents of about 250 KB (some 75,000 tokens, 650 chunks each: under
    // embedder.max_chunks).
    let (_, publisher) = publisher().await;
    let ids: Vec<String> = (0..3).map(|i| format!("{run}-long-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let body = (0..2_500)
            .map(|s| format!("Long note {i} sentence {s}: {}.", body(s)))
            .collect::<Vec<_>>()
            .join(" ");
        let doc = vecstream_core::Document {
            tenant: run.clone(),
            ..vecstream_e2e::pipeline::doc(id, 1, &body)
        };
        publisher.publish(&doc).await.unwrap();
    }

    let model_dir = cache_dir().join("models/all-MiniLM-L6-v2");
    let model_dir_s = model_dir.to_string_lossy().into_owned();
    let start = [
        "reindex",
        "start",
        "--alias",
        &alias,
        "--tenant",
        &run,
        "--model-dir",
        &model_dir_s,
        // Its own model id, so its own collection.
        "--max-seq-length",
        "120",
        "--review-timeout",
        "600",
        "--heartbeat-secs",
        "4",
    ];
    let wf = cli(&sets, &start).trim().to_owned();
    let mut watch_args: Vec<&str> = Vec::new();
    for s in &sets {
        watch_args.extend(["--set", s.as_str()]);
    }
    watch_args.extend(["reindex", "status", &wf, "--watch"]);
    let watched = vecstream(&watch_args);
    assert!(watched.status.success(), "{}", describe(&watched));
    let p = progress(&sets, &wf);
    assert_eq!(p["awaiting_review"], true, "{p}");
    let target = p["target_collection"].as_str().unwrap().to_owned();
    assert_eq!(
        tenant_doc_ids(&cfg.weaviate.url, &target, &run),
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        "every long document reindexed:\n{}",
        worker.log()
    );
    assert!(
        !worker.log().contains("Heartbeat timeout"),
        "{}",
        worker.log()
    );

    // Terminated from outside: the watch ends at once and fails, naming how it ended.
    let temporal = cache_dir().join("venv/bin/temporal");
    let out = std::process::Command::new(&temporal)
        .args([
            "workflow",
            "terminate",
            "--workflow-id",
            &wf,
            "--reason",
            "e2e",
        ])
        .args(["--address", "127.0.0.1:7233"])
        .output()
        .expect("the temporal CLI runs");
    assert!(out.status.success(), "{}", describe(&out));
    let started = Instant::now();
    let watched = vecstream(&watch_args);
    assert!(!watched.status.success(), "{}", describe(&watched));
    assert!(
        String::from_utf8_lossy(&watched.stderr).contains("terminated"),
        "{}",
        describe(&watched)
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // The terminated reindex's collection is left to its operator: this test drops it.
    WeaviateClient::new(&cfg.weaviate)
        .unwrap()
        .delete_collection(&target)
        .await
        .unwrap();
    worker.stop();
}

/// Whoever can start a workflow writes its input: a `ReindexWorkflow` started around the
/// registry with a forged `carried` progress (an approved review, a phase past it) does not
/// swap anything; started with a Temporal retry policy (whose later runs would get that
/// input again as if continued) it is refused outright.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_around_the_registry_cannot_smuggle_in_a_decision() {
    use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
    use vecstream_workflows::{
        Phase, ReindexInput, ReindexProgress, ReindexWorkflow, ReviewDecision, ReviewGate,
    };
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-forged-");
    let logs = tempfile::tempdir().unwrap();
    let queue = format!("{run}-cpu");
    let sets = vec![
        format!("temporal.cpu_task_queue={queue}"),
        format!("temporal.gpu_task_queue={run}-gpu"),
    ];
    let worker = Running::start("worker", 19716, &sets, logs.path());
    let client = vecstream_workflows::connect(&cfg.temporal).await.unwrap();
    let alias = format!("E2eForged{}", run.replace('-', ""));
    let forged = |id: &str| ReindexInput {
        alias: alias.clone(),
        target: vecstream_workflows::ModelTarget {
            model_dir: "/nonexistent/forged-model".into(),
            max_seq_length: None,
            precision: Default::default(),
        },
        target_model_id: "forged".into(),
        eval: None,
        review_timeout_secs: 60,
        range_offsets: 100,
        catch_up_secs: 1,
        tenant: None,
        gpu_queue: format!("{run}-gpu"),
        heartbeat_secs: 20,
        history_budget: 4_000,
        rollback_window_secs: 60,
        switch_grace_secs: 1,
        carried: Some(ReindexProgress {
            alias: alias.clone(),
            model_id: "forged".into(),
            phase: Phase::Swapping,
            target_collection: format!("Forged{id}"),
            gate: ReviewGate {
                review: Some(ReviewDecision {
                    approve: true,
                    reviewer: "ana".into(),
                    comment: String::new(),
                    key_fingerprint: String::new(),
                }),
                ..Default::default()
            },
            ..Default::default()
        }),
        starter: None,
    };
    let outcome = |id: String, options: WorkflowStartOptions| {
        let client = client.clone();
        let input = forged(&id);
        async move {
            let handle = client
                .start_workflow(ReindexWorkflow::run, input, options)
                .await
                .unwrap();
            tokio::time::timeout(
                Duration::from_secs(120),
                handle.get_result(WorkflowGetResultOptions::default()),
            )
            .await
            .expect("the forged reindex ends")
        }
    };
    // Without a retry policy: the carried progress is ignored, the run starts from
    // `preparing` and fails there (the model does not exist); nothing approved, no alias.
    let id = format!("{run}-plain");
    let result = outcome(
        id.clone(),
        WorkflowStartOptions::new(queue.as_str(), id).build(),
    )
    .await;
    let err = result.expect_err("a forged approval must not complete the reindex");
    let text = format!("{err:?}");
    assert!(text.contains("forged-model"), "failed in preparing: {text}");
    // What the run held: none of the forged progress (asked of the closed run's worker).
    let p = progress(&sets, &format!("{run}-plain"));
    assert_eq!(p["phase"], "preparing", "{p}");
    assert!(p["review"].is_null(), "the forged approval was taken: {p}");
    let weaviate = vecstream_weaviate::WeaviateClient::new(&cfg.weaviate).unwrap();
    assert_eq!(weaviate.resolve_alias(&alias).await.unwrap(), None);
    // With a retry policy: refused at once, saying why.
    let id = format!("{run}-retried");
    let options = WorkflowStartOptions::new(queue.as_str(), id.clone())
        .retry_policy(
            temporalio_common::RetryPolicy::builder()
                .maximum_attempts(2)
                .build(),
        )
        .build();
    let err = outcome(id, options).await.expect_err("refused");
    let text = format!("{err:?}");
    assert!(text.contains("retry policy or cron schedule"), "{text}");
    assert_eq!(weaviate.resolve_alias(&alias).await.unwrap(), None);
    worker.stop();
}
