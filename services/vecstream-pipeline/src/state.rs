//! The embedder's memory of what it last emitted for each document: version, model id and
//! content hash, so an unchanged re-publish is skipped and an older version is fenced.
//!
//! Where it lives and why it survives restarts: every change is written to the compacted
//! topic `docs.embedder-state.v1` (key = the document's record key, `vecstream_core::record_key`:
//! its bare id for the default tenant, `<tenant>\0<id>` otherwise; partition = the document's partition) in the
//! same Kafka transaction as the vectors and the consumer offsets. The memory is therefore
//! exactly what was committed. When a partition is assigned (at start or after a
//! rebalance, on any instance), its state is read back from that partition of the state
//! topic (`read_committed`) before any of its documents is processed; when a partition is
//! revoked its state is dropped. Compaction keeps the topic at one small record per document.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use vecstream_config::KafkaConfig;
use vecstream_core::topics;

use crate::PipelineError;

/// What the embedder last committed for one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocState {
    pub version: i64,
    pub model_id: String,
    pub content_hash: String,
    #[serde(default)]
    pub deleted: bool,
    /// Written by older embedders: the version whose `LargeDocumentWorkflow` (then
    /// `doc-<id>-<version>`) may still publish vectors. Read, never written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_version: Option<i64>,
    /// Workflow ids of the document's large-document jobs that may still publish vectors:
    /// a delete waits for every one of them to close.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalated: Vec<String>,
    /// Set by a tombstone (the marker that outlives it): the tombstone's offset. A record
    /// that entered the partition before it (a replayed dead letter keeps its first offset)
    /// is older than the delete, whatever its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_offset: Option<i64>,
}

impl DocState {
    /// The large-document jobs of (`tenant`, `doc_id`) that may still publish (old and new
    /// records; the old ones predate tenants and name the bare id).
    pub fn pending_jobs(&self, tenant: &str, doc_id: &str) -> Vec<String> {
        let mut jobs = self.escalated.clone();
        if let Some(v) = self.escalated_version
            && tenant == vecstream_core::DEFAULT_TENANT
        {
            jobs.push(vecstream_core::legacy_large_document_workflow_id(doc_id, v));
        }
        jobs
    }
}

impl DocState {
    /// True when forgetting it costs only work, never correctness: a live document with no
    /// large-document job that may still publish. (A delete marker fences what entered the
    /// partition before it; a pending job must be waited for by a delete.)
    pub fn forgettable(&self) -> bool {
        !self.deleted && self.escalated.is_empty() && self.escalated_version.is_none()
    }
}

/// Per assigned partition: record key → state, within a bound (see
/// [`DedupState::bounded`]).
#[derive(Debug, Default)]
pub struct DedupState {
    partitions: HashMap<i32, HashMap<String, DocState>>,
    /// Documents kept per partition before forgettable ones are dropped; 0 = no bound.
    max_per_partition: usize,
    forgotten: u64,
}

impl DedupState {
    /// A memory that keeps at most `max_per_partition` documents per partition, apart from
    /// those it must not forget ([`DocState::forgettable`]); 0 = no bound.
    pub fn bounded(max_per_partition: usize) -> Self {
        Self {
            max_per_partition,
            ..Self::default()
        }
    }

    /// Documents forgotten to stay within the bound, since the start.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Drops forgettable entries of `partition` (never `keep`) until a tenth under the
    /// bound, so the scan happens once per many inserts rather than at each.
    fn trim(&mut self, partition: i32, keep: Option<&str>) {
        let max = self.max_per_partition;
        let Some(map) = self.partitions.get_mut(&partition) else {
            return;
        };
        if max == 0 || map.len() <= max {
            return;
        }
        let target = max - max / 10;
        let excess = map.len().saturating_sub(target);
        let victims: Vec<String> = map
            .iter()
            .filter(|(k, s)| s.forgettable() && Some(k.as_str()) != keep)
            .map(|(k, _)| k.clone())
            .take(excess)
            .collect();
        for k in &victims {
            map.remove(k);
        }
        self.forgotten += victims.len() as u64;
        if map.len() > max {
            tracing::warn!(
                partition,
                documents = map.len(),
                max,
                "embedder.state_max_documents exceeded by documents that cannot be forgotten \
                 (delete markers, pending large-document jobs)"
            );
        }
    }

    pub fn is_restored(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    pub fn get(&self, partition: i32, key: &str) -> Option<&DocState> {
        self.partitions.get(&partition)?.get(key)
    }

    /// Records a committed change (`None` forgets the document: a tombstone).
    pub fn apply(&mut self, partition: i32, key: &str, state: Option<DocState>) {
        let map = self.partitions.entry(partition).or_default();
        match state {
            Some(s) => {
                map.insert(key.to_owned(), s);
                self.trim(partition, Some(key));
            }
            None => {
                map.remove(key);
            }
        }
    }

    pub fn insert_partition(&mut self, partition: i32, docs: HashMap<String, DocState>) {
        self.partitions.insert(partition, docs);
        self.trim(partition, None);
    }

    /// Forgets partitions that are no longer assigned.
    pub fn retain_partitions(&mut self, keep: impl Fn(i32) -> bool) {
        self.partitions.retain(|p, _| keep(*p));
    }

    /// Documents remembered, over all partitions.
    pub fn len(&self) -> usize {
        self.partitions.values().map(HashMap::len).sum()
    }
}

/// The restore consumer's context: reaching the end of the partition is how a restore
/// ends, not an error worth a log line.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            tracing::error!(%error, reason, "state restore consumer error");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// Reads one partition of the state topic from the beginning to its end (blocking).
pub fn restore_partition(
    kafka: &KafkaConfig,
    partition: i32,
    timeout: Duration,
) -> Result<HashMap<String, DocState>, PipelineError> {
    let fail = |message: String| PipelineError::StateRestore { partition, message };
    let consumer: BaseConsumer<QuietEof> = vecstream_kafka::client_config(kafka)
        .set("group.id", "vecstream-embedder-state-restore")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(QuietEof)
        .map_err(|e| fail(e.to_string()))?;
    let (low, high) = consumer
        .fetch_watermarks(topics::EMBEDDER_STATE, partition, timeout)
        .map_err(|e| fail(e.to_string()))?;
    let mut docs = HashMap::new();
    if high <= low {
        return Ok(docs);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topics::EMBEDDER_STATE, partition, Offset::Beginning)
        .map_err(|e| fail(e.to_string()))?;
    consumer.assign(&tpl).map_err(|e| fail(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            return Err(fail(format!("not at the end after {timeout:?}")));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                match m.payload() {
                    None => {
                        docs.remove(key);
                    }
                    Some(v) => match serde_json::from_slice::<DocState>(v) {
                        Ok(s) => {
                            docs.insert(key.to_owned(), s);
                        }
                        // An unreadable entry only costs a re-embed of that document.
                        Err(e) => tracing::warn!(key, error = %e, "unreadable state record"),
                    },
                }
                if m.offset() + 1 >= high {
                    break;
                }
            }
            // With read_committed the end is the last stable offset.
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(fail(e.to_string())),
            None => {}
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_forgets_only_what_costs_work_never_markers_or_pending_jobs() {
        let live = |v| DocState {
            version: v,
            model_id: "m".into(),
            content_hash: "h".into(),
            deleted: false,
            escalated_version: None,
            escalated: Vec::new(),
            deleted_at_offset: None,
        };
        let mut memory = DedupState::bounded(10);
        for i in 0..5 {
            let marker = DocState {
                deleted: true,
                deleted_at_offset: Some(i),
                ..live(i)
            };
            memory.apply(0, &format!("deleted-{i}"), Some(marker));
            let job = DocState {
                escalated: vec![format!("job-{i}")],
                ..live(i)
            };
            memory.apply(0, &format!("escalated-{i}"), Some(job));
        }
        for i in 0..100 {
            memory.apply(0, &format!("live-{i}"), Some(live(i)));
            // The document just committed is remembered.
            assert!(memory.get(0, &format!("live-{i}")).is_some());
        }
        for i in 0..5 {
            assert!(memory.get(0, &format!("deleted-{i}")).is_some());
            assert!(memory.get(0, &format!("escalated-{i}")).is_some());
        }
        assert!(memory.len() <= 11, "{}", memory.len());
        assert!(memory.forgotten() >= 89);
        // Only markers and jobs over the bound: kept, whatever the bound says.
        let mut strict = DedupState::bounded(2);
        for i in 0..5 {
            let marker = DocState {
                deleted: true,
                ..live(i)
            };
            strict.apply(1, &format!("deleted-{i}"), Some(marker));
        }
        assert_eq!(strict.len(), 5);
        assert_eq!(strict.forgotten(), 0);
        // 0: no bound.
        let mut unbounded = DedupState::bounded(0);
        let docs = (0..50).map(|i| (format!("d{i}"), live(i))).collect();
        unbounded.insert_partition(2, docs);
        assert_eq!(unbounded.len(), 50);
    }

    fn st(version: i64) -> DocState {
        DocState {
            version,
            model_id: "m".into(),
            content_hash: "h".into(),
            deleted: false,
            escalated_version: None,
            escalated: Vec::new(),
            deleted_at_offset: None,
        }
    }

    #[test]
    fn state_is_kept_per_partition_and_dropped_with_it() {
        let mut s = DedupState::default();
        assert!(!s.is_restored(0));
        s.insert_partition(0, HashMap::new());
        s.apply(0, "a", Some(st(1)));
        s.apply(1, "b", Some(st(2)));
        assert_eq!(s.get(0, "a"), Some(&st(1)));
        assert_eq!(s.get(1, "a"), None);
        assert_eq!(s.len(), 2);
        s.apply(0, "a", None);
        assert_eq!(s.get(0, "a"), None);
        s.retain_partitions(|p| p != 1);
        assert!(!s.is_restored(1));
        assert!(s.is_restored(0));
        assert_eq!(s.len(), 0);
        let json = serde_json::to_string(&st(3)).unwrap();
        assert_eq!(serde_json::from_str::<DocState>(&json).unwrap(), st(3));
    }
}
