//! The `vecstream` binary against the real stack: status, produce, and a stock client
//! (Python confluent-kafka `AvroDeserializer`) reading what produce wrote.

use std::process::Command;

use vecstream_e2e::{describe, repo_root, require_service, unique, vecstream};

#[test]
fn status_reports_all_four_services_healthy() {
    let out = vecstream(&["status", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let services: Vec<(&str, bool)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["service"].as_str().unwrap(),
                c["healthy"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("kafka", true),
            ("registry", true),
            ("temporal", true),
            ("weaviate", true)
        ],
        "{}",
        describe(&out)
    );
}

#[test]
fn produced_directory_is_readable_by_python_avro_deserializer() {
    require_service("kafka", 9092);
    let root = tempfile::tempdir().unwrap();
    let run = unique("e2e-dir-");
    let dir = root.path().join(&run);
    std::fs::create_dir_all(dir.join("guides")).unwrap();
    std::fs::write(
        dir.join("guides/intro.md"),
        "# Getting started\nvecstream turns documents into vectors.\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "Plain notes with ünïcödé.").unwrap();

    let out = vecstream(&[
        "produce",
        "--input",
        root.path().to_str().unwrap(),
        "--tenant",
        "acme",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published 2 document(s)"),
        "{}",
        describe(&out)
    );

    let ids = [format!("{run}/guides/intro.md"), format!("{run}/notes.txt")];
    let python = vecstream_e2e::venv_python();
    let out = Command::new(python)
        .arg(repo_root().join("tests/python/read_documents.py"))
        .args([
            "--ids",
            &ids.join(","),
            "--tenant",
            "acme",
            "--timeout",
            "90",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{}", describe(&out));
    let intro = docs
        .iter()
        .find(|d| d["id"] == ids[0].as_str())
        .expect("intro decoded");
    assert_eq!(intro["title"], "Getting started");
    assert_eq!(intro["content_type"], "text/markdown");
    assert_eq!(intro["tenant"], "acme");
    assert_eq!(
        intro["metadata"]["path"],
        format!("{run}/guides/intro.md").as_str()
    );
    let notes = docs
        .iter()
        .find(|d| d["id"] == ids[1].as_str())
        .expect("notes decoded");
    assert_eq!(notes["body"], "Plain notes with ünïcödé.");
    assert_eq!(notes["deleted"], false);
}

#[test]
fn invalid_jsonl_publishes_nothing_unless_asked() {
    require_service("kafka", 9092);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.jsonl");
    let id = unique("e2e-jsonl-");
    std::fs::write(
        &file,
        format!("{{\"id\":\"{id}\",\"body\":\"fine\"}}\n{{\"id\":\"{id}-2\",\"body\":\"\"}}\n"),
    )
    .unwrap();
    let out = vecstream(&["produce", "--input", file.to_str().unwrap(), "--quiet"]);
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docs.jsonl:2: empty body"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr.contains("nothing was published"),
        "{}",
        describe(&out)
    );

    let out = vecstream(&[
        "produce",
        "--input",
        file.to_str().unwrap(),
        "--quiet",
        "--skip-invalid",
        "--rate",
        "50",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("published 1 document(s)"),
        "{}",
        describe(&out)
    );
}

#[test]
fn finetune_refuses_bad_pairs_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"query\": \"q\", \"positive\": \"p\"}\n{\"query\": \"q2\"}\n",
    )
    .unwrap();
    let out = vecstream(&[
        "finetune",
        "start",
        "--base",
        vecstream_e2e::cache_dir()
            .join("models/all-MiniLM-L6-v2")
            .to_str()
            .unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("positive"),
        "{}",
        describe(&out)
    );
    // An unknown base model is named, with what the store holds.
    let out = vecstream(&[
        "finetune",
        "start",
        "--base",
        "no-such-model",
        "--pairs",
        pairs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-model"),
        "{}",
        describe(&out)
    );
}

#[test]
fn job_commands_document_their_flags_and_reject_bad_input() {
    for (cmd, flags) in [
        (
            vec!["reindex", "start"],
            vec![
                "--model-dir",
                "--max-seq-length",
                "--eval-suite",
                "--review-timeout",
                "--tenant",
            ],
        ),
        (vec!["reindex", "status"], vec!["--watch", "--json"]),
        (
            vec!["review", "approve"],
            vec!["--key", "--reviewer", "--comment", "--wait-secs"],
        ),
        (
            vec!["review", "sign"],
            vec!["--decision", "--review-id", "--key", "--comment"],
        ),
        (vec!["review", "keygen"], vec!["--name", "--out"]),
        (
            vec!["finetune", "start"],
            vec![
                "--base",
                "--pairs",
                "--epochs",
                "--batch-size",
                "--learning-rate",
                "--held-out",
                "--checkpoint-every",
                "--review-timeout",
            ],
        ),
        (vec!["finetune", "status"], vec!["--watch", "--json"]),
        (vec!["finetune", "list"], vec!["--json"]),
        (
            vec!["eval", "run"],
            vec!["--suite", "--collection", "--min-recall"],
        ),
    ] {
        let help = vecstream(&[cmd.clone(), vec!["--help"]].concat());
        assert!(help.status.success(), "{cmd:?} --help");
        let text = String::from_utf8_lossy(&help.stdout);
        for f in flags {
            assert!(text.contains(f), "{cmd:?} --help lacks {f}");
        }
    }
    // A review is signed: without a key the command says how to make one; a key file
    // others can read is refused; the name checked with --reviewer must be the key's.
    let out = Command::new(vecstream_e2e::vecstream_bin())
        .args(["review", "approve", "reindex-x"])
        .env_remove("VECSTREAM_REVIEW_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("vecstream review keygen"),
        "{}",
        describe(&out)
    );
    let keys = tempfile::tempdir().unwrap();
    let exposed = keys.path().join("exposed.key");
    let exposed_s = exposed.to_string_lossy().into_owned();
    let made = vecstream(&["review", "keygen", "--name", "ana", "--out", &exposed_s]);
    assert!(made.status.success(), "{}", describe(&made));
    assert!(String::from_utf8_lossy(&made.stdout).starts_with("ed25519:"));
    let again = vecstream(&["review", "keygen", "--name", "ana", "--out", &exposed_s]);
    assert!(!again.status.success(), "a key file is never overwritten");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = vecstream(&["review", "approve", "reindex-x", "--key", &exposed_s]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        describe(&out)
    );
    let out = vecstream(&["review", "approve", "reindex-x", "--reviewer", "ana"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("e2e's"),
        "{}",
        describe(&out)
    );
    // No backend runs bf16: refused before anything starts, not by a failing scan later.
    let out = vecstream(&[
        "reindex",
        "start",
        "--model-dir",
        "/nonexistent/model",
        "--precision",
        "bf16",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bf16 has no kernel"),
        "{}",
        describe(&out)
    );
    // A review of a job Temporal does not know names it and fails (the real server).
    let out = vecstream(&["review", "approve", "no-such-job", "--reviewer", "e2e"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-job"),
        "{}",
        describe(&out)
    );
    let out = vecstream(&["reindex", "start", "--model-dir", "/nonexistent/model"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model"),
        "{}",
        describe(&out)
    );
}

#[test]
fn config_show_never_prints_secrets() {
    let out = Command::new(vecstream_e2e::vecstream_bin())
        .args(["config", "show"])
        .env("VECSTREAM_KAFKA_SASL_PASSWORD", "p4ssw0rd-e2e")
        .env("VECSTREAM_WEAVIATE_API_KEY", "k3y-e2e")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("p4ssw0rd-e2e") && !text.contains("k3y-e2e"),
        "{text}"
    );
    assert!(text.contains("sasl_password = \"<redacted>\""), "{text}");
    // Credentials bound for plaintext endpoints are named, once each, at start.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("weaviate.api_key is set but weaviate.url is http://")
            .count(),
        1,
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("vecstream.toml");
    std::fs::write(&bad, "[kafka]\nbrokerz = \"x\"\n").unwrap();
    let out = vecstream(&["--config", bad.to_str().unwrap(), "config", "show"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown config key `kafka.brokerz`"),
        "{}",
        describe(&out)
    );
}

#[test]
fn embed_writes_vectors_in_input_order_and_one_stats_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("texts.jsonl");
    let output = dir.path().join("vectors.jsonl");
    let long = "word ".repeat(400);
    std::fs::write(
        &input,
        format!(
            "{{\"id\": \"b\", \"text\": \"second comes first\"}}\n\n{{\"id\": 7, \"text\": \"{long}\"}}\n{{\"id\": \"a\", \"text\": \"\"}}\n"
        ),
    )
    .unwrap();
    let out = vecstream(&[
        "embed",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--quiet",
        "--threads",
        "1",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<String> = lines.iter().map(|l| l["id"].to_string()).collect();
    assert_eq!(ids, ["\"b\"", "7", "\"a\""]);
    for l in &lines {
        let v = l["vector"].as_array().unwrap();
        assert_eq!(v.len(), 384);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(stats["texts"], 3);
    assert_eq!(
        stats["truncated"], 1,
        "the 400-word text is over 256 tokens"
    );
    assert_eq!(stats["backend"], "cpu");
    assert_eq!(stats["precision"], "fp32");
    assert!(stats["tokens"].as_u64().unwrap() >= 256 + 2 + 4);
    assert!(
        stats["model_id"]
            .as_str()
            .unwrap()
            .starts_with("all-MiniLM-L6-v2-")
    );
    assert!(stats["tokens_per_s"].as_f64().unwrap() > 0.0);

    // A malformed line is an error naming the file and line; nothing is written.
    std::fs::write(&input, "{\"id\": \"x\", \"text\": \"ok\"}\n{\"text\": 3}\n").unwrap();
    let out = vecstream(&["embed", "--input", input.to_str().unwrap(), "--quiet"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("texts.jsonl:2"),
        "{}",
        describe(&out)
    );
    assert!(out.stdout.is_empty());
}
