//! Inputs and outputs of the [`super::JobActivities`] (the JSON in the workflow histories).

use serde::{Deserialize, Serialize};
use vecstream_core::EventType;

use crate::types::{EvalSpec, ModelTarget};

/// Input of `reindex.prepare`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareInput {
    pub alias: String,
    pub target: ModelTarget,
    pub target_model_id: String,
    /// The reindex's workflow id: another migration of the alias in progress is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workflow_id: String,
}

/// What `reindex.prepare` found and made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub target_collection: String,
    pub live_collection: Option<String>,
    pub live_target: Option<ModelTarget>,
    /// `(partition, low, high)` of the documents topic.
    pub bounds: Vec<(i32, i64, i64)>,
    /// The live model and collection, when known (migration state, or the worker's model).
    #[serde(default)]
    pub live_model: Option<crate::migration::ModelCollection>,
}

/// Input of `reindex.scan_range`: offsets `[from, to)` of one partition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRange {
    pub target: ModelTarget,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
    /// Only this tenant's documents.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Models whose collections the range also goes into (a migration keeps them current).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<ModelTarget>,
    /// The reindex's lineage run: the scan's per-document lineage names it as parent
    /// (empty: the scan publishes no per-document lineage, as before).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lineage_run_id: String,
}

/// Input of `reindex.migration`: one step of the alias's migration state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationStep {
    pub alias: String,
    pub workflow_id: String,
    pub event: crate::migration::MigrationEvent,
}

/// Input of `reindex.swap_alias`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwapAlias {
    pub alias: String,
    pub collection: String,
}

/// Input of `reindex.drop_collection`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropCollection {
    pub alias: String,
    pub collection: String,
}

/// Input of `reindex.lineage`: one phase event of a workflow run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseEvent {
    pub workflow_id: String,
    pub run_id: String,
    pub job: String,
    /// `START`, `RUNNING`, `COMPLETE` or `FAIL` on the wire (the same strings as before it
    /// was typed).
    pub event_type: EventType,
    /// The workflow's phase (`preparing`, `scanning`, ..., or `failed`): a label.
    pub phase: String,
    pub model_id: String,
    /// The collection the job writes, if any: `""` on the wire for none, as older workers
    /// (which read a required string) expect.
    #[serde(
        default,
        deserialize_with = "crate::types::empty_is_none",
        serialize_with = "crate::types::none_as_empty"
    )]
    pub collection: Option<String>,
    pub time_ms: i64,
    #[serde(default)]
    pub error: Option<String>,
    /// The review decision this phase follows from (approved, rejected): its verified
    /// reviewer and key fingerprint go into the lineage event.
    #[serde(default)]
    pub review: Option<crate::types::ReviewDecision>,
}

/// Input of `review.check`: a `review` payload and what it must match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewCheckInput {
    pub workflow_id: String,
    /// The id the request must name (the open review's; for a rollback, the approved
    /// review's), as the workflow knows it.
    pub review_id: String,
    /// What the request must be signed for.
    #[serde(default = "review_purpose")]
    pub purpose: crate::signing::Purpose,
    /// The payload as received (any JSON).
    pub request: serde_json::Value,
    /// The job's signed start, if any.
    #[serde(default)]
    pub started_by: Option<crate::signing::SignedStatement>,
    /// When the job started (workflow time): the signed start must be from then.
    #[serde(default)]
    pub started_at_ms: i64,
}

fn review_purpose() -> crate::signing::Purpose {
    crate::signing::Purpose::Review
}

/// Result of `review.check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewCheck {
    /// Signed by a trusted key, for this review, within the worker's rules.
    Accepted(crate::types::ReviewDecision),
    /// Refused: the stable reason name and the reason in words.
    Refused { code: String, reason: String },
}

/// Input of `eval.collection`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalCollection {
    pub collection: String,
    pub target: ModelTarget,
    pub spec: EvalSpec,
    /// How the queries search (none: nearest vectors, as before modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<vecstream_weaviate::SearchMode>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_events_written_before_typing_still_read() {
        let old: PhaseEvent = serde_json::from_str(
            r#"{"workflow_id": "w", "run_id": "r", "job": "finetune", "event_type": "START",
                "phase": "validating", "model_id": "m", "collection": "", "time_ms": 1}"#,
        )
        .unwrap();
        assert_eq!(old.event_type, EventType::Start);
        assert_eq!(old.collection, None);
        let v = serde_json::to_value(&old).unwrap();
        assert_eq!(v["event_type"], "START");
        assert_eq!(v["collection"], "", "older workers read a required string");
    }
}
