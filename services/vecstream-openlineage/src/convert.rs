//! From a `vecstream.v1.LineageEvent` (Avro) to an OpenLineage run event (JSON).
//!
//! How the events are modelled, so that lineage tools render them well:
//! - **a job per stage**: `embedder`, `sink`, `reindexer` (a reindex's per-document work)
//!   and one per workflow (`reindex`, `finetune`...), in `openlineage.namespace`;
//! - **a run per document version and stage**: its id is a UUIDv5 of the job, the tenant,
//!   the document id, its version and the model, so the events of one document version in
//!   one stage (`received` START, `chunked` RUNNING, then the outcome) share it however
//!   often the record is re-delivered, and a run escalated to Temporal (RUNNING) is closed
//!   by the workflow's COMPLETE or FAIL. Every run ends in COMPLETE or FAIL: outcomes the
//!   Avro topic marks OTHER (unchanged, fenced, superseded) complete the run;
//! - **datasets** for the Kafka topics (`kafka://host:port`, the topic) and the Weaviate
//!   collections (`weaviate://host:port`, the collection), each with the `schema` facet;
//! - **parent run facet**: a sink run's parent is the embedder run of the same document
//!   version; a reindex's per-document runs name the reindex's run;
//! - **errorMessage facet** on FAIL (dead letters);
//! - **`vecstream` run facet** (schema `schemas/openlineage/VecstreamRunFacet.json`):
//!   chunk ids, model id, backend, provider, content hash, source offset, trace id.

use serde_json::{Map, Value, json};
use uuid::Uuid;
use vecstream_core::{Dataset, EventType, LineageEvent, VecstreamFacet, topics};

/// The OpenLineage spec version the events follow (openlineage-python 1.54's).
pub const SPEC_SCHEMA_URL: &str =
    "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const PARENT_FACET_URL: &str =
    "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet";
const ERROR_FACET_URL: &str = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet";
const SCHEMA_FACET_URL: &str =
    "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet";
const JOB_TYPE_FACET_URL: &str =
    "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet";
const ENGINE_FACET_URL: &str = "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet";
/// Where the `vecstream` run facet's schema lives (a copy is `schemas/openlineage/`).
pub const VECSTREAM_FACET_URL: &str = concat!(
    "https://raw.githubusercontent.com/vecstream/vecstream/v",
    env!("CARGO_PKG_VERSION"),
    "/schemas/openlineage/VecstreamRunFacet.json#/$defs/VecstreamRunFacet"
);
/// The `_producer` of facets and `producer` of events.
pub const PRODUCER: &str = concat!(
    "https://github.com/vecstream/vecstream/tree/v",
    env!("CARGO_PKG_VERSION")
);
/// Namespace of OpenLineage run ids. Fixed forever.
const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x7b2f0c1e_5a4d_4c8b_9e61_0d3a8f6b2c17);

/// The embedder's job: its runs are what a sink run's parent facet names.
const EMBEDDER_JOB: &str = "embedder";

/// Converts Avro lineage events to OpenLineage run events.
#[derive(Debug, Clone)]
pub struct OpenLineageModel {
    namespace: String,
    /// Schema facets of the datasets we know, by dataset name.
    schemas: std::collections::BTreeMap<String, Value>,
}

impl OpenLineageModel {
    /// `namespace` is the job namespace (`openlineage.namespace`).
    pub fn new(namespace: &str) -> Self {
        let mut schemas = std::collections::BTreeMap::new();
        for (topic, avsc) in [
            (topics::DOCUMENTS, vecstream_kafka::schemas::DOCUMENT),
            (topics::VECTORS, vecstream_kafka::schemas::DOCUMENT_VECTORS),
        ] {
            if let Ok(schema) = serde_json::from_str::<Value>(avsc) {
                schemas.insert(topic.to_owned(), schema_facet(avro_fields(&schema)));
            }
        }
        // Dead letters keep the original bytes; what a dead letter adds is its headers.
        schemas.insert(
            topics::DOCUMENTS_DLQ.to_owned(),
            schema_facet(vec![
                field("key", "bytes", "the original record key"),
                field("value", "bytes", "the original record value, whole or cut"),
                field(
                    "vecstream.error.class",
                    "header",
                    "poison or transient, with .reason, .stage and the source position",
                ),
            ]),
        );
        Self {
            namespace: namespace.to_owned(),
            schemas,
        }
    }

    /// The OpenLineage run id of an Avro event's run (see the module docs).
    pub fn run_id(&self, event: &LineageEvent) -> String {
        let f = &event.vecstream;
        match &f.doc_id {
            Some(doc_id) => doc_run_id(
                &event.job.name,
                f.tenant.as_deref().unwrap_or(""),
                doc_id,
                f.doc_version,
                f.model_id.as_deref().unwrap_or(""),
                (f.source_partition, f.source_offset),
            ),
            // A workflow's run: its Temporal run id (a UUID) when it is one.
            None => match Uuid::parse_str(&event.run.run_id) {
                Ok(id) => id.to_string(),
                Err(_) => Uuid::new_v5(&RUN_NAMESPACE, event.run.run_id.as_bytes()).to_string(),
            },
        }
    }

    /// The OpenLineage run event of one Avro lineage event.
    pub fn run_event(&self, event: &LineageEvent) -> Value {
        let f = &event.vecstream;
        let (stage, outcome) = f.stage.split_once(':').unwrap_or(("", f.stage.as_str()));
        // Outcomes that end a run without output (unchanged, fenced, superseded) are
        // OTHER in the Avro topic; here they complete the run.
        let event_type = match event.event_type {
            EventType::Start => "START",
            EventType::Running => "RUNNING",
            EventType::Complete | EventType::Other => "COMPLETE",
            EventType::Abort => "ABORT",
            EventType::Fail => "FAIL",
        };
        let mut run_facets = Map::new();
        if let Some(parent) = self.parent(event) {
            run_facets.insert("parent".into(), parent);
        }
        if event.event_type == EventType::Fail {
            run_facets.insert(
                "errorMessage".into(),
                json!({
                    "_producer": PRODUCER,
                    "_schemaURL": ERROR_FACET_URL,
                    "message": f.error.clone().unwrap_or_else(|| outcome.to_owned()),
                    "programmingLanguage": "RUST",
                }),
            );
        }
        run_facets.insert(
            "processing_engine".into(),
            json!({
                "_producer": PRODUCER,
                "_schemaURL": ENGINE_FACET_URL,
                "name": "vecstream",
                "version": env!("CARGO_PKG_VERSION"),
            }),
        );
        run_facets.insert(
            "vecstream".into(),
            vecstream_facet(f, stage, outcome, &event.run.run_id),
        );
        let streaming = matches!(event.job.name.as_str(), "embedder" | "sink");
        json!({
            "eventType": event_type,
            "eventTime": event_time(event.event_time),
            "run": {"runId": self.run_id(event), "facets": run_facets},
            "job": {
                "namespace": self.namespace,
                "name": event.job.name,
                "facets": {
                    "jobType": {
                        "_producer": PRODUCER,
                        "_schemaURL": JOB_TYPE_FACET_URL,
                        "processingType": if streaming { "STREAMING" } else { "BATCH" },
                        "integration": "VECSTREAM",
                        "jobType": event.job.name.to_uppercase(),
                    }
                }
            },
            "inputs": event.inputs.iter().map(|d| self.dataset(d)).collect::<Vec<_>>(),
            "outputs": event.outputs.iter().map(|d| self.dataset(d)).collect::<Vec<_>>(),
            "producer": PRODUCER,
            "schemaURL": SPEC_SCHEMA_URL,
        })
    }

    /// The run that caused this one: the embedder run of the same document version for a
    /// sink run; the run the Avro event names as parent (a reindex's documents).
    fn parent(&self, event: &LineageEvent) -> Option<Value> {
        let f = &event.vecstream;
        let (run_id, job) = if let Some(parent) = &event.run.parent_run_id {
            let job = f
                .workflow_id
                .as_deref()
                .and_then(|w| w.split('-').next())
                .unwrap_or("reindex")
                .to_owned();
            let id = Uuid::parse_str(parent)
                .unwrap_or_else(|_| Uuid::new_v5(&RUN_NAMESPACE, parent.as_bytes()));
            (id.to_string(), job)
        } else if event.job.name == "sink" {
            let doc_id = f.doc_id.as_deref()?;
            f.doc_version?;
            let id = doc_run_id(
                EMBEDDER_JOB,
                f.tenant.as_deref().unwrap_or(""),
                doc_id,
                f.doc_version,
                f.model_id.as_deref().unwrap_or(""),
                (None, None),
            );
            (id, EMBEDDER_JOB.to_owned())
        } else {
            return None;
        };
        Some(json!({
            "_producer": PRODUCER,
            "_schemaURL": PARENT_FACET_URL,
            "run": {"runId": run_id},
            "job": {"namespace": self.namespace, "name": job},
        }))
    }

    /// A dataset: Kafka topics keep their `kafka://host:port` namespace, Weaviate
    /// collections get `weaviate://host:port`; both carry the schema facet we know.
    fn dataset(&self, d: &Dataset) -> Value {
        let namespace = match d.namespace.split_once("://") {
            Some(("http" | "https", rest)) => format!("weaviate://{}", rest.trim_end_matches('/')),
            _ => d.namespace.clone(),
        };
        let schema = if vecstream_weaviate::is_chunk_collection(&d.name) {
            Some(collection_schema(&d.name))
        } else {
            self.schemas.get(&d.name).cloned()
        };
        let mut facets = Map::new();
        if let Some(s) = schema {
            facets.insert("schema".into(), s);
        }
        json!({"namespace": namespace, "name": d.name, "facets": facets})
    }
}

/// Run id of one document version in one stage. Without a version (a record too broken to
/// name one), the source position tells the runs apart.
fn doc_run_id(
    job: &str,
    tenant: &str,
    doc_id: &str,
    version: Option<i64>,
    model_id: &str,
    position: (Option<i32>, Option<i64>),
) -> String {
    let name = match version {
        Some(v) => format!("{job}\0{tenant}\0{doc_id}\0{v}\0{model_id}"),
        None => format!(
            "{job}\0{tenant}\0{doc_id}\0?\0{model_id}\0{:?}\0{:?}",
            position.0, position.1
        ),
    };
    Uuid::new_v5(&RUN_NAMESPACE, name.as_bytes()).to_string()
}

fn event_time(ms: i64) -> String {
    // RFC 3339 writes years 1970..=9999 here: a foreign record's time outside them is clamped.
    let ms = ms.clamp(0, 253_402_300_799_999);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn vecstream_facet(f: &VecstreamFacet, stage: &str, outcome: &str, avro_run_id: &str) -> Value {
    let mut v = Map::new();
    v.insert("_producer".into(), PRODUCER.into());
    v.insert("_schemaURL".into(), VECSTREAM_FACET_URL.into());
    v.insert("stage".into(), stage.into());
    v.insert("outcome".into(), outcome.into());
    v.insert("lineageRunId".into(), avro_run_id.into());
    let mut put = |k: &str, value: Option<Value>| {
        if let Some(value) = value {
            v.insert(k.into(), value);
        }
    };
    put("tenant", f.tenant.clone().map(Value::from));
    put("docId", f.doc_id.clone().map(Value::from));
    // Decimal text: versions are 64-bit and JSON readers often hold numbers as doubles.
    put("docVersion", f.doc_version.map(|n| n.to_string().into()));
    put("contentHash", f.content_hash.clone().map(Value::from));
    put(
        "chunkIds",
        (!f.chunk_ids.is_empty()).then(|| f.chunk_ids.clone().into()),
    );
    put("modelId", f.model_id.clone().map(Value::from));
    put("backend", f.backend.clone().map(Value::from));
    put("provider", f.provider.clone().map(Value::from));
    put("sourceTopic", f.source_topic.clone().map(Value::from));
    put("sourcePartition", f.source_partition.map(Value::from));
    put("sourceOffset", f.source_offset.map(Value::from));
    put(
        "targetCollection",
        f.target_collection.clone().map(Value::from),
    );
    put("workflowId", f.workflow_id.clone().map(Value::from));
    put("traceId", f.trace_id.clone().map(Value::from));
    put("durationMs", f.duration_ms.map(Value::from));
    put("detail", f.error.clone().map(Value::from));
    put("reviewer", f.reviewer.clone().map(Value::from));
    put("reviewerKey", f.reviewer_key.clone().map(Value::from));
    Value::Object(v)
}

fn field(name: &str, ty: &str, description: &str) -> Value {
    let mut f = json!({"name": name, "type": ty});
    if !description.is_empty() {
        f["description"] = description.into();
    }
    f
}

fn schema_facet(fields: Vec<Value>) -> Value {
    json!({"_producer": PRODUCER, "_schemaURL": SCHEMA_FACET_URL, "fields": fields})
}

/// The fields of an Avro record schema (JSON), nested records as nested fields.
fn avro_fields(record: &Value) -> Vec<Value> {
    let Some(fields) = record.get("fields").and_then(Value::as_array) else {
        return Vec::new();
    };
    fields
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?;
            let ty = f.get("type")?;
            let mut out = field(
                name,
                &avro_type(ty),
                f.get("doc").and_then(Value::as_str).unwrap_or(""),
            );
            let nested = match ty {
                Value::Object(o) if o.get("type") == Some(&"record".into()) => avro_fields(ty),
                Value::Object(o) if o.get("type") == Some(&"array".into()) => {
                    o.get("items").map(avro_fields).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            if !nested.is_empty() {
                out["fields"] = nested.into();
            }
            Some(out)
        })
        .collect()
}

fn avro_type(ty: &Value) -> String {
    match ty {
        Value::String(s) => s.clone(),
        Value::Array(branches) => branches.iter().map(avro_type).collect::<Vec<_>>().join("|"),
        Value::Object(o) => {
            let kind = o.get("type").map(avro_type).unwrap_or_default();
            match (kind.as_str(), o.get("logicalType").and_then(Value::as_str)) {
                (_, Some(logical)) => format!("{kind}({logical})"),
                ("array", _) => format!(
                    "array<{}>",
                    o.get("items").map(avro_type).unwrap_or_default()
                ),
                ("map", _) => format!(
                    "map<{}>",
                    o.get("values").map(avro_type).unwrap_or_default()
                ),
                ("record" | "enum", _) => o
                    .get("name")
                    .and_then(Value::as_str)
                    .map(|n| format!("{kind}({n})"))
                    .unwrap_or(kind),
                _ => kind,
            }
        }
        _ => String::new(),
    }
}

/// The schema facet of a chunk collection: its properties as vecstream creates them.
fn collection_schema(name: &str) -> Value {
    let spec = vecstream_weaviate::CollectionSpec::chunks_named(name, Default::default());
    schema_facet(
        spec.properties
            .iter()
            .map(|p| {
                let how = match p.tokenization.as_deref() {
                    Some(t) => format!("tokenization {t}"),
                    None => String::new(),
                };
                field(&p.name, &p.data_type.join(","), &how)
            })
            .chain(std::iter::once(field(
                "vector",
                "float[]",
                "the chunk's embedding (cosine distance)",
            )))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecstream_core::{Job, Run};

    fn event(job: &str, stage: &str, ty: EventType, offset: i64) -> LineageEvent {
        LineageEvent {
            event_type: ty,
            event_time: 1_764_590_400_123,
            run: Run {
                run_id: Uuid::new_v4().to_string(),
                parent_run_id: None,
            },
            job: Job {
                namespace: "vecstream".into(),
                name: job.into(),
            },
            inputs: vec![Dataset {
                namespace: "kafka://127.0.0.1:9092".into(),
                name: topics::DOCUMENTS.into(),
            }],
            outputs: vec![Dataset {
                namespace: "http://127.0.0.1:8080".into(),
                name: "Chunk_m_0badf00d".into(),
            }],
            producer: PRODUCER.into(),
            vecstream: VecstreamFacet {
                stage: stage.into(),
                doc_id: Some("d1".into()),
                tenant: Some("acme".into()),
                doc_version: Some(9_007_199_254_740_993),
                model_id: Some("m".into()),
                source_partition: Some(0),
                source_offset: Some(offset),
                chunk_ids: vec!["8f2d5a9e-3b1c-5d7e-9f0a-1b2c3d4e5f60".into()],
                error: Some("poison: empty body".into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn one_run_per_document_version_and_stage_that_always_completes_or_fails() {
        let m = OpenLineageModel::new("vecstream");
        let start = m.run_event(&event("embedder", "embed:received", EventType::Start, 7));
        // A re-delivery at another offset is the same run; a skip completes it.
        let skipped = m.run_event(&event("embedder", "embed:unchanged", EventType::Other, 9));
        assert_eq!(start["run"]["runId"], skipped["run"]["runId"]);
        assert_eq!(skipped["eventType"], "COMPLETE");
        assert_eq!(start["eventType"], "START");
        assert_eq!(start["eventTime"], "2025-12-01T12:00:00.123Z");
        assert_eq!(start["schemaURL"], SPEC_SCHEMA_URL);
        // The sink's run is another, whose parent is the embedder's.
        let sink = m.run_event(&event("sink", "sink:upserted", EventType::Complete, 3));
        assert_ne!(sink["run"]["runId"], start["run"]["runId"]);
        assert_eq!(
            sink["run"]["facets"]["parent"]["run"]["runId"],
            start["run"]["runId"]
        );
        assert_eq!(sink["run"]["facets"]["parent"]["job"]["name"], "embedder");
        assert!(start["run"]["facets"].get("parent").is_none());
        // Facets: custom, error only on FAIL; versions exact.
        let v = &sink["run"]["facets"]["vecstream"];
        assert_eq!(v["docVersion"], "9007199254740993");
        assert_eq!(v["chunkIds"][0], "8f2d5a9e-3b1c-5d7e-9f0a-1b2c3d4e5f60");
        assert!(sink["run"]["facets"].get("errorMessage").is_none());
        let failed = m.run_event(&event(
            "embedder",
            "embed:dead_lettered",
            EventType::Fail,
            7,
        ));
        // `VECSTREAM_DUMP_OPENLINEAGE=FILE`: the events as JSON, for a schema check by hand.
        if let Ok(path) = std::env::var("VECSTREAM_DUMP_OPENLINEAGE") {
            let all = serde_json::to_string(&[&start, &sink, &failed]).unwrap();
            std::fs::write(path, all).unwrap();
        }
        assert_eq!(
            failed["run"]["facets"]["errorMessage"]["message"],
            "poison: empty body"
        );
        // Datasets: Weaviate's namespace, schema facets from the Avro schema and the
        // collection spec.
        let output = &sink["outputs"][0];
        assert_eq!(output["namespace"], "weaviate://127.0.0.1:8080");
        let fields = output["facets"]["schema"]["fields"].as_array().unwrap();
        assert!(fields.iter().any(|f| f["name"] == "doc_key"));
        let input = &sink["inputs"][0]["facets"]["schema"]["fields"];
        let metadata = input
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "metadata")
            .unwrap();
        assert_eq!(metadata["type"], "map<string>");
    }

    #[test]
    fn a_reindex_document_names_the_reindex_run_and_workflow_runs_keep_their_ids() {
        let m = OpenLineageModel::new("vecstream");
        let workflow_run = Uuid::new_v4().to_string();
        let mut doc = event("reindexer", "reindex:embedded", EventType::Complete, 1);
        doc.run.parent_run_id = Some(workflow_run.clone());
        doc.vecstream.workflow_id = Some("reindex-Chunks-m".into());
        let e = m.run_event(&doc);
        assert_eq!(e["run"]["facets"]["parent"]["run"]["runId"], workflow_run);
        assert_eq!(e["run"]["facets"]["parent"]["job"]["name"], "reindex");
        let mut phase = event("reindex", "reindex:scanning", EventType::Running, 0);
        phase.vecstream.doc_id = None;
        phase.run.run_id = workflow_run.clone();
        assert_eq!(m.run_event(&phase)["run"]["runId"], workflow_run);
        assert_eq!(
            m.run_event(&phase)["job"]["facets"]["jobType"]["processingType"],
            "BATCH"
        );
    }
}
