//! The exporter: reads `docs.lineage.v1`, converts each event ([`crate::convert`]) and
//! hands it to the configured transports.
//!
//! - **HTTP** (`openlineage.http_url`): a bounded buffer in front of a sender that POSTs up
//!   to `http_batch_size` events at once, each retried with backoff; when the endpoint is
//!   down or slow, the buffer fills and further events are dropped, counted
//!   (`vecstream_openlineage_dropped_total`) and logged; nothing upstream ever waits.
//! - **Kafka** (`openlineage.kafka_topic`): JSON, key = the run id (a run's events stay in
//!   order), acknowledged before the lineage record's offset is stored.
//!
//! [`Mode::Follow`] runs in its own consumer group (`openlineage.group_id`; a new group
//! starts at the topic's beginning), storing each record's offset once the transports took
//! it. [`Mode::Backfill`] re-reads the topic from its beginning to where it ends now and
//! waits for buffer room instead of dropping: what `vecstream lineage export
//! --from-beginning` runs to (re-)send history.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, watch};
use vecstream_config::{Config, OpenLineageSettings};
use vecstream_core::{LineageEvent, topics};
use vecstream_kafka::{SchemaRegistry, scan, schemas, wire};

use crate::{OpenLineageError, OpenLineageMetrics, OpenLineageModel};

/// How the exporter reads the lineage topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Follow the topic in the exporter's consumer group until stopped.
    Follow,
    /// Read the topic from its beginning to its current end, then return. With `since_ms`,
    /// only events from that time on are sent.
    Backfill { since_ms: Option<i64> },
}

/// What an export did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub read: u64,
    pub sent_http: u64,
    pub sent_kafka: u64,
    pub dropped: u64,
    pub undecodable: u64,
}

/// The OpenLineage exporter of one process.
#[derive(Debug)]
pub struct Exporter {
    config: Config,
    model: OpenLineageModel,
    metrics: OpenLineageMetrics,
    registry: SchemaRegistry,
    reader: apache_avro::Schema,
}

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Lineage records handled together (their Kafka sends in flight at once).
const BATCH_RECORDS: usize = 500;
/// How long a stopping exporter keeps sending what its HTTP buffer holds.
const FLUSH_GRACE: Duration = Duration::from_secs(10);

impl Exporter {
    /// An exporter for `config.openlineage`; refuses a configuration without transports.
    pub fn new(config: &Config, metrics: OpenLineageMetrics) -> Result<Self, OpenLineageError> {
        if !config.openlineage.enabled() {
            return Err(OpenLineageError::Config(
                "no transport: set openlineage.http_url, openlineage.kafka_topic or both".into(),
            ));
        }
        Ok(Self {
            config: config.clone(),
            model: OpenLineageModel::new(&config.openlineage.namespace),
            metrics,
            registry: SchemaRegistry::new(&config.registry)?,
            reader: schemas::parse(schemas::LINEAGE_EVENT)?,
        })
    }

    /// Exports until `stop` turns true ([`Mode::Follow`]) or the topic's current end
    /// ([`Mode::Backfill`]); `progress(done, total)` is called as records are handled
    /// (backfill only: a followed topic has no end).
    pub async fn run(
        &self,
        mode: Mode,
        mut stop: watch::Receiver<bool>,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<ExportReport, OpenLineageError> {
        let ol = &self.config.openlineage;
        let kafka = match ol.kafka_topic.as_str() {
            "" => None,
            topic => Some(KafkaTransport::start(&self.config, topic).await?),
        };
        let http = match ol.http_url.as_str() {
            "" => None,
            _ => Some(HttpTransport::start(ol, self.metrics.clone())?),
        };
        let out = Transports {
            http,
            kafka,
            metrics: &self.metrics,
            wait_for_room: matches!(mode, Mode::Backfill { .. }),
        };
        tracing::info!(
            http = %ol.http_url,
            kafka_topic = %ol.kafka_topic,
            mode = ?mode,
            "openlineage export running"
        );
        let mut report = ExportReport::default();
        match mode {
            Mode::Follow => self.follow(&out, &mut stop, &mut report).await?,
            Mode::Backfill { since_ms } => {
                self.backfill(&out, since_ms, &mut stop, progress, &mut report)
                    .await?
            }
        }
        // A back-fill sends everything it read (unless stopped); a follower that stops
        // sends what its buffer holds for a grace period.
        let wait_for_all = matches!(mode, Mode::Backfill { .. }).then_some(&mut stop);
        let (sent_http, dropped) = match out.http {
            Some(h) => h.close(FLUSH_GRACE, wait_for_all).await,
            None => (0, 0),
        };
        report.sent_http = sent_http;
        report.dropped += dropped;
        if let Some(k) = &out.kafka {
            report.sent_kafka = k.sent.load(std::sync::atomic::Ordering::Relaxed);
        }
        Ok(report)
    }

    async fn follow(
        &self,
        out: &Transports<'_>,
        stop: &mut watch::Receiver<bool>,
        report: &mut ExportReport,
    ) -> Result<(), OpenLineageError> {
        let consumer: StreamConsumer = vecstream_kafka::client_config(&self.config.kafka)
            .set("group.id", &self.config.openlineage.group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            // Offsets are stored once the transports took the event.
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .create()?;
        consumer.subscribe(&[topics::LINEAGE])?;
        loop {
            let first = tokio::select! {
                m = consumer.recv() => m,
                _ = stop.wait_for(|s| *s) => break,
            };
            let first = match first {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "openlineage export: kafka read failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // What is already there joins the batch: the Kafka transport's sends of a batch
            // are in flight together instead of one round trip each.
            let mut batch = vec![first];
            while batch.len() < BATCH_RECORDS {
                match tokio::time::timeout(Duration::from_millis(2), consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m),
                    _ => break,
                }
            }
            let payloads: Vec<&[u8]> = batch.iter().filter_map(|m| m.payload()).collect();
            self.handle(out, &payloads, None, stop, report).await;
            if *stop.borrow() {
                // Not handled whole: read again after a restart.
                break;
            }
            for m in &batch {
                consumer.store_offset_from_message(m)?;
            }
        }
        let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
        Ok(())
    }

    async fn backfill(
        &self,
        out: &Transports<'_>,
        since_ms: Option<i64>,
        stop: &mut watch::Receiver<bool>,
        progress: &(dyn Fn(u64, u64) + Sync),
        report: &mut ExportReport,
    ) -> Result<(), OpenLineageError> {
        let kafka = self.config.kafka.clone();
        let group = format!("vecstream-openlineage-backfill-{}", std::process::id());
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        let (total_tx, total_rx) = tokio::sync::oneshot::channel::<u64>();
        let reader = tokio::task::spawn_blocking(move || {
            let consumer = scan::scan_consumer(&kafka, &group)?;
            let timeout = Duration::from_millis(kafka.request_timeout_ms.max(30_000));
            // --since seeks by the records' timestamps: a year of lineage is not read for
            // the last hour (the events' own times still filter, to the millisecond).
            let from = since_ms.map_or(scan::ScanFrom::Beginning, scan::ScanFrom::Time);
            let ranges = scan::scan_ranges(&consumer, topics::LINEAGE, from, timeout)?;
            let _ = total_tx.send(ranges.iter().map(|(_, lo, hi)| (hi - lo) as u64).sum());
            scan::scan_with(&consumer, topics::LINEAGE, from, timeout, |m| {
                // A closed channel means the export stopped: the rest is not read.
                let _ = tx.blocking_send(m.payload().map(<[u8]>::to_vec).unwrap_or_default());
            })
        });
        let total = total_rx.await.unwrap_or(0);
        let mut done = 0u64;
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        while rx.recv_many(&mut batch, BATCH_RECORDS).await > 0 {
            done += batch.len() as u64;
            let payloads: Vec<&[u8]> = batch
                .iter()
                .filter(|p| !p.is_empty())
                .map(Vec::as_slice)
                .collect();
            self.handle(out, &payloads, since_ms, stop, report).await;
            batch.clear();
            progress(done, total);
            if *stop.borrow() {
                break;
            }
        }
        drop(rx);
        reader
            .await
            .map_err(|e| OpenLineageError::Config(format!("the lineage scan failed: {e}")))??;
        Ok(())
    }

    /// Decodes, converts and hands lineage records to the transports.
    async fn handle(
        &self,
        out: &Transports<'_>,
        payloads: &[&[u8]],
        since_ms: Option<i64>,
        stop: &watch::Receiver<bool>,
        report: &mut ExportReport,
    ) {
        let mut converted = Vec::with_capacity(payloads.len());
        for payload in payloads {
            self.metrics.read.inc();
            report.read += 1;
            let event = match self.decode(payload).await {
                Ok(e) => e,
                Err(message) => {
                    self.metrics.undecodable.inc();
                    report.undecodable += 1;
                    tracing::warn!(%message, "openlineage export skips an undecodable lineage record");
                    continue;
                }
            };
            if since_ms.is_some_and(|t| event.event_time < t) {
                continue;
            }
            let run_event = self.model.run_event(&event);
            let run_id = run_event["run"]["runId"].as_str().unwrap_or("").to_owned();
            match serde_json::to_vec(&run_event) {
                Ok(body) => converted.push((run_id, body)),
                Err(e) => tracing::warn!(error = %e, "openlineage event does not serialise"),
            }
        }
        if let Some(k) = &out.kafka {
            k.send_all(&converted, stop, out.metrics).await;
        }
        if let Some(h) = &out.http {
            for (_, body) in converted {
                let dropped = if out.wait_for_room {
                    h.send(body).await
                } else {
                    h.offer(body)
                };
                report.dropped += u64::from(dropped);
            }
        }
    }

    async fn decode(&self, payload: &[u8]) -> Result<LineageEvent, String> {
        let (id, datum) = wire::split(payload).map_err(|e| e.to_string())?;
        let writer = self
            .registry
            .schema_by_id(id)
            .await
            .map_err(|e| e.to_string())?;
        wire::decode(&writer, Some(&self.reader), datum).map_err(|e| e.to_string())
    }
}

struct Transports<'a> {
    http: Option<HttpTransport>,
    kafka: Option<KafkaTransport>,
    metrics: &'a OpenLineageMetrics,
    wait_for_room: bool,
}

/// The Kafka transport: JSON events on a topic of their own, created if missing.
struct KafkaTransport {
    producer: FutureProducer,
    topic: String,
    sent: std::sync::atomic::AtomicU64,
}

impl KafkaTransport {
    async fn start(config: &Config, topic: &str) -> Result<Self, OpenLineageError> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            vecstream_kafka::client_config(&config.kafka).create()?;
        let spec = NewTopic::new(
            topic,
            config.kafka.partitions,
            TopicReplication::Fixed(config.kafka.replication_factor),
        )
        .set("cleanup.policy", "delete")
        .set("retention.ms", "2592000000");
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in admin.create_topics([&spec], &opts).await? {
            match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(OpenLineageError::Config(format!(
                        "creating the openlineage topic {name}: {code}"
                    )));
                }
            }
        }
        Ok(Self {
            producer: vecstream_kafka::idempotent_producer(&config.kafka)?,
            topic: topic.to_owned(),
            sent: Default::default(),
        })
    }

    /// Produces the events (all in flight together; a run's events keep their order on
    /// its partition), retrying those that failed until they are acknowledged or the
    /// exporter stops (the records' offsets are not stored before: a restart sends them
    /// again).
    async fn send_all(
        &self,
        items: &[(String, Vec<u8>)],
        stop: &watch::Receiver<bool>,
        metrics: &OpenLineageMetrics,
    ) {
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut backoff = BACKOFF_START;
        while !pending.is_empty() {
            let sends = pending.iter().map(|&i| {
                let (key, body) = &items[i];
                self.producer.send(
                    FutureRecord::to(&self.topic).key(key).payload(body),
                    Duration::from_secs(30),
                )
            });
            let results = futures::future::join_all(sends).await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (&i, r) in pending.iter().zip(results) {
                match r {
                    Ok(_) => {
                        metrics.sent.with_label_values(&["kafka"]).inc();
                        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err((e, _)) => {
                        failed.push(i);
                        last_error = Some(e);
                    }
                }
            }
            pending = failed;
            if pending.is_empty() || *stop.borrow() {
                return;
            }
            metrics
                .retries
                .with_label_values(&["kafka"])
                .inc_by(pending.len() as u64);
            tracing::warn!(error = ?last_error, topic = %self.topic, failed = pending.len(), "openlineage kafka transport: produce failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Rate-limited logging of drops: the first at once, then a summary at most every 10 s.
#[derive(Default)]
struct DropLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl DropLog {
    fn dropped(log: &Mutex<Self>, reason: &str, n: u64) {
        let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
        l.unlogged += n;
        if l.last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            tracing::warn!(
                dropped = l.unlogged,
                reason,
                "openlineage http transport dropped events (counted in \
                 vecstream_openlineage_dropped_total); `vecstream lineage export \
                 --from-beginning --since <time>` sends them again"
            );
            l.last = Some(Instant::now());
            l.unlogged = 0;
        }
    }
}

/// The HTTP transport: a bounded buffer and one sender task.
struct HttpTransport {
    tx: mpsc::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
    delivery: Arc<Delivery>,
    metrics: OpenLineageMetrics,
    drops: Arc<Mutex<DropLog>>,
}

impl HttpTransport {
    fn start(
        s: &OpenLineageSettings,
        metrics: OpenLineageMetrics,
    ) -> Result<Self, OpenLineageError> {
        let url = format!(
            "{}/{}",
            s.http_url.trim_end_matches('/'),
            s.http_endpoint.trim_start_matches('/')
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(s.http_timeout_ms))
            .build()
            .map_err(|e| OpenLineageError::Http {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel(s.http_buffer_events);
        let drops = Arc::new(Mutex::new(DropLog::default()));
        let delivery = Arc::new(Delivery::default());
        let sender = Sender {
            delivery: delivery.clone(),
            client,
            url,
            api_key: s.http_api_key.expose().to_owned(),
            batch: s.http_batch_size,
            max_attempts: s.http_max_attempts,
            metrics: metrics.clone(),
            drops: drops.clone(),
        };
        Ok(Self {
            tx,
            task: tokio::spawn(sender.run(rx)),
            delivery,
            metrics,
            drops,
        })
    }

    /// Buffers `body` if there is room, else drops it (counted, logged). True when dropped.
    fn offer(&self, body: Vec<u8>) -> bool {
        match self.tx.try_send(body) {
            Ok(()) => {
                self.metrics.buffered.inc();
                false
            }
            Err(_) => {
                self.metrics
                    .dropped
                    .with_label_values(&["http", "buffer_full"])
                    .inc();
                DropLog::dropped(&self.drops, "buffer_full", 1);
                true
            }
        }
    }

    /// Buffers `body`, waiting for room. True when it could not be (the sender is gone).
    async fn send(&self, body: Vec<u8>) -> bool {
        let ok = self.tx.send(body).await.is_ok();
        if ok {
            self.metrics.buffered.inc();
        }
        !ok
    }

    /// Sends what the buffer holds: all of it when `wait_for_all` is given (until it turns
    /// true, then for `grace`), else for at most `grace`. Returns (sent, dropped) of the
    /// transport's life.
    async fn close(
        self,
        grace: Duration,
        wait_for_all: Option<&mut watch::Receiver<bool>>,
    ) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        drop(self.tx);
        let mut task = self.task;
        let finished = match wait_for_all {
            Some(stop) => {
                let stopped = async {
                    // A stop sender gone means nobody can stop us: wait for the sends.
                    if stop.wait_for(|s| *s).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    r = &mut task => r.is_ok(),
                    _ = stopped => tokio::time::timeout(grace, &mut task).await.is_ok_and(|r| r.is_ok()),
                }
            }
            None => tokio::time::timeout(grace, &mut task)
                .await
                .is_ok_and(|r| r.is_ok()),
        };
        if !finished {
            task.abort();
            // Still buffered, or taken by a POST the abort cut short.
            let d = &self.delivery;
            let in_flight = d
                .taken
                .load(Relaxed)
                .saturating_sub(d.sent.load(Relaxed) + d.dropped.load(Relaxed));
            let left = self.metrics.buffered.get().max(0) as u64 + in_flight;
            self.metrics
                .dropped
                .with_label_values(&["http", "shutdown"])
                .inc_by(left);
            DropLog::dropped(&self.drops, "shutdown", left);
            self.delivery.dropped.fetch_add(left, Relaxed);
        }
        (
            self.delivery.sent.load(Relaxed),
            self.delivery.dropped.load(Relaxed),
        )
    }
}

/// What the HTTP sender did so far (read by `close`, also after an abort).
#[derive(Default)]
struct Delivery {
    taken: std::sync::atomic::AtomicU64,
    sent: std::sync::atomic::AtomicU64,
    dropped: std::sync::atomic::AtomicU64,
}

struct Sender {
    delivery: Arc<Delivery>,
    client: reqwest::Client,
    url: String,
    api_key: String,
    batch: usize,
    max_attempts: u32,
    metrics: OpenLineageMetrics,
    drops: Arc<Mutex<DropLog>>,
}

/// What became of one POST.
enum Posted {
    Ok,
    /// Worth another try (connection refused, timeout, 408, 429, 5xx).
    Retry(String),
    /// The endpoint refused the event itself (another 4xx).
    Rejected(String),
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Vec<u8>>) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut batch = Vec::with_capacity(self.batch);
        while rx.recv_many(&mut batch, self.batch).await > 0 {
            self.metrics.buffered.sub(batch.len() as i64);
            self.delivery.taken.fetch_add(batch.len() as u64, Relaxed);
            let results =
                futures::future::join_all(batch.drain(..).map(|body| self.deliver(body))).await;
            for ok in results {
                let counter = if ok {
                    &self.delivery.sent
                } else {
                    &self.delivery.dropped
                };
                counter.fetch_add(1, Relaxed);
            }
        }
    }

    /// POSTs one event, retrying with backoff; true when the endpoint took it.
    async fn deliver(&self, body: Vec<u8>) -> bool {
        let mut backoff = BACKOFF_START;
        for attempt in 1..=self.max_attempts {
            let started = Instant::now();
            match self.post(&body).await {
                Posted::Ok => {
                    self.metrics
                        .post_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.sent.with_label_values(&["http"]).inc();
                    return true;
                }
                Posted::Rejected(why) => {
                    tracing::warn!(url = %self.url, %why, "openlineage endpoint rejected an event");
                    self.metrics
                        .dropped
                        .with_label_values(&["http", "rejected"])
                        .inc();
                    DropLog::dropped(&self.drops, "rejected", 1);
                    return false;
                }
                Posted::Retry(why) if attempt < self.max_attempts => {
                    tracing::debug!(url = %self.url, %why, attempt, "openlineage POST failed; retrying");
                    self.metrics.retries.with_label_values(&["http"]).inc();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Posted::Retry(why) => {
                    tracing::debug!(url = %self.url, %why, "openlineage POST failed for good");
                }
            }
        }
        self.metrics
            .dropped
            .with_label_values(&["http", "undeliverable"])
            .inc();
        DropLog::dropped(&self.drops, "undeliverable", 1);
        false
    }

    async fn post(&self, body: &[u8]) -> Posted {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Posted::Ok,
            Ok(r) => {
                let status = r.status().as_u16();
                let text: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                let why = format!("HTTP {status}: {text}");
                if matches!(status, 408 | 429) || status >= 500 {
                    Posted::Retry(why)
                } else {
                    Posted::Rejected(why)
                }
            }
            Err(e) => Posted::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, buffer: usize) -> OpenLineageSettings {
        OpenLineageSettings {
            http_url: url.into(),
            http_buffer_events: buffer,
            http_batch_size: 2,
            http_max_attempts: 2,
            http_timeout_ms: 500,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_dead_endpoint_fills_the_buffer_then_drops_and_counts_without_waiting() {
        // Nothing listens on this port.
        let metrics = OpenLineageMetrics::unregistered().unwrap();
        let http =
            HttpTransport::start(&settings("http://127.0.0.1:9", 3), metrics.clone()).unwrap();
        let started = Instant::now();
        let dropped: u64 = (0..50).map(|i| u64::from(http.offer(vec![i]))).sum();
        // Offering never waits on the endpoint.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(dropped >= 45, "{dropped}");
        assert_eq!(
            metrics
                .dropped
                .with_label_values(&["http", "buffer_full"])
                .get(),
            dropped
        );
        let (sent, lost) = http.close(Duration::from_secs(10), None).await;
        assert_eq!(sent, 0);
        assert_eq!(lost + dropped, 50);
    }

    /// A slow endpoint: each POST takes 50 ms, one at a time.
    async fn slow_endpoint() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
        use axum::{Router, http::StatusCode, routing::post};
        let got = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (g, one_at_a_time) = (got.clone(), Arc::new(tokio::sync::Mutex::new(())));
        let app = Router::new().route(
            "/api/v1/lineage",
            post(move || {
                let (g, lock) = (g.clone(), one_at_a_time.clone());
                async move {
                    let _turn = lock.lock().await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    g.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    StatusCode::CREATED
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, got)
    }

    #[tokio::test]
    async fn a_backfill_sends_all_it_read_however_long_the_endpoint_takes_and_a_follower_counts_what_it_left()
     {
        let (addr, got) = slow_endpoint().await;
        let metrics = OpenLineageMetrics::unregistered().unwrap();
        let url = format!("http://{addr}");
        // Back-fill: 40 events x 50 ms = 2 s, far past the 100 ms grace.
        let http = HttpTransport::start(&settings(&url, 100), metrics.clone()).unwrap();
        for i in 0..40u8 {
            assert!(!http.send(vec![i]).await);
        }
        let (_stop_tx, mut stop) = watch::channel(false);
        let (sent, dropped) = http
            .close(Duration::from_millis(100), Some(&mut stop))
            .await;
        assert_eq!((sent, dropped), (40, 0));
        assert_eq!(got.load(std::sync::atomic::Ordering::Relaxed), 40);
        // A follower stopping with the same backlog sends for the grace only; what it sent
        // and what it left both count.
        let http = HttpTransport::start(&settings(&url, 100), metrics.clone()).unwrap();
        for i in 0..40u8 {
            assert!(!http.send(vec![i]).await);
        }
        let (sent, dropped) = http.close(Duration::from_millis(300), None).await;
        assert!(sent > 0 && dropped > 0, "{sent} sent, {dropped} dropped");
        assert_eq!(sent + dropped, 40);
    }

    #[tokio::test]
    async fn events_reach_a_live_endpoint_with_the_api_key_and_4xx_is_not_retried() {
        use axum::{Router, http::HeaderMap, http::StatusCode, routing::post};
        let seen = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let s = seen.clone();
        let app = Router::new().route(
            "/api/v1/lineage",
            post(move |headers: HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let status = if body == "bad" {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::CREATED
                    };
                    s.lock().unwrap().push((auth, body));
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let metrics = OpenLineageMetrics::unregistered().unwrap();
        let mut s = settings(&format!("http://{addr}"), 10);
        s.http_api_key = vecstream_config::Secret::new("k3y");
        let http = HttpTransport::start(&s, metrics.clone()).unwrap();
        for body in ["a", "bad", "b"] {
            assert!(!http.send(body.as_bytes().to_vec()).await);
        }
        let (sent, dropped) = http.close(Duration::from_secs(10), None).await;
        assert_eq!((sent, dropped), (2, 1));
        let seen = seen.lock().unwrap();
        // The rejected event was tried once.
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.iter().all(|(auth, _)| auth == "Bearer k3y"));
        assert_eq!(
            metrics
                .dropped
                .with_label_values(&["http", "rejected"])
                .get(),
            1
        );
    }
}
