//! The streaming pipeline against the real stack: `vecstream run embedder` and
//! `vecstream run sink` as processes, documents published through the real registry, and
//! every effect checked where a user would look: Weaviate objects, the DLQ topic with its
//! headers, the lineage topic, `vecstream search`, and the dedup memory across a restart.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vecstream_core::{Document, LineageEvent, topics};
use vecstream_e2e::{Running, config, describe, require_service, unique, vecstream};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry, wire};
use vecstream_weaviate::{StoredChunk, WeaviateClient, collection_name};

/// Polls `check` until it returns `Some`, or fails naming `what` and the component logs.
async fn eventually<T, F, Fut>(what: &str, logs: &[&Running], mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// For loops that poll readers themselves: fails naming `what` once `started` is too old.
fn give_up_after(started: Instant, what: &str, logs: &[&Running]) {
    if started.elapsed() > Duration::from_secs(120) {
        let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
        panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
    }
}

/// Waits until the lineage of `doc_id` holds an event of `stage`; returns all its events.
async fn wait_for_stage(
    lineage: &mut TopicReader,
    registry: &SchemaRegistry,
    doc_id: &str,
    wanted: &[&str],
    logs: &[&Running],
) -> Vec<LineageEvent> {
    let started = Instant::now();
    loop {
        let events = lineage_of(lineage, registry, doc_id).await;
        let s = stages(&events);
        if wanted.iter().all(|w| s.iter().any(|x| x == w)) {
            return events;
        }
        give_up_after(
            started,
            &format!("lineage {wanted:?} of {doc_id} (have {s:?})"),
            logs,
        );
    }
}

fn doc(id: &str, version: i64, body: &str) -> Document {
    Document {
        id: id.to_owned(),
        tenant: "e2e".into(),
        source: "test://pipeline".into(),
        title: None,
        body: body.to_owned(),
        content_type: "text/plain".into(),
        metadata: BTreeMap::new(),
        version,
        deleted: false,
        produced_at: 1_763_000_000_000 + version,
    }
}

/// Every record of `topic` whose key is one of `keys`, read from the beginning.
struct TopicReader {
    consumer: StreamConsumer,
    seen: Vec<rdkafka::message::OwnedMessage>,
}

impl TopicReader {
    fn new(topic: &str) -> Self {
        let consumer: StreamConsumer = vecstream_kafka::client_config(&config().kafka)
            .set("group.id", unique("e2e-pipeline-reader-"))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Self {
            consumer,
            seen: Vec::new(),
        }
    }

    /// Reads what arrived (for up to a second) and returns all records kept so far.
    async fn poll(&mut self, keys: &[&str]) -> &[rdkafka::message::OwnedMessage] {
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(m)) = tokio::time::timeout_at(until, self.consumer.recv()).await {
            let key = m
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or("");
            if keys.contains(&key) {
                self.seen.push(m.detach());
            }
        }
        &self.seen
    }
}

fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

async fn lineage_of(
    reader: &mut TopicReader,
    registry: &SchemaRegistry,
    doc_id: &str,
) -> Vec<LineageEvent> {
    let reader_schema = vecstream_kafka::schemas::parse(vecstream_kafka::schemas::LINEAGE_EVENT)
        .expect("lineage schema");
    let mut events = Vec::new();
    for m in reader.poll(&[doc_id]).await.to_vec() {
        let (id, payload) = wire::split(m.payload().unwrap()).unwrap();
        let writer = registry.schema_by_id(id).await.unwrap();
        events.push(wire::decode::<LineageEvent>(&writer, Some(&reader_schema), payload).unwrap());
    }
    events
}

fn stages(events: &[LineageEvent]) -> Vec<String> {
    events.iter().map(|e| e.vecstream.stage.clone()).collect()
}

async fn chunks_of(weaviate: &WeaviateClient, collection: &str, doc_id: &str) -> Vec<StoredChunk> {
    match weaviate.doc_chunks(collection, doc_id).await {
        Ok(mut c) => {
            c.sort_by_key(|c| c.chunk_index);
            c
        }
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documents_become_chunks_with_lineage_dlq_fencing_and_dedup() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-pipe-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        format!("embedder.group_id={run}-embedder"),
        format!("embedder.transactional_id={run}-txn"),
        "embedder.chunk_tokens=48".to_owned(),
        "embedder.chunk_overlap=8".to_owned(),
        format!("sink.group_id={run}-sink"),
    ];
    let embedder = Running::start("embedder", 19470, &sets, logs.path());
    let sink = Running::start("sink", 19471, &sets, logs.path());

    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    let publisher = DocumentPublisher::connect(&cfg.kafka, &registry)
        .await
        .unwrap();
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let mut dlq = TopicReader::new(topics::DOCUMENTS_DLQ);

    // The model id (and so the collection) of the model the embedder loads.
    let model_dir = vecstream_e2e::cache_dir().join("models/all-MiniLM-L6-v2");
    let model_id = vecstream_engine::model::ModelSpec::load(&model_dir, None)
        .expect("model in the cache")
        .0
        .model_id;
    let collection = collection_name(&model_id);

    let long_id = format!("{run}-long");
    let short_id = format!("{run}-short");
    let poison_id = format!("{run}-poison");
    let empty_id = format!("{run}-empty");
    let long_body = [
        "Zebra finches learn their songs from their fathers during a sensitive period.",
        "The tutor song is memorised first, and practised for weeks before it crystallises.",
        "Young birds that never hear a tutor sing an abnormal, isolate song all their lives.",
        "Researchers record thousands of renditions to follow how syllables change over time.",
        "Brain areas such as HVC and RA control the timing and the acoustic structure of song.",
        "Deafening an adult slowly degrades the song, which shows that feedback keeps it stable.",
    ]
    .join(" ");
    publisher
        .publish(&doc(&long_id, 1, &long_body))
        .await
        .unwrap();
    publisher
        .publish(&doc(
            &short_id,
            1,
            "A short note about lighthouse keepers and fog horns.",
        ))
        .await
        .unwrap();
    publisher
        .publish(&doc(&empty_id, 1, "  \n "))
        .await
        .unwrap();
    let raw: FutureProducer = vecstream_kafka::client_config(&cfg.kafka).create().unwrap();
    raw.send(
        FutureRecord::to(topics::DOCUMENTS)
            .key(poison_id.as_str())
            .payload("definitely not avro"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();

    // 1. The long document is chunked (48-token windows), embedded and stored.
    let stored = eventually(
        "the long document's chunks in Weaviate",
        &[&embedder, &sink],
        || async {
            let c = chunks_of(&weaviate, &collection, &long_id).await;
            (c.len() >= 3).then_some(c)
        },
    )
    .await;
    assert!(stored.iter().all(|c| c.doc_version == 1));
    let indexes: Vec<i64> = stored.iter().map(|c| c.chunk_index).collect();
    assert_eq!(indexes, (0..stored.len() as i64).collect::<Vec<_>>());
    for c in &stored {
        assert_eq!(
            c.id,
            vecstream_core::chunk_id(&long_id, c.chunk_index as u32, &model_id),
            "deterministic UUIDv5 ids"
        );
    }
    eventually("the short document in Weaviate", &[&sink], || async {
        (chunks_of(&weaviate, &collection, &short_id).await.len() == 1).then_some(())
    })
    .await;

    // 2. Poison records are in the DLQ with their reason and source position.
    let started = Instant::now();
    let keys = [poison_id.as_str(), empty_id.as_str()];
    let dead = loop {
        let seen = dlq.poll(&keys).await;
        if seen.len() >= 2 {
            break seen.to_vec();
        }
        give_up_after(started, "two dead letters", &[&embedder]);
    };
    let reason_of = |key: &str| {
        let m = dead
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("{key} not in the DLQ"));
        (
            header(m, "vecstream.error.reason").unwrap(),
            header(m, "vecstream.error.stage").unwrap(),
            header(m, "vecstream.source.topic").unwrap(),
            header(m, "vecstream.source.offset").is_some(),
            m.payload().map(<[u8]>::to_vec),
        )
    };
    let (reason, stage, source, has_offset, payload) = reason_of(&poison_id);
    assert_eq!((reason.as_str(), stage.as_str()), ("undecodable", "embed"));
    assert_eq!(source, topics::DOCUMENTS);
    assert!(has_offset);
    assert_eq!(
        payload.as_deref(),
        Some(&b"definitely not avro"[..]),
        "original bytes kept"
    );
    assert_eq!(reason_of(&empty_id).0, "empty_body");

    // 3. Lineage tells the story of the long document: embedded, then upserted.
    let events = wait_for_stage(
        &mut lineage,
        &registry,
        &long_id,
        &["embed:embedded", "sink:upserted"],
        &[&embedder, &sink],
    )
    .await;
    let embedded = events
        .iter()
        .find(|e| e.vecstream.stage == "embed:embedded")
        .unwrap();
    assert_eq!(embedded.vecstream.chunk_ids.len(), stored.len());
    assert_eq!(
        embedded.vecstream.model_id.as_deref(),
        Some(model_id.as_str())
    );
    assert_eq!(embedded.vecstream.backend.as_deref(), Some("cpu"));
    assert_eq!(
        embedded.vecstream.source_topic.as_deref(),
        Some(topics::DOCUMENTS)
    );
    let upserted = events
        .iter()
        .find(|e| e.vecstream.stage == "sink:upserted")
        .unwrap();
    assert_eq!(
        upserted.vecstream.target_collection.as_deref(),
        Some(collection.as_str())
    );

    // 4. A shorter new version replaces the old chunks; the stale ones are deleted.
    publisher
        .publish(&doc(&long_id, 2, "Zebra finches copy the song of a tutor."))
        .await
        .unwrap();
    eventually("version 2 with one chunk", &[&embedder, &sink], || async {
        let c = chunks_of(&weaviate, &collection, &long_id).await;
        (c.len() == 1 && c[0].doc_version == 2).then_some(())
    })
    .await;

    // 5. An older version arriving late is fenced: version 2 stays.
    publisher
        .publish(&doc(&long_id, 1, &long_body))
        .await
        .unwrap();
    wait_for_stage(
        &mut lineage,
        &registry,
        &long_id,
        &["embed:stale"],
        &[&embedder],
    )
    .await;
    let c = chunks_of(&weaviate, &collection, &long_id).await;
    assert_eq!((c.len(), c[0].doc_version), (1, 2), "still version 2");

    // 6. A tombstone removes every chunk of the short document.
    publisher.publish_tombstone(&short_id).await.unwrap();
    eventually(
        "the short document deleted",
        &[&embedder, &sink],
        || async {
            chunks_of(&weaviate, &collection, &short_id)
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;

    // 7. Search finds the document by meaning.
    let out = vecstream(&[
        "search",
        "how do songbirds learn to sing",
        "-k",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let hits: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        hits.iter().any(|h| h["doc_id"] == long_id.as_str()),
        "{}",
        describe(&out)
    );

    // 8. The dedup memory survives a restart: the same text under a newer version is
    //    recognised as unchanged by a fresh embedder process.
    let log = embedder.stop();
    assert!(log.contains("embedder stopped"), "{log}");
    let embedder = Running::start("embedder", 19472, &sets, logs.path());
    publisher
        .publish(&doc(&long_id, 3, "Zebra finches copy the song of a tutor."))
        .await
        .unwrap();
    wait_for_stage(
        &mut lineage,
        &registry,
        &long_id,
        &["embed:unchanged"],
        &[&embedder],
    )
    .await;
    let metrics = reqwest_metrics(19472).await;
    assert!(
        metrics.contains("vecstream_embedder_documents_total{outcome=\"unchanged\"}"),
        "{metrics}"
    );

    // 9. Operators see the story and the dead letters from the CLI, and can replay them.
    let out = vecstream(&["lineage", "trace", &long_id]);
    assert!(out.status.success(), "{}", describe(&out));
    let trace = String::from_utf8_lossy(&out.stdout);
    for stage in [
        "embed:embedded",
        "sink:upserted",
        "embed:stale",
        "embed:unchanged",
    ] {
        assert!(trace.contains(stage), "{stage} missing from\n{trace}");
    }
    let out = vecstream(&["dlq", "list", "--json", "--reason", "undecodable"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let poison = listed
        .iter()
        .find(|e| e["key"] == poison_id.as_str())
        .expect("the poison record is listed");
    assert_eq!(poison["stage"], "embed");
    assert_eq!(poison["source_topic"], topics::DOCUMENTS);
    assert!(listed.iter().all(|e| e["reason"] == "undecodable"));

    let group = format!("{run}-replay");
    let out = vecstream(&[
        "dlq",
        "replay",
        "--key",
        &empty_id,
        "--group",
        &group,
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("would replay 1 record(s)"),
        "{}",
        describe(&out)
    );
    let out = vecstream(&["dlq", "replay", "--key", &empty_id, "--group", &group]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replayed 1 record(s)"),
        "{}",
        describe(&out)
    );
    // Still empty, so the embedder dead-letters it again; the group remembers the replay.
    let started = Instant::now();
    loop {
        let again = dlq.poll(&[empty_id.as_str()]).await;
        if again
            .iter()
            .filter(|m| m.key() == Some(empty_id.as_bytes()))
            .count()
            >= 2
        {
            break;
        }
        give_up_after(started, "the replayed record back in the DLQ", &[&embedder]);
    }
    let out = vecstream(&["dlq", "replay", "--key", &empty_id, "--group", &group]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replayed 1 record(s)"),
        "the new dead letter only: {}",
        describe(&out)
    );

    embedder.stop();
    sink.stop();
}

/// The Prometheus text of a component.
async fn reqwest_metrics(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
