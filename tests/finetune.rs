//! FineTuneWorkflow on the real Temporal (its lineage on Kafka, the reindex to the new
//! version on Weaviate), through the CLI an operator uses, on a pairs set derived from a
//! real corpus (examples/finetune/pairs.jsonl: CPython docstring summaries against their
//! bodies):
//!
//! - the worker is killed (-9) mid-training and restarted: training resumes from the last
//!   checkpoint, not from the start (the test prints the step);
//! - recall@10 on the held-out split before and after, printed; the adapted model is not
//!   worse;
//! - approval registers the version in the model store; it works in
//!   `vecstream embed --model <new id>` and as the target of a reindex.
//!
//! The test owns its task queues, its model store and its alias.

use std::time::{Duration, Instant};

use vecstream_e2e::pipeline::{eventually, publisher, tenant_doc_ids};
use vecstream_e2e::{
    Running, cache_dir, cli_ok as cli, config, describe, repo_root, require_service, unique,
    vecstream, with_sets,
};
use vecstream_weaviate::{Tenancy, collection_name};

/// `finetune status --json`, or `None` while no worker answers queries.
fn status(sets: &[String], id: &str) -> Option<serde_json::Value> {
    let out = vecstream(&with_sets(sets, &["finetune", "status", id, "--json"]));
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// `vecstream embed --model MODEL` of `texts`: the vectors and the model id it reports.
fn embed(
    sets: &[String],
    dir: &std::path::Path,
    model: &str,
    texts: &[&str],
) -> (Vec<Vec<f64>>, String) {
    let input = dir.join("embed-in.jsonl");
    let output = dir.join("embed-out.jsonl");
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": i.to_string(), "text": t}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let args = [
        "embed",
        "--quiet",
        "--model",
        model,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    let out = vecstream(&with_sets(sets, &args));
    assert!(out.status.success(), "{}", describe(&out));
    let stats: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .expect("stats line"),
    )
    .unwrap();
    let vectors = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    (vectors, stats["model_id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn finetune_resumes_after_a_crash_is_not_worse_and_registers_a_usable_model() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-ft-");
    let logs = tempfile::tempdir().unwrap();
    let store = logs.path().join("model-store");
    let sets = vec![
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
        format!("engine.model_store={}", store.display()),
    ];
    let mut worker = Running::start("worker", 19731, &sets, logs.path());

    // The committed pairs plus one pair naming this run: the job id hashes the dataset, and
    // Temporal remembers earlier runs' jobs.
    let pairs = logs.path().join("pairs.jsonl");
    let mut text =
        std::fs::read_to_string(repo_root().join("examples/finetune/pairs.jsonl")).unwrap();
    text.push_str(
        &serde_json::json!({"query": format!("Run {run} of the fine-tuning test."), "positive": "A pair that makes this run's dataset its own."})
            .to_string(),
    );
    text.push('\n');
    std::fs::write(&pairs, text).unwrap();
    let base_dir = cache_dir().join("models/all-MiniLM-L6-v2");
    let base_s = base_dir.to_string_lossy().into_owned();
    let pairs_s = pairs.to_string_lossy().into_owned();

    // Many small steps (about 15,000), so there is time to kill the worker mid-training;
    // the learning rate is scaled down to match.
    let start = [
        "finetune",
        "start",
        "--base",
        &base_s,
        "--pairs",
        &pairs_s,
        "--epochs",
        "800",
        "--learning-rate",
        "5e-6",
        "--checkpoint-every",
        "200",
        "--heartbeat-secs",
        "5",
        "--review-timeout",
        "900",
    ];
    let wf = cli(&sets, &start).trim().to_owned();
    assert!(wf.starts_with("finetune-all-MiniLM-L6-v2-"), "{wf}");
    let again = vecstream(&with_sets(&sets, &start));
    assert!(!again.status.success(), "second start accepted");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("refused"),
        "{}",
        describe(&again)
    );

    // 1. Kill -9 the worker once a checkpoint past step 400 exists and training goes on.
    let started = Instant::now();
    let killed_after = loop {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no training checkpoint seen\n{}",
            worker.log()
        );
        if let Some(s) = status(&sets, &wf) {
            assert!(
                s["progress"]["training"].is_null(),
                "training finished before the worker could be killed: {s}"
            );
            let hb = &s["training_heartbeat"];
            let (checkpoint, step, total) = (
                hb["checkpoint_step"].as_u64().unwrap_or(0),
                hb["step"].as_u64().unwrap_or(0),
                hb["total_steps"].as_u64().unwrap_or(0),
            );
            if checkpoint >= 400 && step < total {
                eprintln!("killing the worker at step {step}/{total} (checkpoint at {checkpoint})");
                break checkpoint;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    worker.kill();
    worker = Running::start("worker", 19731, &sets, logs.path());

    // 2. Training resumes from its checkpoint, then the evaluation, then review.
    let p = loop {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "not awaiting review\n{}",
            worker.log()
        );
        if let Some(s) = status(&sets, &wf)
            && s["progress"]["awaiting_review"] == true
        {
            break s["progress"].clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let training = &p["training"];
    let resumed = training["resumed_from_step"]
        .as_u64()
        .expect("the retried training resumed from a checkpoint");
    let steps = training["steps"].as_u64().unwrap();
    eprintln!(
        "training resumed at step {resumed} (attempt {}), {steps} steps in all, final loss {}",
        training["attempt"], training["final_loss"]
    );
    assert!(resumed >= killed_after && resumed < steps, "{training}");
    assert!(training["attempt"].as_u64().unwrap() >= 2, "{training}");
    let rows = p["evaluation"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{p}");
    let (base, adapted) = (&rows[0], &rows[1]);
    let recall = |r: &serde_json::Value| r["recall_at_k"].as_f64().unwrap();
    eprintln!(
        "held-out recall@10: base {:.4}, adapted {:.4} (MRR {:.4} -> {:.4}) over {} queries",
        recall(base),
        recall(adapted),
        base["mrr"].as_f64().unwrap(),
        adapted["mrr"].as_f64().unwrap(),
        base["queries"]
    );
    assert!(base["queries"].as_u64().unwrap() >= 200, "{base}");
    assert!(
        recall(adapted) >= recall(base),
        "the adapted model is worse: {p}"
    );

    // 3. Approve: the version is registered in the model store.
    cli(
        &sets,
        &[
            "review",
            "approve",
            &wf,
            "--reviewer",
            "e2e",
            "--comment",
            "recall not worse",
        ],
    );
    let model_id = p["candidate"]["model_id"].as_str().unwrap().to_owned();
    let registered = loop {
        assert!(
            started.elapsed() < Duration::from_secs(960),
            "{}",
            worker.log()
        );
        if let Some(s) = status(&sets, &wf)
            && s["progress"]["phase"] == "registered"
        {
            break s["progress"]["registered"].clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(registered["model_id"], model_id.as_str());
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&sets, &["finetune", "list", "--json"])).unwrap();
    let manifest = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_id"] == model_id.as_str())
        .unwrap_or_else(|| panic!("{model_id} not listed: {listed}"));
    assert_eq!(manifest["reviewer"], "e2e");
    // The manifest names the key that signed the approval.
    assert!(
        manifest["reviewer_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("SHA256:")),
        "{manifest}"
    );
    assert_eq!(manifest["job"], wf.as_str());

    // 4. `vecstream embed --model <new id>`: the adapted vectors, under the new model id.
    let texts = ["Return a new dict with keys from iterable and values equal to value."];
    let (adapted_v, adapted_id) = embed(&sets, logs.path(), &model_id, &texts);
    let (base_v, base_id) = embed(&sets, logs.path(), &base_s, &texts);
    assert_eq!(adapted_id, model_id);
    assert_ne!(base_id, model_id);
    let c = cosine(&adapted_v[0], &base_v[0]);
    assert!(c > 0.5 && c < 0.9999, "adapted vs base cosine {c}");

    // 5. A reindex to the new version: its collection holds the tenant's documents.
    let alias = format!("E2eFt{}", run.replace('-', ""));
    let (_, publisher) = publisher().await;
    for i in 0..5 {
        let d = vecstream_core::Document {
            tenant: run.clone(),
            ..vecstream_e2e::pipeline::doc(
                &format!("{run}-{i}"),
                1,
                &format!("Document {i} of the fine-tuning test: how to read a CSV file."),
            )
        };
        publisher.publish(&d).await.unwrap();
    }
    let reindex = cli(
        &sets,
        &[
            "reindex",
            "start",
            "--alias",
            &alias,
            "--tenant",
            &run,
            "--model-dir",
            &model_id,
            "--range-offsets",
            "5000",
            "--review-timeout",
            "600",
            "--heartbeat-secs",
            "10",
        ],
    )
    .trim()
    .to_owned();
    assert!(reindex.ends_with(&model_id), "{reindex}");
    let collection = collection_name(&model_id, Tenancy::Filter);
    eventually("the reindex awaits review", &[&worker], || async {
        let out = vecstream(&with_sets(
            &sets,
            &["reindex", "status", &reindex, "--json"],
        ));
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (p["awaiting_review"] == true).then_some(())
    })
    .await;
    cli(&sets, &["review", "approve", &reindex, "--reviewer", "e2e"]);
    eventually("the reindex is approved", &[&worker], || async {
        let out = vecstream(&with_sets(
            &sets,
            &["reindex", "status", &reindex, "--json"],
        ));
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (p["phase"] == "approved").then_some(())
    })
    .await;
    let ids = tenant_doc_ids(&cfg.weaviate.url, &collection, &run);
    assert_eq!(ids.len(), 5, "{collection}: {ids:?}");
    let _ = worker.stop();
}
