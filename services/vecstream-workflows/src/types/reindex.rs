//! The reindex's and the large document's inputs, progress and results.

use serde::{Deserialize, Serialize};

use super::{
    EvalReport, EvalSpec, JobProgress, ModelTarget, ReviewDecision, ReviewGate, default_gpu_queue,
    default_heartbeat, empty_is_none,
};

/// Input of [`crate::ReindexWorkflow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReindexInput {
    /// The alias searches use (`weaviate.alias`, `Chunks`).
    pub alias: String,
    pub target: ModelTarget,
    /// Model id of `target` (computed by the starter; the workflow id contains it).
    pub target_model_id: String,
    #[serde(default)]
    pub eval: Option<EvalSpec>,
    /// Seconds to wait for the review; then the reindex counts as rejected.
    pub review_timeout_secs: u64,
    /// Offsets per scan activity.
    #[serde(default = "default_range")]
    pub range_offsets: i64,
    /// While waiting for the review, new documents are copied this often (seconds).
    #[serde(default = "default_catch_up")]
    pub catch_up_secs: u64,
    /// Only this tenant's documents (for an alias that serves one tenant); `None` = all.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Task queue of the scan activities.
    #[serde(default = "default_gpu_queue")]
    pub gpu_queue: String,
    /// Heartbeat timeout of a scan activity (seconds): a worker silent this long is taken
    /// for dead and the range retried from its last heartbeat.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// History events after which a run continues as new (keeps replays short), even
    /// before the server suggests it.
    #[serde(default = "default_history_budget")]
    pub history_budget: u32,
    /// After approval, how long the previous collection is kept current for a rollback
    /// before it is dropped (seconds).
    #[serde(default = "default_rollback_window")]
    pub rollback_window_secs: u64,
    /// Wait between telling embedders to leave a collection and dropping it (seconds).
    #[serde(default = "default_switch_grace")]
    pub switch_grace_secs: u64,
    /// Progress handed over by continue-as-new.
    #[serde(default)]
    pub carried: Option<ReindexProgress>,
    /// Who started it, signed with their reviewer key (`review.key`), if they have one.
    #[serde(default)]
    pub starter: Option<crate::signing::SignedStatement>,
}

fn default_rollback_window() -> u64 {
    86_400
}

fn default_switch_grace() -> u64 {
    30
}

fn default_range() -> i64 {
    500
}

fn default_catch_up() -> u64 {
    10
}

fn default_history_budget() -> u32 {
    4_000
}

/// Where a reindex is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Preparing,
    Scanning,
    Evaluating,
    AwaitingReview,
    Swapping,
    /// Approved: the alias serves the new collection; the previous one is kept current
    /// until the window closes or `rollback`.
    RollbackWindow,
    /// The window closed: embedders leave the previous collection, which is then dropped.
    ClosingWindow,
    /// Rolling back: the alias returns to the previous collection; the new one is dropped.
    RollingBack,
    Dropping,
    Approved,
    Rejected,
    RolledBack,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preparing => "preparing",
            Phase::Scanning => "scanning",
            Phase::Evaluating => "evaluating",
            Phase::AwaitingReview => "awaiting_review",
            Phase::Swapping => "swapping",
            Phase::RollbackWindow => "rollback_window",
            Phase::ClosingWindow => "closing_window",
            Phase::RollingBack => "rolling_back",
            Phase::Dropping => "dropping",
            Phase::Approved => "approved",
            Phase::Rejected => "rejected",
            Phase::RolledBack => "rolled_back",
        }
    }
}

/// Scan progress of one partition of `docs.documents.v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    pub partition: i32,
    /// First offset of the scan.
    pub start: i64,
    /// Offsets before this one are done.
    pub done: i64,
    /// End (exclusive) known to the scan; grows with catch-ups.
    pub end: i64,
    /// End when the reindex started: offsets from here on are new, and during a migration
    /// also go into the collections kept current (live, previous). 0 in older progress.
    #[serde(default)]
    pub first_end: i64,
}

/// The `progress` query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReindexProgress {
    pub phase: Phase,
    pub alias: String,
    pub model_id: String,
    pub target_collection: String,
    pub live_collection: Option<String>,
    /// The model of the live collection, when the worker's configured model is it (used
    /// for the side-by-side evaluation).
    pub live_target: Option<ModelTarget>,
    pub partitions: Vec<PartitionProgress>,
    pub documents_embedded: u64,
    pub chunks_written: u64,
    pub documents_deleted: u64,
    pub records_skipped: u64,
    /// Scan activities completed (each one an offset range).
    pub ranges_done: u64,
    /// Workflow time the scan started (ms since the epoch).
    pub scan_started_ms: i64,
    /// Documents per second since the scan started.
    pub rate_docs_per_s: f64,
    /// Seconds left for the offsets still to scan, at the current rate.
    pub eta_secs: Option<f64>,
    pub evaluation: Option<EvalReport>,
    /// The review state (flattened: `awaiting_review`, `review`, `review_id`, ...).
    #[serde(flatten)]
    pub gate: ReviewGate,
    /// Runs of the workflow so far (continue-as-new).
    pub runs: u32,
    /// The first run's id: the lineage run of the whole reindex across continue-as-new
    /// (empty for reindexes started before it was kept).
    #[serde(default)]
    pub lineage_run_id: String,
    /// The model being built, and the one serving when the reindex started (when known:
    /// from the alias's migration state or the worker's configured model). With both known,
    /// the migration keeps both collections current until it ends.
    #[serde(default)]
    pub target_model: Option<crate::migration::ModelCollection>,
    #[serde(default)]
    pub live_model: Option<crate::migration::ModelCollection>,
    /// Documents the catch-ups wrote into the collections kept current (live, previous).
    #[serde(default)]
    pub documents_kept_current: u64,
    /// When the rollback window closes (ms since the epoch).
    #[serde(default)]
    pub rollback_deadline_ms: Option<i64>,
    /// `reindex rollback` asked for during the window (who, why).
    #[serde(default)]
    pub rollback: Option<ReviewDecision>,
    /// `reindex cancel` asked for (who, why): ends the reindex as rejected.
    #[serde(default)]
    pub cancel: Option<ReviewDecision>,
    /// Runs on the migration protocol (dual-write until the end, rollback window); false
    /// for runs started before it.
    #[serde(default)]
    pub migration: bool,
    /// The tenant the reindex is limited to, if any (`reindex start --tenant`).
    #[serde(default)]
    pub tenant: Option<String>,
}

impl ReindexProgress {
    /// The collections of the migration with their roles: `live` and `new` while it is
    /// open, `live` and `previous` in the rollback window.
    pub fn collections(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let (first, second) = match self.phase {
            Phase::RollbackWindow | Phase::ClosingWindow | Phase::Approved => ("previous", "live"),
            _ => ("live", "new"),
        };
        if let Some(live) = &self.live_collection {
            out.push((first, live.clone()));
        }
        if !self.target_collection.is_empty() {
            out.push((second, self.target_collection.clone()));
        }
        out
    }
}

impl ReindexProgress {
    /// Offsets scanned and offsets known, over all partitions.
    pub fn offsets(&self) -> (i64, i64) {
        self.partitions.iter().fold((0, 0), |(d, t), p| {
            (d + (p.done - p.start), t + (p.end - p.start))
        })
    }
}

impl JobProgress for ReindexProgress {
    const JOB: &'static str = "reindex";
    fn phase_name(&self) -> &'static str {
        self.phase.as_str()
    }
    fn gate(&self) -> &ReviewGate {
        &self.gate
    }
    fn gate_mut(&mut self) -> &mut ReviewGate {
        &mut self.gate
    }
    fn finished(&self) -> bool {
        matches!(
            self.phase,
            Phase::Approved | Phase::Rejected | Phase::RolledBack
        )
    }
    fn lineage_model_id(&self) -> String {
        self.model_id.clone()
    }
    fn lineage_collection(&self) -> Option<String> {
        (!self.target_collection.is_empty()).then(|| self.target_collection.clone())
    }
    fn lineage_run_id(&self) -> Option<String> {
        (!self.lineage_run_id.is_empty()).then(|| self.lineage_run_id.clone())
    }
}

/// The result of a finished reindex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReindexResult {
    pub approved: bool,
    pub alias: String,
    pub new_collection: String,
    /// What the alias pointed at before (kept for `reindex rollback`).
    pub previous_collection: Option<String>,
    pub review: Option<ReviewDecision>,
    /// Why it ended so: `approved`, `rejected by <reviewer>`, `review timed out`,
    /// `evaluation below threshold`.
    pub reason: String,
    pub documents_embedded: u64,
    /// Approved, then rolled back in its window (the alias serves the previous collection).
    #[serde(default)]
    pub rolled_back: bool,
}

/// Input of [`crate::LargeDocumentWorkflow`]: where the document is, and the model to
/// embed it with (the escalating embedder's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LargeDocumentInput {
    /// The document's tenant (inputs from before tenants name the default one).
    #[serde(default = "vecstream_core::default_tenant")]
    pub tenant: String,
    pub doc_id: String,
    pub version: i64,
    pub partition: i32,
    pub offset: i64,
    pub target: ModelTarget,
    /// The document's trace (`traceparent`), if it came with one (older inputs say `""`
    /// for none).
    #[serde(
        default,
        deserialize_with = "empty_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub traceparent: Option<String>,
    #[serde(default = "default_gpu_queue")]
    pub gpu_queue: String,
}

/// What a large-document job did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LargeDocumentResult {
    pub chunks: usize,
    pub tokens: usize,
    /// Why nothing was embedded (the record is gone or holds another version), if so.
    pub skipped: Option<String>,
}
