//! Temporal down delays only the documents that need it: a large document waits for its
//! `LargeDocumentWorkflow` while Temporal is stopped, its partition held back, and the
//! documents of every other partition are embedded meanwhile; once Temporal is back the
//! large document is escalated and indexed, and its partition catches up. Then a delete of
//! a document whose job is still running asks the job to stop and goes through within
//! seconds, and the document does not come back.
//!
//! Its own test binary: it stops the real Temporal.

use std::time::{Duration, Instant};

use vecstream_core::topics;
use vecstream_e2e::pipeline::{
    TopicReader, chunks_of, metrics_text, publisher, start_group_at_end, wait_for_stage,
};
use vecstream_e2e::{Running, ServiceDown, config, describe, require_service, unique};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};

#[tokio::test(flavor = "multi_thread")]
async fn a_large_document_waits_for_temporal_without_holding_up_other_partitions() {
    require_service("kafka", 9092);
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-toutage-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
        "embedder.group_id=e2e-toutage-embedder".to_owned(),
        "embedder.transactional_id=e2e-toutage-txn".to_owned(),
        "embedder.large_document_tokens=300".to_owned(),
        "sink.group_id=e2e-toutage-sink".to_owned(),
    ];
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    start_group_at_end("e2e-toutage-embedder", topics::DOCUMENTS);
    start_group_at_end("e2e-toutage-sink", topics::VECTORS);
    let embedder = Running::start("embedder", 19741, &sets, logs.path());
    let sink = Running::start("sink", 19742, &sets, logs.path());
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let (registry, publisher) = publisher().await;
    let doc = |id: &str, body: &str| vecstream_core::Document {
        tenant: run.clone(),
        ..vecstream_e2e::pipeline::doc(id, 1, body)
    };

    let restart = ServiceDown::stop("temporal");

    let large = format!("{run}-large");
    let body = (0..60)
        .map(|i| format!("Paragraph {i} of the survey lists the lighthouses, buoys and fog signals of coast {i}."))
        .collect::<Vec<_>>()
        .join(" ");
    let held_partition = publisher
        .publish(&doc(&large, &body))
        .await
        .unwrap()
        .partition;
    let mut elsewhere = Vec::new();
    let mut same = Vec::new();
    for i in 0..24 {
        let id = format!("{run}-small-{i}");
        let at = publisher
            .publish(&doc(&id, "A short note about tides."))
            .await
            .unwrap()
            .partition;
        if at == held_partition {
            same.push(id);
        } else {
            elsewhere.push(id);
        }
    }
    assert!(!elsewhere.is_empty());

    // Temporal down: every other partition's documents are embedded...
    for id in &elsewhere {
        wait_for_stage(
            &mut lineage,
            &registry,
            id,
            &["embed:embedded"],
            &[&embedder],
        )
        .await;
    }
    // ...while the large document waits, visibly.
    let started = Instant::now();
    loop {
        let metrics = metrics_text(19741).await;
        if metrics.contains("vecstream_embedder_waiting_documents 1")
            && metrics.contains("vecstream_embedder_waiting_partitions 1")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no waiting document in the metrics:\n{metrics}\n{}",
            embedder.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        !embedder
            .log()
            .contains("large document escalated to Temporal"),
        "escalated while Temporal was down?\n{}",
        embedder.log()
    );

    // Temporal back: the large document is escalated and indexed, its partition catches up.
    drop(restart);
    let worker = Running::start("worker", 19743, &sets, logs.path());
    wait_for_stage(
        &mut lineage,
        &registry,
        &large,
        &["embed:escalated"],
        &[&embedder, &worker],
    )
    .await;
    for id in &same {
        wait_for_stage(
            &mut lineage,
            &registry,
            id,
            &["embed:embedded"],
            &[&embedder],
        )
        .await;
    }
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let model_dir = vecstream_e2e::cache_dir().join("models/all-MiniLM-L6-v2");
    let model_id = vecstream_engine::model::ModelSpec::load(&model_dir, None)
        .unwrap()
        .0
        .model_id;
    let collection = collection_name(&model_id, Tenancy::Filter);
    vecstream_e2e::pipeline::eventually(
        "the large document in Weaviate",
        &[&worker, &sink],
        || async {
            (!chunks_of(&weaviate, &collection, &run, &large)
                .await
                .is_empty())
            .then_some(())
        },
    )
    .await;
    let metrics = metrics_text(19741).await;
    assert!(
        metrics.contains("vecstream_embedder_waiting_documents 0"),
        "{metrics}"
    );

    // A delete of a document whose job is still running does not wait for the job to end:
    // the job is asked to stop, the delete follows within seconds, nothing comes back.
    let huge = format!("{run}-huge");
    // Long enough (about 900 chunks) that the job is still embedding when the delete's
    // cancellation reaches its heartbeat, on a fast machine too (6,000 entries finished
    // first on one).
    let huge_body = (0..12_000)
        .map(|i| format!("Entry {i} of the harbour log records a vessel, its cargo and the tide."))
        .collect::<Vec<_>>()
        .join(" ");
    publisher.publish(&doc(&huge, &huge_body)).await.unwrap();
    let escalated = wait_for_stage(
        &mut lineage,
        &registry,
        &huge,
        &["embed:escalated"],
        &[&embedder, &worker],
    )
    .await;
    let job = escalated
        .iter()
        .find_map(|e| e.vecstream.workflow_id.clone())
        .expect("the escalation names its job");
    let deleted_at = Instant::now();
    publisher.publish_tombstone(&run, &huge).await.unwrap();
    wait_for_stage(
        &mut lineage,
        &registry,
        &huge,
        &["embed:deleted"],
        &[&embedder, &worker],
    )
    .await;
    assert!(
        deleted_at.elapsed() < Duration::from_secs(60),
        "the delete waited {:?} for the job",
        deleted_at.elapsed()
    );
    // The job was running when the delete came: it was cancelled, not waited for.
    let described =
        std::process::Command::new(vecstream_e2e::cache_dir().join("venv/bin/temporal"))
            .args(["workflow", "describe", "--workflow-id", &job])
            .args(["--address", "127.0.0.1:7233"])
            .output()
            .expect("the temporal CLI runs");
    assert!(
        String::from_utf8_lossy(&described.stdout)
            .to_lowercase()
            .contains("canceled"),
        "{}",
        describe(&described)
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        chunks_of(&weaviate, &collection, &run, &huge)
            .await
            .is_empty(),
        "the deleted document came back:\n{}",
        worker.log()
    );
    embedder.stop();
    sink.stop();
    worker.stop();
}
