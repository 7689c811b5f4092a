//! Weaviate down, for real: `vecstream status` names it and exits non-zero, and a running
//! sink pauses, backs off and retries without committing, then catches up once Weaviate is
//! back, losing nothing.
//!
//! Its own test binary: it stops the real Weaviate, so nothing may run beside it. Weaviate is
//! restarted afterwards, also when an assertion fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use vecstream_core::{Document, topics};
use vecstream_e2e::{Running, ServiceDown, config, describe, require_service, unique, vecstream};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};

/// Offsets the sink group committed on the vectors topic, summed over partitions.
fn committed_total(group: &str) -> i64 {
    let consumer: BaseConsumer = vecstream_kafka::client_config(&config().kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..config().kafka.partitions as i32 {
        tpl.add_partition(topics::VECTORS, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

fn wait_until(what: &str, logs: &[&Running], mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        if started.elapsed() > Duration::from_secs(120) {
            let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn weaviate_down_is_named_by_status_and_waited_out_by_the_sink() {
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique("e2e-outage-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        "embedder.group_id=e2e-outage-embedder".to_owned(),
        "embedder.transactional_id=e2e-outage-txn".to_owned(),
        "sink.group_id=e2e-outage-sink".to_owned(),
        "sink.max_backoff_ms=1000".to_owned(),
    ];
    let embedder = Running::start("embedder", 19480, &sets, logs.path());
    let sink = Running::start("sink", 19481, &sets, logs.path());
    wait_until("both components connected", &[&embedder, &sink], || {
        embedder.log().contains("embedder connected") && sink.log().contains("sink connected")
    });
    let sink_group = "e2e-outage-sink".to_owned();
    // The new groups first work through what the topics already hold.
    let mut last = -1;
    wait_until("the sink to catch up with the backlog", &[&sink], || {
        std::thread::sleep(Duration::from_secs(2));
        let now = committed_total(&sink_group);
        let settled = now == last && now >= 0;
        last = now;
        settled
    });
    let before = committed_total(&sink_group);

    let _restart = ServiceDown::stop("weaviate");

    let out = vecstream(&["status", "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("down: weaviate"), "{}", describe(&out));
    let weaviate_line = stdout
        .lines()
        .find(|l| l.starts_with("weaviate"))
        .expect("a weaviate line");
    assert!(weaviate_line.contains("DOWN"), "{weaviate_line}");
    for other in ["kafka", "registry", "temporal"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(other))
            .expect("a line per service");
        assert!(line.contains(" up "), "{line}");
    }

    // A document arrives while Weaviate is down.
    let doc_id = format!("{run}-doc");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let registry = SchemaRegistry::new(&cfg.registry).unwrap();
        let publisher = DocumentPublisher::connect(&cfg.kafka, &registry)
            .await
            .unwrap();
        publisher
            .publish(&Document {
                id: doc_id.clone(),
                tenant: "e2e".into(),
                source: "test://outage".into(),
                title: None,
                body: "Written while the vector store was away.".into(),
                content_type: "text/plain".into(),
                metadata: BTreeMap::new(),
                version: 1,
                deleted: false,
                produced_at: 1_763_000_000_000,
            })
            .await
            .unwrap();
    });
    wait_until("the sink to retry with partitions paused", &[&sink], || {
        sink.log().contains("partitions paused, retrying") && sink.log().contains("retry_in")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        committed_total(&sink_group),
        before,
        "nothing is committed while Weaviate is down"
    );

    drop(_restart);
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let model_dir = vecstream_e2e::cache_dir().join("models/all-MiniLM-L6-v2");
    let model_id = vecstream_engine::model::ModelSpec::load(&model_dir, None)
        .unwrap()
        .0
        .model_id;
    let collection = collection_name(&model_id, Tenancy::Filter);
    wait_until(
        "the document in Weaviate after the outage",
        &[&sink],
        || {
            rt.block_on(weaviate.doc_chunks(
                &collection,
                None,
                &vecstream_core::doc_key("e2e", &doc_id),
            ))
            .map(|c| c.len() == 1)
            .unwrap_or(false)
        },
    );
    wait_until("the commit after the outage", &[&sink], || {
        committed_total(&sink_group) > before
    });
    // The outage is visible in the sink's metrics: retries, and the consumer lag gauge.
    let metrics = std::process::Command::new("curl")
        .args(["-sf", "http://127.0.0.1:19481/metrics"])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("vecstream_pipeline_retries_total{component=\"sink\",reason=\"batch\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vecstream_pipeline_consumer_lag{component=\"sink\""),
        "{metrics}"
    );
    let log = sink.stop();
    assert!(!log.contains("component failed"), "{log}");
    embedder.stop();
}
