//! The records one decided document produces inside the embedder's transaction: vectors,
//! dead letters, lineage (shaped by [`DocOutcome::lineage`]) and the dedup state.

use apache_avro::Schema;
use rdkafka::message::OwnedHeaders;
use vecstream_core::{Dataset, DocumentVectors, EventType, TraceParent, VecstreamFacet, topics};
use vecstream_kafka::{wire, with_traceparent};

use super::decision::{Decision, Output};
use crate::PipelineError;
use crate::document::{delete_of, vectors_of};
use crate::lineage::LineageFactory;
use crate::state::DocState;

/// One message of the batch with its decision, on its way into the transaction.
pub(super) struct Item {
    pub partition: i32,
    pub offset: i64,
    pub decision: Decision,
    /// Milliseconds the engine took for the batch this item's chunks were embedded in.
    pub embed_ms: Option<i64>,
    /// Who embedded its chunks: (provider, backend).
    pub embedded_by: Option<(String, String)>,
    /// The hop of the document's trace this stage sends downstream (`traceparent`).
    pub trace: TraceParent,
    /// Open while the document is in flight; exported when OTLP is configured.
    pub _span: tracing::Span,
    /// Workflow id of the job an escalated document went to.
    pub workflow_id: Option<String>,
    /// What the memory held for the document before this message (the jobs a delete
    /// waits for; the last version a tombstone's marker keeps).
    pub before: Option<DocState>,
}

/// A record to produce inside the transaction.
pub(super) struct OutRecord {
    pub topic: &'static str,
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    pub partition: Option<i32>,
    pub headers: Option<OwnedHeaders>,
}

/// Encodes the records of decided documents.
pub(super) struct RecordEncoder {
    pub lineage: LineageFactory,
    pub vectors_schema: (u32, Schema),
    pub lineage_schema: (u32, Schema),
    /// For the `escalated` events' message.
    pub large_document_tokens: usize,
    /// Largest record the DLQ topic takes (`vecstream_kafka::topics::dlq_record_limit`).
    pub dlq_record_limit: usize,
}

impl RecordEncoder {
    /// Appends the records of `item` (whose chunks' vectors are `vectors`) to `out`.
    pub fn records_of(
        &self,
        item: &Item,
        vectors: &[Vec<f32>],
        now: i64,
        model_id: &str,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), PipelineError> {
        let decision = &item.decision;
        let (tenant, doc_id, version) = decision.identity();
        let record_key = decision.record_key();
        // A dead letter's key may be anything (a hostile 2 MiB key, say): its lineage names
        // it as its dead letter does, so the event fits the lineage topic.
        let oversize = record_key.len() > vecstream_core::MAX_RECORD_KEY_BYTES;
        let record_key =
            String::from_utf8_lossy(&vecstream_core::bounded_key(record_key.as_bytes()))
                .into_owned();
        let (tenant, doc_id) = if oversize {
            ("", record_key.as_str())
        } else {
            (tenant, doc_id)
        };
        let key = record_key.as_str();
        let source = VecstreamFacet {
            source_topic: Some(topics::DOCUMENTS.into()),
            source_partition: Some(item.partition),
            source_offset: Some(item.offset),
            model_id: Some(model_id.to_owned()),
            trace_id: Some(item.trace.trace_id_hex()),
            doc_id: (!key.is_empty()).then(|| doc_id.to_owned()),
            tenant: (!key.is_empty() && !tenant.is_empty()).then(|| tenant.to_owned()),
            doc_version: version,
            ..Default::default()
        };
        let inputs = || vec![self.lineage.topic(topics::DOCUMENTS)];
        out.push(self.lineage_record(
            key,
            EventType::Start,
            "received",
            source.clone(),
            inputs(),
            Vec::new(),
            now,
        )?);

        let mut chunk_ids = Vec::new();
        match decision {
            Decision::Embed { doc, hash, chunks } => {
                let mut record = vectors_of(doc, hash, chunks, vectors, model_id);
                record.trace_id = Some(item.trace.trace_id_hex());
                chunk_ids = record.chunks.iter().map(|c| c.chunk_id.clone()).collect();
                out.push(self.vectors_record(item, &record)?);
                let chunked = VecstreamFacet {
                    content_hash: Some(hash.clone()),
                    chunk_ids: chunk_ids.clone(),
                    ..source.clone()
                };
                out.push(self.lineage_record(
                    key,
                    EventType::Running,
                    "chunked",
                    chunked,
                    inputs(),
                    Vec::new(),
                    now,
                )?);
            }
            Decision::Delete {
                doc_id,
                tenant,
                version,
                ..
            } => {
                out.push(self.vectors_record(item, &delete_of(doc_id, tenant, *version, model_id))?)
            }
            Decision::DeadLetter(d) => {
                let record = d.to_record(now, self.dlq_record_limit);
                out.push(OutRecord {
                    topic: topics::DOCUMENTS_DLQ,
                    key: record.key.unwrap_or_default(),
                    payload: record.payload,
                    partition: None,
                    headers: Some(with_traceparent(record.headers, &item.trace)),
                })
            }
            Decision::Skip { .. } | Decision::Escalate { .. } => {}
        }

        let outcome = decision.outcome();
        let (event_type, output) = outcome.lineage();
        let facet = VecstreamFacet {
            chunk_ids,
            ..self.outcome_facet(item, source)
        };
        let outputs = match output {
            Output::Nothing => Vec::new(),
            Output::Vectors => vec![self.lineage.topic(topics::VECTORS)],
            Output::DeadLetters => vec![self.lineage.topic(topics::DOCUMENTS_DLQ)],
        };
        out.push(self.lineage_record(
            key,
            event_type,
            outcome.as_str(),
            facet,
            inputs(),
            outputs,
            now,
        )?);

        if let Some((key, state)) = decision.state_after(model_id, item.before.as_ref()) {
            out.push(state_record(item.partition, &key, state.as_ref()));
        }
        Ok(())
    }

    /// What the outcome event says beyond the source: per decision.
    fn outcome_facet(&self, item: &Item, source: VecstreamFacet) -> VecstreamFacet {
        match &item.decision {
            Decision::Embed { hash, .. } => VecstreamFacet {
                content_hash: Some(hash.clone()),
                backend: item.embedded_by.as_ref().map(|(_, b)| b.clone()),
                provider: item.embedded_by.as_ref().map(|(p, _)| p.clone()),
                duration_ms: item.embed_ms,
                ..source
            },
            Decision::Skip { hash, .. } => VecstreamFacet {
                content_hash: (!hash.is_empty()).then(|| hash.clone()),
                ..source
            },
            Decision::Escalate { hash, tokens, .. } => VecstreamFacet {
                content_hash: Some(hash.clone()),
                workflow_id: item.workflow_id.clone(),
                error: Some(format!(
                    "{tokens} tokens over embedder.large_document_tokens = {}",
                    self.large_document_tokens
                )),
                ..source
            },
            Decision::DeadLetter(d) => VecstreamFacet {
                error: Some(format!("{}: {}", d.reason.as_str(), d.message)),
                ..source
            },
            Decision::Delete { .. } => source,
        }
    }

    fn vectors_record(
        &self,
        item: &Item,
        record: &DocumentVectors,
    ) -> Result<OutRecord, PipelineError> {
        let (id, schema) = &self.vectors_schema;
        Ok(OutRecord {
            topic: topics::VECTORS,
            key: record.record_key().into_bytes(),
            payload: Some(wire::encode(*id, schema, record)?),
            // Same partition as the document: per-document order holds end to end.
            partition: Some(item.partition),
            headers: Some(with_traceparent(OwnedHeaders::new(), &item.trace)),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn lineage_record(
        &self,
        key: &str,
        event_type: EventType,
        outcome: &str,
        facet: VecstreamFacet,
        inputs: Vec<Dataset>,
        outputs: Vec<Dataset>,
        now: i64,
    ) -> Result<OutRecord, PipelineError> {
        let event = self
            .lineage
            .event(event_type, outcome, facet, inputs, outputs, now);
        let (id, schema) = &self.lineage_schema;
        Ok(OutRecord {
            topic: topics::LINEAGE,
            key: key.as_bytes().to_vec(),
            payload: Some(wire::encode(*id, schema, &event)?),
            partition: None,
            headers: None,
        })
    }
}

/// The state-topic record of a document (by its record key): its new state, or a
/// tombstone that forgets it.
pub(super) fn state_record(partition: i32, key: &str, state: Option<&DocState>) -> OutRecord {
    OutRecord {
        topic: topics::EMBEDDER_STATE,
        key: key.as_bytes().to_vec(),
        payload: state.map(|s| serde_json::to_vec(s).expect("state serialises")),
        partition: Some(partition),
        headers: None,
    }
}
