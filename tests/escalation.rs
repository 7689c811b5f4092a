//! Escalation from the stream to Temporal: a document over `embedder.large_document_tokens`
//! goes to its `LargeDocumentWorkflow` (id `doc-<id>-<version>`) instead of being embedded
//! inline, and still ends up in Weaviate with its lineage; an embedder whose model differs
//! from the one its alias serves starts the reindex to its model by itself.

use std::time::Duration;

use vecstream_core::topics;
use vecstream_e2e::pipeline::{
    TopicReader, chunks_of, eventually, publisher, start_group_at_end, wait_for_stage,
};
use vecstream_e2e::{
    Running, cache_dir, cli_ok, config, describe, require_service, unique, vecstream,
};
use vecstream_engine::{Chunker, Engine, EngineConfig};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};

/// One test at a time: each one's embedder reads every document published while it runs,
/// and a job escalated by the other's embedder would queue behind its own.
static ONE_AT_A_TIME: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

#[tokio::test(flavor = "multi_thread")]
async fn large_documents_and_model_changes_go_to_temporal() {
    let _one = ONE_AT_A_TIME.lock().await;
    require_service("kafka", 9092);
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-escalation-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
        "embedder.group_id=e2e-escalation-embedder".to_owned(),
        "embedder.transactional_id=e2e-escalation-txn".to_owned(),
        "embedder.large_document_tokens=300".to_owned(),
        "sink.group_id=e2e-escalation-sink".to_owned(),
    ];
    // A low escalation threshold would send every long document other runs left on the
    // topic to Temporal: start the group at the end.
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    start_group_at_end("e2e-escalation-embedder", topics::DOCUMENTS);
    let worker = Running::start("worker", 19721, &sets, logs.path());
    let embedder = Running::start("embedder", 19722, &sets, logs.path());
    let sink = Running::start("sink", 19723, &sets, logs.path());

    let engine = Engine::start(EngineConfig::new(
        cache_dir().join("models/all-MiniLM-L6-v2"),
    ))
    .unwrap();
    let model_id = engine.info().model_id.clone();
    let collection = collection_name(&model_id, Tenancy::Filter);
    let chunker = Chunker::new(engine.tokenizer().clone(), None, 32).unwrap();
    let long_body = (0..60)
        .map(|i| format!("Paragraph {i} of the annual report describes harbour traffic, cargo tonnage and the dredging works of quay {i}."))
        .collect::<Vec<_>>()
        .join(" ");
    let expected_chunks = chunker.chunk(&long_body).unwrap().len();
    assert!(expected_chunks >= 4, "{expected_chunks} chunks");
    drop(engine);

    // 1. A large document goes to its workflow; a small one is embedded inline.
    let (registry, publisher) = publisher().await;
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let long_id = format!("{run}-report");
    let short_id = format!("{run}-memo");
    let doc = |id: &str, body: &str| vecstream_core::Document {
        tenant: run.clone(),
        ..vecstream_e2e::pipeline::doc(id, 1, body)
    };
    publisher.publish(&doc(&long_id, &long_body)).await.unwrap();
    publisher
        .publish(&doc(&short_id, "A short memo about the harbour."))
        .await
        .unwrap();
    let events = wait_for_stage(
        &mut lineage,
        &registry,
        &long_id,
        &["embed:escalated", "embed:embedded", "sink:upserted"],
        &[&embedder, &worker, &sink],
    )
    .await;
    // doc-<record key>-<version>-<model hash8>-<content hash12>, the same on both events
    // (the run's tenant makes the key `<tenant>\0<id>`, named by its hash).
    let workflow_of = |stage: &str| {
        let e = events.iter().find(|e| e.vecstream.stage == stage).unwrap();
        e.vecstream.workflow_id.clone().unwrap_or_default()
    };
    let workflow = workflow_of("embed:escalated");
    let escalated = events
        .iter()
        .find(|e| e.vecstream.stage == "embed:escalated")
        .unwrap();
    let content = escalated.vecstream.content_hash.clone().unwrap();
    assert_eq!(escalated.vecstream.tenant.as_deref(), Some(run.as_str()));
    assert_eq!(
        workflow,
        vecstream_core::large_document_workflow_id(&run, &long_id, 1, &model_id, &content),
    );
    assert!(workflow.starts_with("doc-h"), "{workflow}");
    assert_eq!(workflow_of("embed:embedded"), workflow);
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let stored = chunks_of(&weaviate, &collection, &run, &long_id).await;
    assert_eq!(stored.len(), expected_chunks);
    let short = wait_for_stage(
        &mut lineage,
        &registry,
        &short_id,
        &["embed:embedded"],
        &[&embedder],
    )
    .await;
    assert!(
        short
            .iter()
            .filter(|e| e.vecstream.doc_id.as_deref() == Some(short_id.as_str()))
            .all(|e| e.vecstream.workflow_id.is_none())
    );
    let log = embedder.stop();
    assert!(
        log.contains("large document escalated to Temporal"),
        "{log}"
    );

    // 2. An embedder of another model configuration, on an alias that serves the first
    //    model's collection, starts the reindex to its model.
    let alias = format!("E2eEscalation{}", run.replace('-', ""));
    weaviate.set_alias(&alias, &collection).await.unwrap();
    let mut changed = sets.clone();
    changed.push(format!("weaviate.alias={alias}"));
    changed.push("engine.max_seq_length=128".to_owned());
    changed.push("temporal.switch_grace_secs=2".to_owned());
    let other = Running::start("embedder", 19724, &changed, logs.path());
    let new_model = vecstream_engine::model::ModelSpec::load(
        &cache_dir().join("models/all-MiniLM-L6-v2"),
        Some(128),
    )
    .unwrap()
    .0
    .model_id;
    let reindex = format!("reindex-{alias}-{new_model}");
    let mut args: Vec<&str> = Vec::new();
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    eventually("the reindex started by the embedder", &[&other], || async {
        other.log().contains(&reindex).then_some(())
    })
    .await;
    let status = vecstream(&[args.clone(), vec!["reindex", "status", &reindex]].concat());
    assert!(status.status.success(), "{}", describe(&status));
    let cancel = vecstream(&[args, vec!["reindex", "cancel", &reindex]].concat());
    assert!(cancel.status.success(), "{}", describe(&cancel));
    other.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = weaviate.delete_alias(&alias).await;
    sink.stop();
    worker.stop();
}

/// Hostile ids never stop a partition: a large document whose id is 1,100 characters (over
/// Temporal's workflow-id limit when used raw) is escalated under a hashed job id, and a
/// document whose id is 2 MiB is dead-lettered (ids are limited to 4 KiB; its dead letter
/// and lineage name it by its hash); the documents after them in their partition are embedded.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_ids_are_escalated_or_dead_lettered_and_their_partition_goes_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    require_service("kafka", 9092);
    require_service("temporal", 7233);
    let cfg = config();
    let run = unique("e2e-ids-");
    let logs = tempfile::tempdir().unwrap();
    let group = format!("{run}-embedder");
    let sets = vec![
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
        format!("embedder.group_id={group}"),
        format!("embedder.transactional_id={run}-txn"),
        "embedder.large_document_tokens=300".to_owned(),
        "embedder.reindex_on_model_change=false".to_owned(),
    ];
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    start_group_at_end(&group, topics::DOCUMENTS);
    let embedder = Running::start("embedder", 19725, &sets, logs.path());
    let (registry, publisher) = publisher().await;
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let long_body = (0..60)
        .map(|i| format!("Paragraph {i} of the survey counts the herons nesting on island {i}."))
        .collect::<Vec<_>>()
        .join(" ");
    let doc = |id: &str, body: &str| vecstream_core::Document {
        tenant: run.clone(),
        ..vecstream_e2e::pipeline::doc(id, 1, body)
    };
    let long_id = format!("{run}-{}", "l".repeat(1_100));
    let huge_id = format!("{run}-{}", "h".repeat(2 * 1024 * 1024));
    publisher.publish(&doc(&long_id, &long_body)).await.unwrap();
    let at = publisher
        .publish(&doc(&huge_id, "Short body, huge id."))
        .await
        .unwrap();
    // The next documents of the huge id's partition: ids tried until two land there.
    let mut after = Vec::new();
    for i in 0.. {
        let id = format!("{run}-memo-{i}");
        let d = publisher
            .publish(&doc(&id, "A short memo about the herons."))
            .await
            .unwrap();
        if d.partition == at.partition {
            after.push(id);
            if after.len() == 2 {
                break;
            }
        }
    }
    let escalated = wait_for_stage(
        &mut lineage,
        &registry,
        &long_id,
        &["embed:escalated"],
        &[&embedder],
    )
    .await;
    let job = escalated
        .iter()
        .find_map(|e| e.vecstream.workflow_id.clone())
        .unwrap();
    assert!(job.starts_with("doc-h") && job.len() < 80, "{job}");
    // The huge id is named by the hash of its record key.
    let hashed = format!(
        "sha256:{}",
        vecstream_core::key_hash(vecstream_core::record_key(&run, &huge_id).as_bytes())
    );
    let dead = wait_for_stage(
        &mut lineage,
        &registry,
        &hashed,
        &["embed:dead_lettered"],
        &[&embedder],
    )
    .await;
    let error = dead
        .iter()
        .find(|e| e.vecstream.stage == "embed:dead_lettered")
        .and_then(|e| e.vecstream.error.clone())
        .unwrap_or_default();
    assert!(
        error.starts_with("invalid") && error.contains("4096"),
        "{error}"
    );
    for id in &after {
        wait_for_stage(
            &mut lineage,
            &registry,
            id,
            &["embed:embedded"],
            &[&embedder],
        )
        .await;
    }
    let listed = cli_ok(&sets, &["dlq", "list", "--json"]);
    assert!(
        listed.contains(&hashed),
        "the dead letter is keyed by the hash"
    );
    let log = embedder.stop();
    assert!(log.contains("embedder stopped"), "{log}");
}
