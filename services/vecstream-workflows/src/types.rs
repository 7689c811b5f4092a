//! Inputs, outputs and query answers of the long jobs: what the CLI, the stock `temporal`
//! CLI (JSON payloads) and the workflows exchange. Field names are the JSON contract.

use serde::{Deserialize, Serialize};

/// A model configuration: weights directory plus the settings that change its vectors (and
/// so its model id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTarget {
    /// Directory with config.json, tokenizer.json, model.safetensors (on the worker).
    pub model_dir: String,
    /// Token limit per chunk text; 0 keeps the model's.
    #[serde(default)]
    pub max_seq_length: usize,
    /// `fp32`, `int8` (CPU) or `fp16` (CUDA).
    #[serde(default = "fp32")]
    pub precision: String,
}

impl ModelTarget {
    /// The model of the engine settings (`engine.*`).
    pub fn configured(s: &vecstream_config::EngineSettings) -> Self {
        Self {
            model_dir: s.model_dir.clone(),
            max_seq_length: s.max_seq_length,
            precision: s.precision.clone(),
        }
    }
}

fn fp32() -> String {
    "fp32".into()
}

/// A labelled query set and how to judge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// JSONL file of `{"query": "...", "relevant_doc_ids": ["..."]}` (path on the worker).
    pub suite: String,
    /// Cut-off of recall@k.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Only documents of this tenant count (the suite's corpus).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The candidate's recall@k below this rejects without review.
    #[serde(default)]
    pub min_recall: Option<f64>,
}

fn default_k() -> usize {
    10
}

/// Retrieval quality of one collection on a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub collection: String,
    pub model_id: String,
    pub queries: usize,
    pub recall_at_k: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
}

/// The side-by-side report of [`crate::EvaluateWorkflow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub suite: String,
    pub k: usize,
    pub rows: Vec<EvalRow>,
    /// `min_recall` of the spec, if any.
    pub threshold: Option<f64>,
    /// The last row (the candidate) meets the threshold (true without one).
    pub passed: bool,
}

impl EvalReport {
    /// A plain-text table for terminals.
    pub fn table(&self) -> String {
        let mut out = format!(
            "suite {} (k = {})\n{:<48} {:>8} {:>10} {:>8} {:>9}\n",
            self.suite, self.k, "collection", "queries", "recall@k", "MRR", "nDCG@10"
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{:<48} {:>8} {:>10.4} {:>8.4} {:>9.4}\n",
                r.collection, r.queries, r.recall_at_k, r.mrr, r.ndcg_at_10
            ));
        }
        if let Some(t) = self.threshold {
            out.push_str(&format!(
                "threshold recall@k >= {t}: {}\n",
                if self.passed { "passed" } else { "FAILED" }
            ));
        }
        out
    }
}

/// Input of [`crate::EvaluateWorkflow`]: collections to compare, each with the model that
/// embeds the queries for it; or, with `pairs`, models compared on the held-out split of a
/// pairs file (the names are then labels, not collections).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateInput {
    pub collections: Vec<(String, ModelTarget)>,
    pub spec: EvalSpec,
    #[serde(default)]
    pub pairs: Option<HeldOutPairs>,
    /// Task queue of the embedding activities.
    #[serde(default = "default_gpu_queue")]
    pub gpu_queue: String,
}

fn default_gpu_queue() -> String {
    "vecstream-gpu".into()
}

/// The held-out split of a pairs file: each held-out query ranks every held-out positive and
/// hard negative; its own positive is the one relevant text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutPairs {
    pub pairs: String,
    pub held_out_fraction: f64,
}

/// The `review` signal: a human's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecision {
    pub approve: bool,
    pub reviewer: String,
    #[serde(default)]
    pub comment: String,
}

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
    /// Progress handed over by continue-as-new.
    #[serde(default)]
    pub carried: Option<ReindexProgress>,
}

fn default_range() -> i64 {
    500
}

fn default_catch_up() -> u64 {
    10
}

fn default_heartbeat() -> u64 {
    20
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
    Dropping,
    Approved,
    Rejected,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Preparing => "preparing",
            Phase::Scanning => "scanning",
            Phase::Evaluating => "evaluating",
            Phase::AwaitingReview => "awaiting_review",
            Phase::Swapping => "swapping",
            Phase::Dropping => "dropping",
            Phase::Approved => "approved",
            Phase::Rejected => "rejected",
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
    pub awaiting_review: bool,
    /// When an unanswered review counts as a reject (ms since the epoch).
    pub review_deadline_ms: Option<i64>,
    pub review: Option<ReviewDecision>,
    /// Runs of the workflow so far (continue-as-new).
    pub runs: u32,
}

impl ReindexProgress {
    /// Offsets scanned and offsets known, over all partitions.
    pub fn offsets(&self) -> (i64, i64) {
        self.partitions.iter().fold((0, 0), |(d, t), p| {
            (d + (p.done - p.start), t + (p.end - p.start))
        })
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
}

/// Input of [`crate::LargeDocumentWorkflow`]: where the document is, and the model to
/// embed it with (the escalating embedder's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LargeDocumentInput {
    pub doc_id: String,
    pub version: i64,
    pub partition: i32,
    pub offset: i64,
    pub target: ModelTarget,
    /// The document's trace (`traceparent`).
    #[serde(default)]
    pub traceparent: String,
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

/// Input of [`crate::FineTuneWorkflow`]: train a linear adapter on labelled pairs on top of
/// `base`, evaluate, wait for review, register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneInput {
    pub base: ModelTarget,
    /// JSONL of `{"query", "positive", "negatives"?}` (path on the worker).
    pub pairs: String,
    /// Training settings (epochs, batch size, learning rate, temperature, identity pull,
    /// seed).
    #[serde(default)]
    pub train: vecstream_train::TrainConfig,
    /// Share of the pairs held out for the evaluation (chosen by a hash of the query).
    #[serde(default = "default_held_out")]
    pub held_out_fraction: f64,
    /// Optimiser steps between checkpoints.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Cut-off of recall@k in the evaluation.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Seconds to wait for the review; then the candidate counts as rejected.
    pub review_timeout_secs: u64,
    /// Heartbeat timeout of the embedding and training activities.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Task queue of the embedding and training activities.
    #[serde(default = "default_gpu_queue")]
    pub gpu_queue: String,
}

fn default_held_out() -> f64 {
    0.2
}

fn default_checkpoint_every() -> u64 {
    20
}

/// What the dataset holds (after validation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub pairs: usize,
    pub train: usize,
    pub held_out: usize,
    /// Hard negatives over all pairs.
    pub negatives: usize,
    /// Distinct texts to embed.
    pub texts: usize,
    /// First 12 hex digits of the file's SHA-256.
    pub sha: String,
    pub base_model_id: String,
}

/// How training went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: u64,
    pub epochs: u64,
    pub final_loss: f32,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f32>,
    /// The checkpoint step a retried attempt started from (None: from the start).
    pub resumed_from_step: Option<u64>,
    /// Attempt number of the activity that finished training.
    pub attempt: u32,
    pub seconds: f64,
}

/// The trained model before registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Version name in the model store.
    pub name: String,
    pub model_id: String,
    /// Its staged directory.
    pub model_dir: String,
}

/// Phases of a fine-tuning job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FineTunePhase {
    #[default]
    Validating,
    Embedding,
    Training,
    Evaluating,
    AwaitingReview,
    Registering,
    Registered,
    Rejected,
}

impl FineTunePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Embedding => "embedding",
            Self::Training => "training",
            Self::Evaluating => "evaluating",
            Self::AwaitingReview => "awaiting_review",
            Self::Registering => "registering",
            Self::Registered => "registered",
            Self::Rejected => "rejected",
        }
    }
}

/// The `progress` query of a fine-tuning job. Live training progress (epoch, step, loss)
/// is the training activity's heartbeat (`vecstream finetune status` shows it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FineTuneProgress {
    pub phase: FineTunePhase,
    pub dataset: Option<DatasetSummary>,
    pub training: Option<TrainReport>,
    pub candidate: Option<Candidate>,
    pub evaluation: Option<EvalReport>,
    pub awaiting_review: bool,
    pub review_deadline_ms: Option<i64>,
    pub review: Option<ReviewDecision>,
    /// The registered version (after approval).
    pub registered: Option<Candidate>,
}

/// The training activity's heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainHeartbeat {
    pub epoch: u64,
    pub step: u64,
    pub total_steps: u64,
    pub loss: f32,
    /// Step of the last checkpoint written.
    pub checkpoint_step: u64,
    pub resumed_from_step: Option<u64>,
}

/// Result of [`crate::FineTuneWorkflow`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneResult {
    pub approved: bool,
    /// The registered version (approved) or the discarded candidate.
    pub model: Option<Candidate>,
    pub reason: String,
    pub evaluation: Option<EvalReport>,
    pub training: Option<TrainReport>,
    pub review: Option<ReviewDecision>,
}

/// Deterministic workflow id of a fine-tuning job (DESIGN section 5).
pub fn finetune_workflow_id(base_model_id: &str, dataset_sha: &str) -> String {
    format!("finetune-{base_model_id}-{dataset_sha}")
}

/// Deterministic workflow id of a large document's job (DESIGN section 5).
pub fn large_document_workflow_id(doc_id: &str, version: i64) -> String {
    format!("doc-{doc_id}-{version}")
}

/// Deterministic workflow id of a reindex (DESIGN section 5).
pub fn reindex_workflow_id(alias: &str, model_id: &str) -> String {
    format!("reindex-{alias}-{model_id}")
}

/// Deterministic workflow id of an evaluation (DESIGN section 5).
pub fn eval_workflow_id(collection: &str, suite: &str) -> String {
    let stem = std::path::Path::new(suite)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| suite.to_owned());
    format!("eval-{collection}-{stem}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_design() {
        assert_eq!(
            reindex_workflow_id("Chunks", "all-MiniLM-L6-v2-1a2b3c4d"),
            "reindex-Chunks-all-MiniLM-L6-v2-1a2b3c4d"
        );
        assert_eq!(
            eval_workflow_id("Chunks_x", "/srv/suites/retrieval.jsonl"),
            "eval-Chunks_x-retrieval"
        );
        assert_eq!(
            finetune_workflow_id("all-MiniLM-L6-v2-1a2b3c4d", "0123456789ab"),
            "finetune-all-MiniLM-L6-v2-1a2b3c4d-0123456789ab"
        );
    }

    #[test]
    fn review_signals_parse_from_stock_cli_json() {
        let r: ReviewDecision =
            serde_json::from_str(r#"{"approve": true, "reviewer": "ana"}"#).unwrap();
        assert!(r.approve);
        assert_eq!(r.comment, "");
    }

    #[test]
    fn progress_sums_offsets_over_partitions() {
        let p = ReindexProgress {
            partitions: vec![
                PartitionProgress {
                    partition: 0,
                    start: 10,
                    done: 20,
                    end: 30,
                },
                PartitionProgress {
                    partition: 1,
                    start: 0,
                    done: 5,
                    end: 5,
                },
            ],
            ..Default::default()
        };
        assert_eq!(p.offsets(), (15, 25));
    }
}
