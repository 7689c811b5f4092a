//! Helpers of the pipeline tests: documents, topic readers, lineage, Weaviate, metrics.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use vecstream_core::{Document, LineageEvent};
use vecstream_kafka::{SchemaRegistry, wire};
use vecstream_weaviate::{StoredChunk, WeaviateClient};

use crate::{Running, config, unique};

/// Polls `check` until it returns `Some`, or fails naming `what` and the component logs.
pub async fn eventually<T, F, Fut>(what: &str, logs: &[&Running], mut check: F) -> T
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
pub fn give_up_after(started: Instant, what: &str, logs: &[&Running]) {
    if started.elapsed() > Duration::from_secs(120) {
        let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
        panic!("timed out waiting for {what}\n{}", logs.join("\n-----\n"));
    }
}

/// Waits until the lineage of `doc_id` holds an event of `stage`; returns all its events.
pub async fn wait_for_stage(
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

pub fn doc(id: &str, version: i64, body: &str) -> Document {
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

/// The records of `topic` from the moment it was made; `poll` answers those of some keys.
#[allow(missing_debug_implementations)]
pub struct TopicReader {
    consumer: StreamConsumer,
    seen: Vec<rdkafka::message::OwnedMessage>,
}

impl TopicReader {
    /// Reads `topic` from its end at this moment: records written from now on.
    pub fn new(topic: &str) -> Self {
        let consumer: StreamConsumer = vecstream_kafka::client_config(&config().kafka)
            .set("group.id", unique("e2e-pipeline-reader-"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        consumer.assign(&end_offsets(&consumer, topic)).unwrap();
        Self {
            consumer,
            seen: Vec::new(),
        }
    }

    /// Reads what arrived (for up to a second), keeping every record, and returns those read
    /// so far whose record key names one of the document ids `keys` (of any tenant: a key is
    /// `<tenant>\0<id>`, or the bare id for the default tenant). Records of other keys stay
    /// for later polls: one reader serves several documents.
    pub async fn poll(&mut self, keys: &[&str]) -> Vec<rdkafka::message::OwnedMessage> {
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(m)) = tokio::time::timeout_at(until, self.consumer.recv()).await {
            self.seen.push(m.detach());
        }
        self.seen
            .iter()
            .filter(|m| {
                let key = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or("");
                let (_, doc_id) = vecstream_core::split_record_key(key);
                keys.contains(&key) || keys.contains(&doc_id)
            })
            .cloned()
            .collect()
    }
}

pub fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub async fn lineage_of(
    reader: &mut TopicReader,
    registry: &SchemaRegistry,
    doc_id: &str,
) -> Vec<LineageEvent> {
    lineage_of_keys(reader, registry, &[doc_id]).await
}

/// The lineage events of several documents, after one poll.
pub async fn lineage_of_keys(
    reader: &mut TopicReader,
    registry: &SchemaRegistry,
    doc_ids: &[&str],
) -> Vec<LineageEvent> {
    let reader_schema = vecstream_kafka::schemas::parse(vecstream_kafka::schemas::LINEAGE_EVENT)
        .expect("lineage schema");
    let mut events = Vec::new();
    for m in reader.poll(doc_ids).await {
        let (id, payload) = wire::split(m.payload().unwrap()).unwrap();
        let writer = registry.schema_by_id(id).await.unwrap();
        events.push(wire::decode::<LineageEvent>(&writer, Some(&reader_schema), payload).unwrap());
    }
    events
}

pub fn stages(events: &[LineageEvent]) -> Vec<String> {
    events.iter().map(|e| e.vecstream.stage.clone()).collect()
}

/// The stored chunks of `tenant`'s document `doc_id` (a collection without multi-tenancy).
pub async fn chunks_of(
    weaviate: &WeaviateClient,
    collection: &str,
    tenant: &str,
    doc_id: &str,
) -> Vec<StoredChunk> {
    let key = vecstream_core::doc_key(tenant, doc_id);
    match weaviate.doc_chunks(collection, None, &key).await {
        Ok(mut c) => {
            c.sort_by_key(|c| c.chunk_index);
            c
        }
        Err(_) => Vec::new(),
    }
}

/// The Prometheus text of a component.
pub async fn metrics_text(port: u16) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Rows of a `Get` GraphQL query (through curl: the test crate has no HTTP client); `None`
/// while Weaviate does not answer.
pub fn graphql_rows(base: &str, query: String) -> Option<Vec<serde_json::Value>> {
    let body = serde_json::json!({ "query": query });
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            &format!("{base}/v1/graphql"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.pointer("/data/Get")?
        .as_object()?
        .values()
        .next()?
        .as_array()
        .cloned()
}

/// `fields` of the chunk objects of `tenant` in `collection` (at most 10,000: Weaviate's
/// default query maximum).
fn tenant_rows(
    base: &str,
    collection: &str,
    tenant: &str,
    fields: &str,
) -> Option<Vec<serde_json::Value>> {
    graphql_rows(
        base,
        format!(
            "{{ Get {{ {collection}(where: {{path: [\"tenant\"], operator: Equal, valueText: \"{tenant}\"}}, limit: 10000) {{ {fields} }} }} }}"
        ),
    )
}

/// Ids of the chunk objects of `tenant` in `collection`; `None` while Weaviate does not
/// answer.
pub fn tenant_object_ids(
    base: &str,
    collection: &str,
    tenant: &str,
) -> Option<std::collections::BTreeSet<String>> {
    let rows = tenant_rows(base, collection, tenant, "_additional { id }")?;
    Some(
        rows.iter()
            .filter_map(|r| r.pointer("/_additional/id")?.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Document ids of the chunk objects of `tenant` in `collection` (empty when none or when
/// Weaviate does not answer).
pub fn tenant_doc_ids(
    base: &str,
    collection: &str,
    tenant: &str,
) -> std::collections::BTreeSet<String> {
    tenant_rows(base, collection, tenant, "doc_id")
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["doc_id"].as_str().map(str::to_owned))
        .collect()
}

/// Document id → highest stored version of the chunk objects of `tenant` in `collection`
/// (empty when none or when Weaviate does not answer).
pub fn tenant_doc_versions(base: &str, collection: &str, tenant: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for r in tenant_rows(base, collection, tenant, "doc_id doc_version").unwrap_or_default() {
        // Stored as exact decimal text.
        let version = r["doc_version"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok());
        if let (Some(id), Some(v)) = (r["doc_id"].as_str(), version) {
            let e = out.entry(id.to_owned()).or_insert(v);
            *e = (*e).max(v);
        }
    }
    out
}

/// The registry, with the topics created, and a document publisher.
pub async fn publisher() -> (
    vecstream_kafka::SchemaRegistry,
    vecstream_kafka::DocumentPublisher,
) {
    let cfg = config();
    let registry = vecstream_kafka::SchemaRegistry::new(&cfg.registry).unwrap();
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    let publisher = vecstream_kafka::DocumentPublisher::connect(&cfg.kafka, &registry)
        .await
        .unwrap();
    (registry, publisher)
}

/// Waits until the chunk objects of `tenant` are exactly `expected`; fails with what is
/// missing and what is extra (stale or duplicate) otherwise.
pub async fn converge_to(
    base: &str,
    collection: &str,
    tenant: &str,
    expected: &std::collections::BTreeSet<String>,
    within: Duration,
    logs: &[&Running],
) {
    let started = Instant::now();
    let mut last = std::collections::BTreeSet::new();
    while started.elapsed() < within {
        if let Some(ids) = tenant_object_ids(base, collection, tenant) {
            last = ids;
            if &last == expected {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let missing: Vec<_> = expected.difference(&last).take(5).collect();
    let extra: Vec<_> = last.difference(expected).take(5).collect();
    let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
    panic!(
        "{} objects, {} expected; missing e.g. {missing:?}; extra (stale/duplicate) e.g. {extra:?}\n{}",
        last.len(),
        expected.len(),
        logs.join("\n-----\n")
    );
}

/// The value of one sample (`name{labels}` exactly as exposed) in Prometheus text; 0 when
/// the series does not exist yet.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == series)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// Commits `group`'s offsets on `topic` at the partitions' current end, so a component of
/// that group starts with what is published from now on (not the backlog other runs left).
pub fn start_group_at_end(group: &str, topic: &str) {
    use rdkafka::consumer::{BaseConsumer, CommitMode};
    let consumer: BaseConsumer = vecstream_kafka::client_config(&config().kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    // A member of an earlier run (killed) stays in the group until its session times out,
    // and the broker refuses a commit from outside the group meanwhile.
    let started = Instant::now();
    while let Err(e) = consumer.commit(&end_offsets(&consumer, topic), CommitMode::Sync) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "starting {group} at the end of {topic}: {e}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Every partition of `topic` at its end offset now. A topic created a moment ago has no
/// leaders yet (NotLeaderForPartition): ask again for up to a minute.
fn end_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
) -> rdkafka::TopicPartitionList {
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    loop {
        let attempt = || -> Result<rdkafka::TopicPartitionList, rdkafka::error::KafkaError> {
            let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
            let mut tpl = rdkafka::TopicPartitionList::new();
            for t in metadata.topics() {
                for p in t.partitions() {
                    let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                    tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(high))?;
                }
            }
            Ok(tpl)
        };
        match attempt() {
            Ok(tpl) => return tpl,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("end offsets of {topic}: {e}; asking again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("end offsets of {topic}: {e}"),
        }
    }
}
