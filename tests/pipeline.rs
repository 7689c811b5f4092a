//! The streaming pipeline against the real stack: `vecstream run embedder` and
//! `vecstream run sink` as processes, documents published through the real registry, and
//! every effect checked where a user would look: Weaviate objects, the DLQ topic with its
//! headers, the lineage topic, `vecstream search`, and the dedup memory across a restart.

use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use vecstream_core::{record_key, topics};
use vecstream_e2e::pipeline::{
    TopicReader, chunks_of, eventually, give_up_after, header, metrics_text, wait_for_stage,
};
use vecstream_e2e::{Running, config, describe, require_service, unique, vecstream};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};

#[tokio::test(flavor = "multi_thread")]
async fn documents_become_chunks_with_lineage_dlq_fencing_and_dedup() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-pipe-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        "embedder.group_id=e2e-pipeline-embedder".to_owned(),
        "embedder.transactional_id=e2e-pipeline-txn".to_owned(),
        "embedder.chunk_tokens=48".to_owned(),
        "embedder.chunk_overlap=8".to_owned(),
        "sink.group_id=e2e-pipeline-sink".to_owned(),
    ];
    // The run's own tenant keeps searches clear of documents of earlier runs.
    let doc = |id: &str, version: i64, body: &str| vecstream_core::Document {
        tenant: run.clone(),
        ..vecstream_e2e::pipeline::doc(id, version, body)
    };
    // Only this run's vectors: on a fresh stack the group would otherwise replay every
    // vectors record of the tests before it, among them the other test's (whose refused
    // document it would write back after that test's sink removed it).
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    vecstream_e2e::pipeline::start_group_at_end("e2e-pipeline-sink", topics::VECTORS);
    let embedder = Running::start("embedder", 19470, &sets, logs.path());
    let sink = Running::start("sink", 19471, &sets, logs.path());

    let (registry, publisher) = vecstream_e2e::pipeline::publisher().await;
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let mut dlq = TopicReader::new(topics::DOCUMENTS_DLQ);

    // The model id (and so the collection) of the model the embedder loads.
    let model_dir = vecstream_e2e::cache_dir().join("models/all-MiniLM-L6-v2");
    let model_id = vecstream_engine::model::ModelSpec::load(&model_dir, None)
        .expect("model in the cache")
        .0
        .model_id;
    let collection = collection_name(&model_id, Tenancy::Filter);

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
    // The producer's trace: the embedder and the sink continue it.
    let trace = vecstream_core::TraceParent::new_root();
    let mut vectors = TopicReader::new(topics::VECTORS);
    publisher
        .publish_traced(&doc(&long_id, 1, &long_body), &trace)
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
    // A producer's key that tries terminal escapes: an OSC 52 clipboard write, a colour, a
    // bell and a right-to-left override. Dead-lettered like any poison record; the operator
    // reading `dlq list` must see them spelled out, not obeyed.
    let hostile_key = format!("{run}-esc\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[31mred\u{202e}txt");
    raw.send(
        FutureRecord::to(topics::DOCUMENTS)
            .key(hostile_key.as_str())
            .payload("not avro either"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();

    // 1. The long document is chunked (48-token windows), embedded and stored.
    let stored = eventually(
        "the long document's chunks in Weaviate",
        &[&embedder, &sink],
        || async {
            let c = chunks_of(&weaviate, &collection, &run, &long_id).await;
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
            vecstream_core::chunk_id(&run, &long_id, c.chunk_index as u32, &model_id),
            "deterministic UUIDv5 ids"
        );
    }
    eventually("the short document in Weaviate", &[&sink], || async {
        (chunks_of(&weaviate, &collection, &run, &short_id)
            .await
            .len()
            == 1)
            .then_some(())
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
            // By document id: a dead letter keeps its record's key (`<tenant>\0<id>`).
            .find(|m| {
                let k = std::str::from_utf8(m.key().unwrap_or_default()).unwrap_or_default();
                vecstream_core::split_record_key(k).1 == key
            })
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
    // Dead letters stay on their document's trace too.
    assert!(dead.iter().all(|m| header(m, "traceparent").is_some()));

    // 3. Lineage tells the story of the long document: embedded, then upserted.
    let events = wait_for_stage(
        &mut lineage,
        &registry,
        &long_id,
        &[
            "embed:received",
            "embed:chunked",
            "embed:embedded",
            "sink:upserted",
        ],
        &[&embedder, &sink],
    )
    .await;
    // One trace from the producer to Weaviate: every event names the producer's trace id,
    // and the vectors record carries it on in its `traceparent` header.
    for e in &events {
        assert_eq!(
            e.vecstream.trace_id.as_deref(),
            Some(trace.trace_id_hex().as_str()),
            "{}",
            e.vecstream.stage
        );
    }
    let received = events
        .iter()
        .find(|e| e.vecstream.stage == "embed:received")
        .unwrap();
    let chunked = events
        .iter()
        .find(|e| e.vecstream.stage == "embed:chunked")
        .unwrap();
    assert_eq!(received.event_type, vecstream_core::EventType::Start);
    assert_eq!(chunked.event_type, vecstream_core::EventType::Running);
    assert_eq!(chunked.vecstream.chunk_ids.len(), stored.len());
    let vectors_record = loop {
        if let Some(m) = vectors.poll(&[long_id.as_str()]).await.first() {
            break m.clone();
        }
        give_up_after(
            started,
            "the vectors record of the long document",
            &[&embedder],
        );
    };
    let hop = header(&vectors_record, "traceparent")
        .and_then(|v| vecstream_core::TraceParent::parse(&v))
        .expect("traceparent on the vectors record");
    assert_eq!(hop.trace_id, trace.trace_id);
    assert_ne!(hop.span_id, trace.span_id, "the embedder is its own hop");
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
    assert!(embedded.vecstream.duration_ms.is_some(), "embedding time");
    assert_eq!(
        embedded.vecstream.source_topic.as_deref(),
        Some(topics::DOCUMENTS)
    );
    let upserted = events
        .iter()
        .find(|e| e.vecstream.stage == "sink:upserted")
        .unwrap();
    assert!(upserted.vecstream.duration_ms.is_some(), "Weaviate time");
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
        let c = chunks_of(&weaviate, &collection, &run, &long_id).await;
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
    let c = chunks_of(&weaviate, &collection, &run, &long_id).await;
    assert_eq!((c.len(), c[0].doc_version), (1, 2), "still version 2");

    // 6. A tombstone removes every chunk of the short document.
    publisher.publish_tombstone(&run, &short_id).await.unwrap();
    eventually(
        "the short document deleted",
        &[&embedder, &sink],
        || async {
            chunks_of(&weaviate, &collection, &run, &short_id)
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
        "--tenant",
        &run,
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
    assert!(
        hits.iter().all(|h| h["tenant"] == run.as_str()),
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
    let metrics = metrics_text(19472).await;
    assert!(
        metrics.contains("vecstream_embedder_documents_total{outcome=\"unchanged\"}"),
        "{metrics}"
    );

    // 9. Operators see the story and the dead letters from the CLI, and can replay them.
    // A document is (tenant, id): the run's tenant names it.
    let out = vecstream(&["lineage", "trace", &long_id, "--tenant", &run]);
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
    // `lineage tail` follows the topic; from the beginning it shows the story too.
    let mut tail = std::process::Command::new(vecstream_e2e::vecstream_bin())
        .args([
            "lineage",
            "tail",
            "--doc",
            &long_id,
            "--tenant",
            &run,
            "--from-beginning",
            "--json",
        ])
        .env("VECSTREAM_TELEMETRY_LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut tailed = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            event["vecstream"]["doc_id"],
            long_id.as_str(),
            "--doc filters"
        );
        tailed.push(event["vecstream"]["stage"].as_str().unwrap().to_owned());
        if tailed.iter().any(|s| s == "embed:unchanged") {
            break;
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        tailed.contains(&"embed:embedded".to_owned())
            && tailed.contains(&"embed:unchanged".to_owned()),
        "{tailed:?}"
    );

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
    // The text listing prints the hostile key with its control characters escaped.
    let out = eventually("the hostile key dead-lettered", &[&embedder], || async {
        let out = vecstream(&["dlq", "list", "--reason", "undecodable"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(&format!("{run}-esc")).then_some(text)
    })
    .await;
    let line = out
        .lines()
        .find(|l| l.contains(&format!("{run}-esc")))
        .unwrap();
    assert!(
        !line.contains(['\u{1b}', '\u{7}', '\u{202e}']),
        "raw control characters reached the terminal: {line:?}"
    );
    assert!(
        line.contains("]52;c;cHduZWQ="),
        "the rest is shown as is: {line}"
    );

    let group = format!("{run}-replay");
    let out = vecstream(&[
        "dlq",
        "replay",
        "--key",
        &empty_id,
        "--tenant",
        &run,
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
    let out = vecstream(&[
        "dlq", "replay", "--key", &empty_id, "--tenant", &run, "--group", &group,
    ]);
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
            .filter(|m| m.key() == Some(record_key(&run, &empty_id).as_bytes()))
            .count()
            >= 2
        {
            break;
        }
        give_up_after(started, "the replayed record back in the DLQ", &[&embedder]);
    }
    let out = vecstream(&[
        "dlq", "replay", "--key", &empty_id, "--tenant", &run, "--group", &group,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replayed 1 record(s)"),
        "the new dead letter only: {}",
        describe(&out)
    );

    embedder.stop();
    sink.stop();
}

/// A vectors record Weaviate refuses whole (vectors of the wrong length for the collection)
/// is dead-lettered by the sink as `rejected`, its document does not stay half-written,
/// and the records after it are applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_vectors_record_weaviate_rejects_whole_is_dead_lettered_and_the_sink_goes_on() {
    use vecstream_core::{ChunkVector, DocumentVectors, chunk_id};
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-rejected-");
    let logs = tempfile::tempdir().unwrap();
    let group = "e2e-rejected-sink";
    // Only what this test publishes: the group starts at the topic's end.
    vecstream_e2e::pipeline::start_group_at_end(group, topics::VECTORS);
    let sets = vec![format!("sink.group_id={group}")];
    let sink = Running::start("sink", 19479, &sets, logs.path());

    let model_dir = vecstream_e2e::cache_dir().join("models/all-MiniLM-L6-v2");
    let spec = vecstream_engine::model::ModelSpec::load(&model_dir, None)
        .expect("model in the cache")
        .0;
    let (model_id, dims) = (spec.model_id.clone(), spec.config.hidden_size);
    let registry = vecstream_kafka::SchemaRegistry::new(&cfg.registry).unwrap();
    let schema_id = registry
        .ensure_subject(
            &topics::value_subject(topics::VECTORS),
            vecstream_kafka::schemas::DOCUMENT_VECTORS,
        )
        .await
        .unwrap();
    let schema =
        vecstream_kafka::schemas::parse(vecstream_kafka::schemas::DOCUMENT_VECTORS).unwrap();
    let record = |id: &str, version: i64, len: usize| {
        let chunks = (0..2)
            .map(|i| ChunkVector {
                chunk_id: chunk_id(&run, id, i, &model_id).to_string(),
                index: i as i32,
                text: format!("chunk {i} of {id}"),
                char_start: 0,
                char_end: 5,
                token_count: 3,
                vector: (0..len)
                    .map(|d| ((d + i as usize) % 7) as f32 + 0.5)
                    .collect(),
            })
            .collect();
        let v = DocumentVectors {
            content_hash: format!("hash-{version}"),
            deleted: false,
            chunks,
            ..vecstream_pipeline::document::delete_of(id, &run, version, &model_id)
        };
        vecstream_kafka::wire::encode(schema_id, &schema, &v).unwrap()
    };
    let producer: FutureProducer = vecstream_kafka::client_config(&cfg.kafka).create().unwrap();
    let send = |id: String, payload: Vec<u8>| {
        let producer = producer.clone();
        let key = record_key(&run, &id);
        async move {
            producer
                .send(
                    FutureRecord::to(topics::VECTORS)
                        .key(key.as_str())
                        .payload(payload.as_slice()),
                    Duration::from_secs(30),
                )
                .await
                .unwrap();
        }
    };
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let collection = collection_name(&model_id, Tenancy::Filter);
    let refused = format!("{run}-refused");
    let after = format!("{run}-after");

    // Version 1 is stored; version 2 carries 3-dimensional vectors: refused whole.
    send(refused.clone(), record(&refused, 1, dims)).await;
    eventually("version 1 stored", &[&sink], || async {
        (chunks_of(&weaviate, &collection, &run, &refused)
            .await
            .len()
            == 2)
            .then_some(())
    })
    .await;
    send(refused.clone(), record(&refused, 2, 3)).await;
    send(after.clone(), record(&after, 1, dims)).await;

    eventually("the record after it applied", &[&sink], || async {
        (chunks_of(&weaviate, &collection, &run, &after).await.len() == 2).then_some(())
    })
    .await;
    let key = record_key(&run, &refused);
    let entry = eventually("the refused record in the DLQ", &[&sink], || async {
        let out = vecstream(&["dlq", "list", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["key"] == key.as_str() && e["stage"] == "sink")
    })
    .await;
    assert_eq!(entry["reason"], "rejected", "{entry}");
    assert_eq!(entry["source_topic"], topics::VECTORS, "{entry}");
    assert!(
        entry["message"]
            .as_str()
            .is_some_and(|e| e.contains("2 of 2 chunks")),
        "{entry}"
    );
    // Not half-written: no mix of versions answers searches.
    assert!(
        chunks_of(&weaviate, &collection, &run, &refused)
            .await
            .is_empty()
    );
    sink.stop();
}
