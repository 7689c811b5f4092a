//! Stock clients on both ends of the pipeline: documents published by Python's
//! confluent-kafka `AvroSerializer` are indexed, and Python's `AvroDeserializer` reads the
//! lineage events that say so.

use std::process::Command;

use vecstream_e2e::{Running, describe, repo_root, require_service, unique};

#[test]
fn python_avro_clients_produce_documents_and_read_their_lineage() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let python = vecstream_e2e::venv_python();
    let script = repo_root().join("tests/python/stock_clients.py");
    let run = unique("e2e-py-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        "embedder.group_id=e2e-stock-clients-embedder".to_owned(),
        "embedder.transactional_id=e2e-stock-clients-txn".to_owned(),
        "sink.group_id=e2e-stock-clients-sink".to_owned(),
    ];
    let embedder = Running::start("embedder", 19490, &sets, logs.path());
    let sink = Running::start("sink", 19491, &sets, logs.path());
    let ids = format!("{run}-a,{run}-b,{run}-c");

    let out = Command::new(&python)
        .args([
            script.to_str().unwrap(),
            "produce",
            "--ids",
            &ids,
            "--tenant",
            &run,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    let out = Command::new(&python)
        .args([
            script.to_str().unwrap(),
            "lineage",
            "--ids",
            &ids,
            "--tenant",
            &run,
            "--stage",
            "sink:upserted",
            "--timeout",
            "120",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n--- embedder\n{}\n--- sink\n{}",
        describe(&out),
        embedder.log(),
        sink.log()
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in ids.split(',') {
        let stages: Vec<&str> = events
            .iter()
            .filter(|e| e["vecstream"]["doc_id"] == id)
            .map(|e| e["vecstream"]["stage"].as_str().unwrap())
            .collect();
        assert!(stages.contains(&"embed:embedded"), "{id}: {stages:?}");
        assert!(stages.contains(&"sink:upserted"), "{id}: {stages:?}");
    }
    let upserted = events
        .iter()
        .find(|e| e["vecstream"]["stage"] == "sink:upserted")
        .unwrap();
    assert_eq!(upserted["eventType"], "COMPLETE");
    assert_eq!(upserted["job"]["namespace"], "vecstream");
    assert_eq!(
        upserted["vecstream"]["chunk_ids"].as_array().unwrap().len(),
        1
    );

    // The same documents are searchable under their tenant.
    let out = vecstream_e2e::vecstream(&[
        "search",
        "a Python producer with the stock serializer",
        "--tenant",
        &run,
        "--json",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    embedder.stop();
    sink.stop();
}
