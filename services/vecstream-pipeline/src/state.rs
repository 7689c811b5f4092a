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

/// Per assigned partition: record key → state.
#[derive(Debug, Default)]
pub struct DedupState {
    partitions: HashMap<i32, HashMap<String, DocState>>,
}

impl DedupState {
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
            }
            None => {
                map.remove(key);
            }
        }
    }

    pub fn insert_partition(&mut self, partition: i32, docs: HashMap<String, DocState>) {
        self.partitions.insert(partition, docs);
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
