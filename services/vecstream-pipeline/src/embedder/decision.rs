//! What the embedder does with each document record, decided without I/O.
//!
//! [`decide`] judges one record that has been read (decoded through the registry) against
//! what the dedup memory holds for its document; [`decide_batch`] does it for a batch so
//! that each decision sees the effects of the earlier ones; [`Decision::state_after`] is what
//! the memory holds once the decision is committed. [`DocOutcome`] names the result, the
//! same word in lineage, metrics and tests.

use std::collections::HashMap;

use vecstream_core::{Document, EventType, record_key, split_record_key};
use vecstream_engine::{Chunk, Chunker};

use crate::dlq::{DeadLetter, Reason};
use crate::document::{Read, chunked, normalized};
use crate::state::{DedupState, DocState};

/// Version written on the delete record of a tombstone: it outranks every stored version,
/// so the sink removes whatever it holds for the document.
pub const TOMBSTONE_VERSION: i64 = i64::MAX;

pub(crate) const STAGE: &str = "embed";

/// What became of one document record: the lineage outcome and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocOutcome {
    Embedded,
    Deleted,
    /// Same content and model as already emitted.
    Unchanged,
    /// Older than the version already emitted.
    Stale,
    /// Older than a delete already emitted.
    StaleAfterDelete,
    /// Handed to a `LargeDocumentWorkflow`.
    Escalated,
    DeadLettered,
}

/// Where the effects of an outcome went, for its lineage event's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Nothing,
    Vectors,
    DeadLetters,
}

impl DocOutcome {
    pub const ALL: [DocOutcome; 7] = [
        DocOutcome::Embedded,
        DocOutcome::Deleted,
        DocOutcome::Unchanged,
        DocOutcome::Stale,
        DocOutcome::StaleAfterDelete,
        DocOutcome::Escalated,
        DocOutcome::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocOutcome::Embedded => "embedded",
            DocOutcome::Deleted => "deleted",
            DocOutcome::Unchanged => "unchanged",
            DocOutcome::Stale => "stale",
            DocOutcome::StaleAfterDelete => "stale_after_delete",
            DocOutcome::Escalated => "escalated",
            DocOutcome::DeadLettered => "dead_lettered",
        }
    }

    /// The outcome's lineage event: its type and where the record's effects went.
    pub fn lineage(self) -> (EventType, Output) {
        match self {
            DocOutcome::Embedded | DocOutcome::Deleted => (EventType::Complete, Output::Vectors),
            DocOutcome::Unchanged | DocOutcome::Stale | DocOutcome::StaleAfterDelete => {
                (EventType::Other, Output::Nothing)
            }
            DocOutcome::Escalated => (EventType::Running, Output::Nothing),
            DocOutcome::DeadLettered => (EventType::Fail, Output::DeadLetters),
        }
    }
}

/// Why a document record is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Unchanged,
    Stale,
    StaleAfterDelete,
}

/// What to do with one document record.
#[derive(Debug)]
pub enum Decision {
    Embed {
        doc: Document,
        hash: String,
        chunks: Vec<Chunk>,
    },
    Delete {
        doc_id: String,
        tenant: String,
        version: i64,
        tombstone: bool,
        /// A tombstone's offset in its partition: records from before it are older.
        at_offset: Option<i64>,
    },
    Skip {
        doc: Document,
        hash: String,
        why: Skip,
    },
    /// Too large to embed inline: a `LargeDocumentWorkflow` embeds it.
    Escalate {
        doc: Document,
        hash: String,
        tokens: usize,
    },
    DeadLetter(DeadLetter),
}

/// Where a record came from: what a dead letter carries.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Where the record first entered its partition: its own offset, or, for a dead letter
    /// replayed by `vecstream dlq replay`, the offset it had before it was dead-lettered.
    pub origin_offset: i64,
}

impl Source<'_> {
    pub(crate) fn dead_letter(&self, reason: Reason, message: String) -> Decision {
        Decision::DeadLetter(DeadLetter {
            key: self.key.map(<[u8]>::to_vec),
            payload: self.payload.map(<[u8]>::to_vec),
            reason,
            message,
            stage: STAGE,
            source_topic: self.topic.to_owned(),
            source_partition: self.partition,
            source_offset: self.offset,
        })
    }
}

/// The embedder's settings a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The model the embedder embeds with.
    pub model_id: &'a str,
    pub chunker: &'a Chunker,
    pub max_body_bytes: usize,
    pub max_chunks: usize,
    /// Documents over this many tokens are escalated (`None`: no escalation).
    pub large_document_tokens: Option<usize>,
}

/// Decides what one read record becomes, given what the memory holds for its document.
pub fn decide(
    source: Source<'_>,
    read: Read,
    known: Option<&DocState>,
    rules: Rules<'_>,
) -> Decision {
    let doc = match read {
        Read::Bad(reason, message) => return source.dead_letter(reason, message),
        Read::Tombstone { tenant, doc_id } => {
            return Decision::Delete {
                doc_id,
                tenant,
                version: TOMBSTONE_VERSION,
                tombstone: true,
                at_offset: Some(source.origin_offset),
            };
        }
        Read::Doc(doc) => doc,
    };
    if let Some(k) = known.filter(|k| older_than(&doc, k, source.origin_offset)) {
        // Older than what was emitted: fenced, with a lineage trail.
        return Decision::Skip {
            hash: String::new(),
            why: if k.deleted {
                Skip::StaleAfterDelete
            } else {
                Skip::Stale
            },
            doc,
        };
    }
    if doc.deleted {
        return Decision::Delete {
            doc_id: doc.id.clone(),
            tenant: doc.tenant.clone(),
            version: doc.version,
            tombstone: false,
            at_offset: None,
        };
    }
    let (text, hash) = match normalized(&doc, rules.max_body_bytes) {
        Ok(x) => x,
        Err((reason, message)) => return source.dead_letter(reason, message),
    };
    if let Some(k) = known
        && !k.deleted
        && k.content_hash == hash
        && k.model_id == rules.model_id
    {
        return Decision::Skip {
            doc,
            hash,
            why: Skip::Unchanged,
        };
    }
    let chunks = match chunked(rules.chunker, &text, rules.max_chunks) {
        Ok(chunks) => chunks,
        Err((reason, message)) => return source.dead_letter(reason, message),
    };
    let tokens: usize = chunks.iter().map(Chunk::token_count).sum();
    if let Some(limit) = rules.large_document_tokens
        && tokens > limit
    {
        return Decision::Escalate { doc, hash, tokens };
    }
    Decision::Embed { doc, hash, chunks }
}

/// True when `doc` is older than what the memory holds: an older version; or, after a
/// tombstone, a version not newer than the last one seen, or a record that entered the
/// partition before the tombstone (`origin_offset`: a replayed dead letter keeps its first
/// offset). So a replayed dead letter never brings a deleted document back, whatever its
/// version, while a re-creation (a newer version, published after the delete) is embedded.
/// Offsets of one partition order records without trusting any clock.
fn older_than(doc: &Document, known: &DocState, origin_offset: i64) -> bool {
    if doc.version < known.version {
        return true;
    }
    match known.deleted_at_offset.filter(|_| known.deleted) {
        Some(tombstone) => doc.version == known.version || origin_offset < tombstone,
        None => false,
    }
}

/// One decided record of a batch.
#[derive(Debug)]
pub struct Decided {
    pub decision: Decision,
    /// What the memory held for this document before this record: the jobs a delete
    /// waits for, the last version a tombstone's marker keeps.
    pub before: Option<DocState>,
}

/// The memory's changes a batch makes, keyed by (partition, record key); `None` forgets.
pub type Pending = HashMap<(i32, String), Option<DocState>>;

/// Decides a batch in order: each record sees the memory as the earlier ones left it.
/// Returns the decisions and the memory's changes, to apply once the batch is committed.
pub fn decide_batch<'a>(
    reads: impl IntoIterator<Item = (Source<'a>, Read)>,
    memory: &DedupState,
    rules: Rules<'_>,
) -> (Vec<Decided>, Pending) {
    let mut pending = Pending::new();
    let mut decided: Vec<Decided> = Vec::new();
    // Escalations decided in this batch, by (partition, record key): where they are.
    let mut escalated_here: HashMap<(i32, String), usize> = HashMap::new();
    for (source, read) in reads {
        let partition = source.partition;
        let known = |pending: &Pending, key: String| -> Option<DocState> {
            match pending.get(&(partition, key.clone())) {
                Some(s) => s.clone(),
                None => memory.get(partition, &key).cloned(),
            }
        };
        let before = match &read {
            Read::Doc(d) => known(&pending, d.record_key()),
            Read::Tombstone { tenant, doc_id } => known(&pending, record_key(tenant, doc_id)),
            Read::Bad(..) => None,
        };
        let mut before = before;
        let decision = decide(source, read, before.as_ref(), rules);
        if let Decision::Delete { doc_id, tenant, .. } = &decision
            && let Some(at) = escalated_here.remove(&(partition, record_key(tenant, doc_id)))
        {
            // Deleted later in the same batch: the escalation is superseded before its job
            // starts (a job started now would be waited for by this very delete, and the
            // batch would never commit). Its job is not remembered either.
            let earlier = &mut decided[at];
            if let Decision::Escalate { doc, hash, .. } = &earlier.decision {
                earlier.decision = Decision::Skip {
                    doc: doc.clone(),
                    hash: hash.clone(),
                    why: Skip::StaleAfterDelete,
                };
            }
            before = earlier.before.clone();
        }
        if let Decision::Escalate { doc, .. } = &decision {
            escalated_here.insert((partition, doc.record_key()), decided.len());
        }
        if let Some((key, state)) = decision.state_after(rules.model_id, before.as_ref()) {
            pending.insert((partition, key), state);
        }
        decided.push(Decided { decision, before });
    }
    (decided, pending)
}

impl Decision {
    pub fn outcome(&self) -> DocOutcome {
        match self {
            Decision::Embed { .. } => DocOutcome::Embedded,
            Decision::Delete { .. } => DocOutcome::Deleted,
            Decision::Skip { why, .. } => match why {
                Skip::Unchanged => DocOutcome::Unchanged,
                Skip::Stale => DocOutcome::Stale,
                Skip::StaleAfterDelete => DocOutcome::StaleAfterDelete,
            },
            Decision::Escalate { .. } => DocOutcome::Escalated,
            Decision::DeadLetter(_) => DocOutcome::DeadLettered,
        }
    }

    /// What the dedup memory holds for the document (by its record key) once this decision
    /// is committed (`None` when it does not change), given what it held `before`. The large-document
    /// jobs that may still publish are carried along until a delete (which waits for them
    /// first) clears them; a tombstone leaves a marker with the last version and its offset.
    pub fn state_after(
        &self,
        model_id: &str,
        before: Option<&DocState>,
    ) -> Option<(String, Option<DocState>)> {
        let jobs = |doc: &Document| {
            before
                .map(|b| b.pending_jobs(&doc.tenant, &doc.id))
                .unwrap_or_default()
        };
        let kept = |doc: &Document, hash: &str| DocState {
            version: doc.version,
            model_id: model_id.to_owned(),
            content_hash: hash.to_owned(),
            deleted: false,
            escalated_version: None,
            escalated: jobs(doc),
            deleted_at_offset: None,
        };
        match self {
            Decision::Embed { doc, hash, .. } => Some((doc.record_key(), Some(kept(doc, hash)))),
            // Escalated documents count as emitted: their job owns them from here on.
            Decision::Escalate { doc, hash, .. } => {
                let mut state = kept(doc, hash);
                let id = vecstream_core::large_document_workflow_id(
                    &doc.tenant,
                    &doc.id,
                    doc.version,
                    model_id,
                    hash,
                );
                if !state.escalated.contains(&id) {
                    state.escalated.push(id);
                }
                Some((doc.record_key(), Some(state)))
            }
            // The newer version is remembered so that older re-deliveries stay fenced.
            Decision::Skip {
                doc,
                hash,
                why: Skip::Unchanged,
            } => Some((doc.record_key(), Some(kept(doc, hash)))),
            Decision::Delete {
                doc_id,
                tenant,
                version,
                tombstone,
                at_offset,
                ..
            } => Some((
                record_key(tenant, doc_id),
                Some(DocState {
                    // A tombstone has no version: the marker keeps the last one seen.
                    version: if *tombstone {
                        before.map_or(i64::MIN, |b| b.version)
                    } else {
                        *version
                    },
                    model_id: model_id.to_owned(),
                    content_hash: String::new(),
                    deleted: true,
                    escalated_version: None,
                    escalated: Vec::new(),
                    deleted_at_offset: if *tombstone { *at_offset } else { None },
                }),
            )),
            Decision::Skip { .. } | Decision::DeadLetter(_) => None,
        }
    }

    /// The document's identity, if known: (tenant, id) and version. A dead letter names
    /// what its record key says (empty when it has none).
    pub fn identity(&self) -> (&str, &str, Option<i64>) {
        match self {
            Decision::Embed { doc, .. }
            | Decision::Skip { doc, .. }
            | Decision::Escalate { doc, .. } => (&doc.tenant, &doc.id, Some(doc.version)),
            Decision::Delete {
                doc_id,
                tenant,
                version,
                tombstone,
                ..
            } => (tenant, doc_id, (!tombstone).then_some(*version)),
            Decision::DeadLetter(d) => {
                let key = d
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or("");
                let (tenant, id) = split_record_key(key);
                (tenant, id, None)
            }
        }
    }

    /// The record key of the document (empty for a dead letter without a key).
    pub fn record_key(&self) -> String {
        match self {
            Decision::DeadLetter(d) => d
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            _ => {
                let (tenant, id, _) = self.identity();
                record_key(tenant, id)
            }
        }
    }

    /// Chunks to embed (none unless [`Decision::Embed`]).
    pub fn chunks(&self) -> &[Chunk] {
        match self {
            Decision::Embed { chunks, .. } => chunks,
            _ => &[],
        }
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
