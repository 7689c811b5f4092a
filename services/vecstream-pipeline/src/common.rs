//! Pieces the embedder and the sink share: the consumer-group member (partition tracking
//! across rebalances, batch gathering, pause-and-retry), retry with backoff, and the offsets
//! to commit after a batch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::CommitMode;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use vecstream_config::KafkaConfig;
use vecstream_core::Classify;

use crate::{PipelineError, PipelineMetrics};

/// Tracks the partitions this member owns; librdkafka calls it on its polling thread.
#[derive(Debug, Default, Clone)]
pub(crate) struct AssignmentTracker {
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    /// Messages received while a batch was retried, for the next batch (see
    /// [`Member::gather`]); a revoked partition's are dropped with it (its next owner, or
    /// this member again, reads them from the committed offset).
    held: Arc<Mutex<VecDeque<OwnedMessage>>>,
    /// `vecstream_pipeline_consumer_lag{component,topic,partition}`, fed by librdkafka's
    /// statistics (`statistics.interval.ms`).
    lag: Option<(prometheus::IntGaugeVec, &'static str)>,
}

impl AssignmentTracker {
    /// A tracker that also reports consumer lag as `component`.
    pub(crate) fn with_lag(metrics: &PipelineMetrics, component: &'static str) -> Self {
        Self {
            lag: Some((metrics.consumer_lag.clone(), component)),
            ..Self::default()
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeSet<i32> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for AssignmentTracker {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let Some((gauge, component)) = &self.lag else {
            return;
        };
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is the internal UA partition, and lag -1 means "not known yet".
                if *partition >= 0 && p.consumer_lag >= 0 {
                    gauge
                        .with_label_values(&[
                            *component,
                            topic.as_str(),
                            partition.to_string().as_str(),
                        ])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

/// Longest `gather` waits on the consumer before polling it again.
const REPOLL: Duration = Duration::from_millis(500);

impl ConsumerContext for AssignmentTracker {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut set = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
            for e in tpl.elements() {
                set.remove(&e.partition());
            }
            let revoked: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            self.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|m| !revoked.contains(&m.partition()));
            tracing::info!(revoked = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut set = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
            for e in tpl.elements() {
                set.insert(e.partition());
            }
            tracing::info!(assigned = ?set, "partitions assigned");
        }
    }
}

/// Retries an operation while it fails with a retryable error: exponential backoff from
/// 250 ms, capped; counted in `vecstream_pipeline_retries_total`; gives up on shutdown.
#[derive(Debug)]
pub(crate) struct Retrier<'a> {
    pub component: &'static str,
    pub metrics: &'a PipelineMetrics,
    pub max_backoff: Duration,
}

impl Retrier<'_> {
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        shutdown: &watch::Receiver<bool>,
        mut op: F,
    ) -> Result<T, PipelineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PipelineError>>,
    {
        let mut backoff = Duration::from_millis(250);
        let cap = self.max_backoff.max(backoff);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.class().is_retryable() && !*shutdown.borrow() => {
                    self.metrics
                        .retries
                        .with_label_values(&[self.component, what])
                        .inc();
                    tracing::warn!(component = self.component, error = %e, retry_in = ?backoff, "{what} failed; retrying (nothing committed)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cap);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// One member of a consumer group of the pipeline: `read_committed`, manual commits,
/// cooperative rebalancing, bounded prefetch, consumer lag reported from librdkafka's
/// statistics.
pub(crate) struct Member {
    pub consumer: StreamConsumer<AssignmentTracker>,
    pub tracker: AssignmentTracker,
    /// Partitions held back by [`Member::hold`], and when they resume.
    holds: Mutex<BTreeMap<i32, tokio::time::Instant>>,
}

/// When a gathered batch is complete.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    pub max_records: usize,
    pub max_wait: Duration,
    /// Token budget, estimated at four payload bytes per token; `None`: no budget.
    pub max_tokens: Option<usize>,
    /// Payload bytes; a record that would take the batch over is held for the next one
    /// (a record larger than the budget makes a batch of one). `None`: no budget.
    pub max_bytes: Option<usize>,
}

impl BatchLimits {
    /// True when a batch of `records` holding `tokens` and `bytes` is complete.
    fn full(&self, records: usize, tokens: usize, bytes: usize) -> bool {
        records >= self.max_records
            || self.max_tokens.is_some_and(|t| tokens >= t)
            || self.max_bytes.is_some_and(|b| bytes >= b)
    }

    /// True when a record of `len` bytes would take a non-empty batch of `bytes` over the
    /// byte budget.
    fn overflows(&self, bytes: usize, len: usize) -> bool {
        bytes > 0 && self.max_bytes.is_some_and(|b| bytes + len > b)
    }
}

fn payload_len(m: &OwnedMessage) -> usize {
    m.payload().map_or(0, <[u8]>::len)
}

impl Member {
    /// Joins `group` and subscribes to `topic`; `extra` adds client settings.
    pub fn subscribe(
        kafka: &KafkaConfig,
        group: &str,
        topic: &str,
        component: &'static str,
        metrics: &PipelineMetrics,
        extra: &[(&str, &str)],
    ) -> Result<Self, PipelineError> {
        let tracker = AssignmentTracker::with_lag(metrics, component);
        let mut cfg = vecstream_kafka::client_config(kafka);
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // Bounded prefetch: backpressure reaches the brokers, not our memory.
            .set("queued.max.messages.kbytes", "16384")
            .set("statistics.interval.ms", "5000")
            .set(
                "max.poll.interval.ms",
                kafka.max_poll_interval_ms.to_string(),
            )
            .set(
                "session.timeout.ms",
                kafka
                    .session_timeout_ms
                    .min(kafka.max_poll_interval_ms)
                    .to_string(),
            );
        for (k, v) in extra {
            cfg.set(*k, *v);
        }
        let consumer: StreamConsumer<AssignmentTracker> =
            cfg.create_with_context(tracker.clone())?;
        consumer.subscribe(&[topic])?;
        Ok(Self {
            consumer,
            tracker,
            holds: Mutex::default(),
        })
    }

    /// Waits for one message, then gathers more until a limit or the wait runs out (or
    /// `shutdown` turns true).
    pub async fn gather(
        &self,
        limits: BatchLimits,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Vec<OwnedMessage> {
        let mut batch: Vec<OwnedMessage> = Vec::new();
        let (mut estimated_tokens, mut bytes) = (0usize, 0usize);
        {
            // Messages held back (by a retry, or by the last batch's byte budget) first.
            let mut held = self.lock_held();
            while let Some(m) = held.front() {
                let len = payload_len(m);
                if limits.overflows(bytes, len) || limits.full(batch.len(), estimated_tokens, bytes)
                {
                    break;
                }
                estimated_tokens += len / 4 + 2;
                bytes += len;
                batch.extend(held.pop_front());
            }
            if !held.is_empty() {
                return batch;
            }
        }
        let mut deadline: Option<tokio::time::Instant> =
            (!batch.is_empty()).then(|| later(limits.max_wait));
        loop {
            self.resume_due();
            // With no deadline yet, still wake up now and then: the consumer's wake-up from
            // librdkafka can be lost across an incremental rebalance while messages sit in
            // its queue, and a fresh `recv` polls the queue directly.
            let repoll = deadline.is_none();
            let wait = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => tokio::time::sleep(REPOLL).await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = wait => if repoll { continue } else { break },
                msg = self.consumer.recv() => match msg {
                    Ok(m) => {
                        let len = m.payload_len();
                        if limits.overflows(bytes, len) {
                            // Leads the next batch: the order within its partition is kept.
                            self.lock_held().push_back(m.detach());
                            break;
                        }
                        estimated_tokens += len / 4 + 2;
                        bytes += len;
                        batch.push(m.detach());
                        deadline.get_or_insert_with(|| later(limits.max_wait));
                        if limits.full(batch.len(), estimated_tokens, bytes) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error (librdkafka retries by itself)");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
        batch
    }

    /// Holds `partition` of `topic` back for `wait`: paused and rewound to `offset` (its
    /// first record not committed), so its records come again once it resumes, while the
    /// other partitions go on. What one document waits for (Temporal, a job to stop) then
    /// delays only its own partition.
    pub fn hold(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        wait: Duration,
    ) -> Result<(), PipelineError> {
        let mut one = TopicPartitionList::new();
        one.add_partition(topic, partition);
        self.consumer.pause(&one)?;
        self.consumer.seek(
            topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        )?;
        // Messages of the partition received meanwhile come again after the seek.
        self.lock_held().retain(|m| m.partition() != partition);
        self.lock_holds().insert(partition, later(wait));
        Ok(())
    }

    /// Partitions currently held back.
    pub fn holding(&self) -> usize {
        self.lock_holds().len()
    }

    /// Resumes the held partitions whose wait is over (and forgets those revoked).
    fn resume_due(&self) {
        let now = tokio::time::Instant::now();
        let assigned = self.tracker.snapshot();
        let mut holds = self.lock_holds();
        holds.retain(|p, _| assigned.contains(p));
        let due: Vec<i32> = holds
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        if due.is_empty() {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let mut resume = TopicPartitionList::new();
        for e in assignment.elements() {
            if due.contains(&e.partition()) {
                resume.add_partition(e.topic(), e.partition());
            }
        }
        match self.consumer.resume(&resume) {
            Ok(()) => due.iter().for_each(|p| {
                holds.remove(p);
            }),
            Err(e) => tracing::warn!(error = %e, "resuming held partitions failed"),
        }
    }

    fn lock_holds(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, tokio::time::Instant>> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages received while a batch was retried (from partitions assigned meanwhile,
    /// which are then paused too) or left over by the byte budget: the next `gather` hands
    /// them out first, in order.
    fn lock_held(&self) -> std::sync::MutexGuard<'_, VecDeque<OwnedMessage>> {
        self.tracker.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls the consumer until dropped, so that a member whose batch is being retried is
    /// not evicted from its group (`max.poll.interval.ms`) and serves rebalances. Its own
    /// partitions are paused; a message of a partition assigned meanwhile is held for the
    /// next batch and its partition paused too (added to `paused`, resumed with the rest).
    async fn keep_polling(&self, paused: &Mutex<TopicPartitionList>) -> std::convert::Infallible {
        loop {
            tokio::select! {
                // A fresh `recv` now and then is what counts as a poll (see `gather`).
                _ = tokio::time::sleep(REPOLL) => {}
                msg = self.consumer.recv() => match msg {
                    Ok(m) => {
                        let (topic, partition) = (m.topic().to_owned(), m.partition());
                        self.lock_held().push_back(m.detach());
                        let mut paused = paused.lock().unwrap_or_else(|p| p.into_inner());
                        if paused.find_partition(&topic, partition).is_none() {
                            let mut one = TopicPartitionList::new();
                            one.add_partition(&topic, partition);
                            if let Err(e) = self.consumer.pause(&one) {
                                tracing::warn!(error = %e, partition, "pausing a newly assigned partition failed");
                            }
                            paused.add_partition(&topic, partition);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error while retrying (librdkafka retries by itself)");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
    }

    /// Commits `offsets` (partition → next offset of `topic`) for the partitions still
    /// assigned, retrying while the group or the broker cannot take them and polling
    /// meanwhile: a member evicted during a long outage rejoins, its revoked partitions drop
    /// out of the commit (their new owner re-reads them), and the rest is committed.
    pub async fn commit(
        &self,
        retrier: &Retrier<'_>,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), PipelineError> {
        self.retry_paused(retrier, "commit", shutdown, || async {
            let assigned = self.tracker.snapshot();
            let mut tpl = TopicPartitionList::new();
            for (p, o) in offsets.iter().filter(|(p, _)| assigned.contains(p)) {
                tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
            }
            if tpl.count() == 0 {
                return Ok(());
            }
            self.consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(PipelineError::from)
        })
        .await
    }

    /// Runs `attempt`; after a retryable failure pauses the assigned partitions (the backlog
    /// stays in Kafka) and retries with `retrier` while still polling the consumer (see
    /// [`Self::keep_polling`]), then resumes them whatever the outcome.
    pub async fn retry_paused<T, F, Fut>(
        &self,
        retrier: &Retrier<'_>,
        what: &str,
        shutdown: &watch::Receiver<bool>,
        mut attempt: F,
    ) -> Result<T, PipelineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PipelineError>>,
    {
        match attempt().await {
            Err(e) if e.class().is_retryable() && !*shutdown.borrow() => {
                let paused = self.consumer.assignment()?;
                if let Err(pe) = self.consumer.pause(&paused) {
                    tracing::warn!(error = %pe, "pausing partitions failed");
                }
                let gauge = retrier
                    .metrics
                    .paused_partitions
                    .with_label_values(&[retrier.component]);
                gauge.set(paused.count() as i64);
                tracing::warn!(error = %e, "{what} failed; partitions paused, retrying");
                let paused = Mutex::new(paused);
                let result = tokio::select! {
                    biased;
                    result = retrier.run(what, shutdown, &mut attempt) => result,
                    never = self.keep_polling(&paused) => match never {},
                };
                let paused = paused.into_inner().unwrap_or_else(|p| p.into_inner());
                // Partitions revoked meanwhile are no longer ours to resume: ignore errors.
                let _ = self.consumer.resume(&paused);
                gauge.set(0);
                result
            }
            other => other,
        }
    }
}

/// `wait` from now, or a day from now for a wait too long to add (a configured value of
/// years must not panic).
fn later(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400))
}

/// Per partition: the offset after the last of `offsets` (what a consumer group commits).
pub(crate) fn next_offsets(offsets: impl IntoIterator<Item = (i32, i64)>) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for (partition, offset) in offsets {
        let next = out.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_offsets_are_one_past_the_last_message_of_each_partition() {
        assert_eq!(
            next_offsets([(0, 5), (1, 9), (0, 7), (0, 6)]),
            BTreeMap::from([(0, 8), (1, 10)])
        );
    }

    #[test]
    fn a_batch_stays_within_its_byte_budget_unless_one_record_is_larger() {
        let limits = BatchLimits {
            max_records: 64,
            max_wait: Duration::from_millis(1),
            max_tokens: None,
            max_bytes: Some(100),
        };
        // An empty batch takes any record, however large: it makes a batch of one.
        assert!(!limits.overflows(0, 1_000));
        assert!(limits.overflows(60, 41));
        assert!(!limits.overflows(60, 40));
        assert!(limits.full(2, 0, 100));
        assert!(!limits.full(2, 0, 99));
        assert!(limits.full(64, 0, 0));
        let unbounded = BatchLimits {
            max_bytes: None,
            ..limits
        };
        assert!(!unbounded.overflows(1 << 30, 1 << 30));
    }

    #[tokio::test]
    async fn retrier_retries_transient_errors_and_stops_on_permanent_ones() {
        let registry = prometheus::Registry::new();
        let metrics = PipelineMetrics::register(&registry).unwrap();
        let r = Retrier {
            component: "test",
            metrics: &metrics,
            max_backoff: Duration::from_millis(1),
        };
        let (_tx, rx) = watch::channel(false);
        let mut calls = 0;
        let out = r
            .run("op", &rx, || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(PipelineError::StateRestore {
                            partition: 0,
                            message: "broker down".into(),
                        })
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 3);
        assert_eq!(metrics.retries.with_label_values(&["test", "op"]).get(), 2);
        let err = r
            .run("op", &rx, || async {
                Err::<(), _>(PipelineError::Config("bad".into()))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, PipelineError::Config(_)));
    }
}
