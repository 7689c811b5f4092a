//! An outage longer than the consumer group's `max.poll.interval.ms` evicts no one: two
//! sinks share a group whose poll interval is 10 s, Weaviate is stopped for 25 s while
//! documents, updates and deletes flow, and afterwards the sinks' lag drains to zero and
//! Weaviate holds exactly the expected chunks. The sinks kept polling (their partitions
//! paused) while they retried, so librdkafka never reports the interval exceeded.
//!
//! Its own test binary: it stops the real Weaviate.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vecstream_core::chunk_id;
use vecstream_e2e::pipeline::{converge_to, doc};
use vecstream_e2e::{Running, ServiceDown, cache_dir, config, require_service, unique};
use vecstream_engine::{Chunker, Engine, EngineConfig};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry};
use vecstream_weaviate::{Tenancy, collection_name};

const DOCS: usize = 300;
const CHUNK_TOKENS: usize = 32;
const OVERLAP: usize = 4;
const MAX_POLL_INTERVAL_MS: u64 = 10_000;
const OUTAGE: Duration = Duration::from_secs(25);

fn body(i: usize, version: i64) -> String {
    format!(
        "Document {i} version {version} is about {} while the vector store is away.",
        ["kafka", "vectors", "lineage", "schemas"][i % 4]
    )
    .repeat(if version == 1 { 1 + i % 3 } else { 1 })
}

/// Records of `topic` a read_committed consumer still finds after `group`'s committed
/// offsets: what the group has left to do (librdkafka's lag gauge counts the transaction
/// marker that ends each partition, so it never reads 0 on a transactional topic).
fn records_after_committed(group: &str, topic: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let kafka = config().kafka;
    let timeout = Duration::from_secs(10);
    let owner: BaseConsumer = vecstream_kafka::client_config(&kafka)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for p in 0..kafka.partitions {
        wanted.add_partition(topic, p);
    }
    let committed = owner.committed_offsets(wanted, timeout).unwrap();
    let reader: BaseConsumer = vecstream_kafka::client_config(&kafka)
        .set("group.id", unique("e2e-outage-lag-"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut from = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        from.add_partition_offset(topic, e.partition(), offset)
            .unwrap();
    }
    reader.assign(&from).unwrap();
    let mut left = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(200)) {
            left += 1;
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sinks_outlive_a_weaviate_outage_longer_than_the_poll_interval() {
    require_service("kafka", 9092);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-outage-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        "embedder.group_id=e2e-outage-embedder".to_owned(),
        "embedder.transactional_id=e2e-outage-txn".to_owned(),
        format!("embedder.chunk_tokens={CHUNK_TOKENS}"),
        format!("embedder.chunk_overlap={OVERLAP}"),
        "sink.group_id=e2e-outage-sink".to_owned(),
        "sink.max_backoff_ms=2000".to_owned(),
        format!("kafka.max_poll_interval_ms={MAX_POLL_INTERVAL_MS}"),
        "kafka.session_timeout_ms=6000".to_owned(),
    ];
    let embedder = Running::start("embedder", 19531, &sets, logs.path());
    let sink_ports = [19532, 19533];
    let sinks: Vec<Running> = sink_ports
        .iter()
        .map(|p| Running::start("sink", *p, &sets, logs.path()))
        .collect();

    let engine = Engine::start(EngineConfig::new(
        cache_dir().join("models/all-MiniLM-L6-v2"),
    ))
    .expect("engine");
    let model_id = engine.info().model_id.clone();
    let chunker = Chunker::new(engine.tokenizer().clone(), Some(CHUNK_TOKENS), OVERLAP).unwrap();
    let id = |i: usize| format!("{run}-{i:04}");
    let updated = |i: usize| i % 10 == 3;
    let deleted = |i: usize| i % 10 == 7;
    let chunks_of = |i: usize, version: i64| -> Vec<String> {
        let n = chunker.chunk(&body(i, version)).unwrap().len();
        (0..n)
            .map(|c| chunk_id(&run, &id(i), c as u32, &model_id).to_string())
            .collect()
    };
    // Before the outage: the first half, version 1. In the end: every document at its last
    // version, the deleted ones gone.
    let before: BTreeSet<String> = (0..DOCS / 2).flat_map(|i| chunks_of(i, 1)).collect();
    let expected: BTreeSet<String> = (0..DOCS)
        .filter(|i| !deleted(*i))
        .flat_map(|i| chunks_of(i, if updated(i) { 2 } else { 1 }))
        .collect();
    drop(engine);

    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    let publisher = DocumentPublisher::connect(&cfg.kafka, &registry)
        .await
        .unwrap();
    let publish = |i: usize, version: i64| {
        let publisher = publisher.clone();
        let d = vecstream_core::Document {
            tenant: run.clone(),
            ..doc(&id(i), version, &body(i, version))
        };
        async move { publisher.publish(&d).await.unwrap() }
    };
    let collection = collection_name(&model_id, Tenancy::Filter);
    let mut all: Vec<&Running> = sinks.iter().collect();
    all.push(&embedder);
    for i in 0..DOCS / 2 {
        publish(i, 1).await;
    }
    // Caught up (the embedder's group first reads the topic's history) before the outage,
    // so that the sinks have work to retry during it.
    converge_to(
        &cfg.weaviate.url,
        &collection,
        &run,
        &before,
        Duration::from_secs(300),
        &all,
    )
    .await;

    let restart = ServiceDown::stop("weaviate");
    let outage = Instant::now();
    for i in DOCS / 2..DOCS {
        publish(i, 1).await;
    }
    for i in (0..DOCS).filter(|i| updated(*i)) {
        publish(i, 2).await;
    }
    for i in (0..DOCS).filter(|i| deleted(*i)) {
        publisher.publish_tombstone(&run, &id(i)).await.unwrap();
    }
    // Both sinks hold a batch they cannot apply; from then on, more than twice the poll
    // interval passes before Weaviate returns.
    let paused = |r: &Running| r.log().contains("partitions paused");
    while !sinks.iter().all(paused) {
        assert!(
            outage.elapsed() < Duration::from_secs(120),
            "the sinks never retried:\n{}",
            sinks
                .iter()
                .map(Running::log)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let both_paused = Instant::now();
    tokio::time::sleep(
        OUTAGE
            .saturating_sub(outage.elapsed())
            .max(Duration::from_millis(2 * MAX_POLL_INTERVAL_MS + 1_000)),
    )
    .await;
    assert!(both_paused.elapsed() > Duration::from_millis(2 * MAX_POLL_INTERVAL_MS));
    drop(restart);

    converge_to(
        &cfg.weaviate.url,
        &collection,
        &run,
        &expected,
        Duration::from_secs(180),
        &all,
    )
    .await;

    // The sinks' lag drains to zero: nothing after their committed offsets.
    let started = Instant::now();
    loop {
        let left = records_after_committed("e2e-outage-sink", vecstream_core::topics::VECTORS);
        if left == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{left} vectors records after the sinks' committed offsets:\n{}",
            sinks
                .iter()
                .map(Running::log)
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    embedder.stop();
    for sink in sinks {
        let log = sink.stop();
        // Neither sink was evicted: it polled while it retried, paused.
        // (librdkafka reports "MaxPollExceeded ... max.poll.interval.ms" to the consumer.)
        let lower = log.to_lowercase();
        assert!(
            !lower.contains("poll interval") && !lower.contains("maxpoll"),
            "a sink left its group during the outage:\n{log}"
        );
        assert!(log.contains("partitions paused"), "{log}");
    }
}
