//! The fine-tuning job's input, progress and result.

use serde::{Deserialize, Serialize};

use super::{
    EvalReport, JobProgress, ModelTarget, ReviewDecision, ReviewGate, default_gpu_queue,
    default_heartbeat, default_k,
};

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
    /// Who started it, signed with their reviewer key (`review.key`), if they have one.
    #[serde(default)]
    pub starter: Option<crate::signing::SignedStatement>,
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
    /// The review state (flattened: `awaiting_review`, `review`, `review_id`, ...).
    #[serde(flatten)]
    pub gate: ReviewGate,
    /// The registered version (after approval).
    pub registered: Option<Candidate>,
}

impl JobProgress for FineTuneProgress {
    const JOB: &'static str = "finetune";
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
            FineTunePhase::Registered | FineTunePhase::Rejected
        )
    }
    fn lineage_model_id(&self) -> String {
        self.registered
            .as_ref()
            .or(self.candidate.as_ref())
            .map(|c| c.model_id.clone())
            .or(self.dataset.as_ref().map(|d| d.base_model_id.clone()))
            .unwrap_or_default()
    }
    fn lineage_collection(&self) -> Option<String> {
        None
    }
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
