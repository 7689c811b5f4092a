//! Records of the topics, field for field as in `schemas/*.avsc` (serde names match Avro).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `vecstream.v1.Document`: one version of a producer's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable document id; also the Kafka key.
    pub id: String,
    /// Tenant, "default" unless the producer says otherwise.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Where the document came from (URI, system name).
    pub source: String,
    /// Optional title.
    #[serde(default)]
    pub title: Option<String>,
    /// UTF-8 text.
    pub body: String,
    /// MIME type of `body`.
    pub content_type: String,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Producer-supplied version, monotonic per id.
    pub version: i64,
    /// True marks a delete.
    #[serde(default)]
    pub deleted: bool,
    /// Milliseconds since the Unix epoch when the producer emitted this version.
    pub produced_at: i64,
}

/// The tenant of documents that name none.
pub fn default_tenant() -> String {
    crate::DEFAULT_TENANT.to_owned()
}

impl Document {
    /// The Kafka record key of this document ([`crate::record_key`]).
    pub fn record_key(&self) -> String {
        crate::record_key(&self.tenant, &self.id)
    }
}

impl DocumentVectors {
    /// The Kafka record key of this record's document ([`crate::record_key`]).
    pub fn record_key(&self) -> String {
        crate::record_key(&self.tenant, &self.doc_id)
    }
}

/// `vecstream.v1.DocumentVectors`: all chunks of one document version, or a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentVectors {
    pub doc_id: String,
    pub doc_version: i64,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub model_id: String,
    pub content_hash: String,
    #[serde(default)]
    pub deleted: bool,
    /// The document's source, title and metadata, for filters and keyword search.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Milliseconds since the epoch when the producer produced the version.
    #[serde(default)]
    pub produced_at: Option<i64>,
    /// W3C trace id of the document's trace.
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub chunks: Vec<ChunkVector>,
}

/// One embedded chunk inside [`DocumentVectors`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkVector {
    /// UUIDv5 from [`crate::chunk_id`], as its canonical string.
    pub chunk_id: String,
    pub index: i32,
    pub text: String,
    pub char_start: i32,
    pub char_end: i32,
    pub token_count: i32,
    pub vector: Vec<f32>,
}

/// OpenLineage run event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Start,
    Running,
    Complete,
    Abort,
    Fail,
    Other,
}

/// `vecstream.v1.LineageEvent`: an OpenLineage-shaped RunEvent with a vecstream facet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEvent {
    #[serde(rename = "eventType")]
    pub event_type: EventType,
    /// Milliseconds since the Unix epoch.
    #[serde(rename = "eventTime")]
    pub event_time: i64,
    pub run: Run,
    pub job: Job,
    #[serde(default)]
    pub inputs: Vec<Dataset>,
    #[serde(default)]
    pub outputs: Vec<Dataset>,
    /// URI of the emitting software.
    pub producer: String,
    pub vecstream: VecstreamFacet,
}

/// OpenLineage run identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    #[serde(rename = "runId")]
    pub run_id: String,
    #[serde(rename = "parentRunId", default)]
    pub parent_run_id: Option<String>,
}

/// OpenLineage job identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub namespace: String,
    pub name: String,
}

/// OpenLineage dataset reference (a topic, a collection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
}

/// What vecstream adds to a lineage event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VecstreamFacet {
    pub stage: String,
    #[serde(default)]
    pub doc_id: Option<String>,
    #[serde(default)]
    pub doc_version: Option<i64>,
    #[serde(default)]
    pub content_hash: Option<String>,
    #[serde(default)]
    pub chunk_ids: Vec<String>,
    #[serde(default)]
    pub model_id: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub source_topic: Option<String>,
    #[serde(default)]
    pub source_partition: Option<i32>,
    #[serde(default)]
    pub source_offset: Option<i64>,
    #[serde(default)]
    pub target_collection: Option<String>,
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    /// The document's tenant: with `doc_id`, its identity (None on run events).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Run events that follow a review (approved, rejected): the reviewer, as the worker's
    /// trusted keys name the signing key.
    #[serde(default)]
    pub reviewer: Option<String>,
    /// ... and that key's fingerprint (`SHA256:...`).
    #[serde(default)]
    pub reviewer_key: Option<String>,
    /// Who embedded (`embedded` events): `local` or the name of a remote provider of
    /// `engine.providers`; with `backend` (`cpu`, `cuda`, `openai`, `tei`).
    #[serde(default)]
    pub provider: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_json_defaults_match_the_schema_defaults() {
        let doc: Document = serde_json::from_str(
            r#"{"id":"a","source":"s","body":"b","content_type":"text/plain","version":1,"produced_at":0}"#,
        )
        .unwrap();
        assert_eq!(doc.tenant, "default");
        assert_eq!(doc.title, None);
        assert!(doc.metadata.is_empty());
        assert!(!doc.deleted);
    }

    #[test]
    fn lineage_field_names_follow_openlineage() {
        let ev = LineageEvent {
            event_type: EventType::Complete,
            event_time: 1,
            run: Run {
                run_id: "r".into(),
                parent_run_id: None,
            },
            job: Job {
                namespace: "vecstream".into(),
                name: "embedder".into(),
            },
            inputs: vec![],
            outputs: vec![],
            producer: "vecstream".into(),
            vecstream: VecstreamFacet {
                stage: "embedded".into(),
                ..Default::default()
            },
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["eventType"], "COMPLETE");
        assert_eq!(json["run"]["runId"], "r");
        assert_eq!(json["vecstream"]["stage"], "embedded");
    }
}
