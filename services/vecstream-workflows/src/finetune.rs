//! Fine-tuning: the activities of [`crate::FineTuneWorkflow`] (and `eval.pairs`); the data
//! side (pairs file, held-out split, embedding table, held-out metrics) is [`pairs`],
//! re-exported here.
//!
//! A job's files live in `<engine.model_store>/.jobs/<workflow id>/` on the worker:
//! `embeddings.safetensors` (the base model's vectors of every distinct text),
//! `checkpoint.safetensors` (weights and optimiser state, written every
//! `checkpoint_every` steps) and `adapter.safetensors` (the trained adapter). The worker
//! that trains and the one that registers must share that directory (one host, or a shared
//! volume).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use vecstream_engine::adapter::Adapter;
use vecstream_engine::model::ModelSpec;
use vecstream_train::{Checkpoint, Manifest, ModelStore, PairTable, Trainer};

mod pairs;
pub use pairs::*;

use crate::activities::{JobActivities, resolve_model, timed};
use crate::errors::{ActivityResultExt, JobError, activity_error};
use crate::types::{
    Candidate, DatasetSummary, EvalReport, EvalRow, FineTuneInput, HeldOutPairs, ModelTarget,
    ReviewDecision, TrainHeartbeat, TrainReport,
};

const EMBEDDINGS: &str = "embeddings.safetensors";
const CHECKPOINT: &str = "checkpoint.safetensors";
/// Texts per engine request while embedding the dataset.
const EMBED_CHUNK: usize = 256;
/// Optimiser steps per blocking slice of training (a heartbeat after each).
const STEPS_PER_SLICE: u64 = 5;

/// One step of a job: its workflow id and input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneStep {
    pub job: String,
    pub input: FineTuneInput,
}

/// Input of `eval.pairs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPairs {
    pub label: String,
    pub target: ModelTarget,
    pub held_out: HeldOutPairs,
    pub k: usize,
}

/// Input of `finetune.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterInput {
    pub job: String,
    pub candidate: Candidate,
    pub base: ModelTarget,
    pub base_model_id: String,
    pub training: Option<TrainReport>,
    pub evaluation: Option<EvalReport>,
    pub review: Option<ReviewDecision>,
    pub time_ms: i64,
}

/// The fine-tuning activities (and the pairs evaluation). They keep engines of their own
/// (a [`JobActivities`] for its engine cache and helpers), loaded on first use.
pub struct FineTuneActivities {
    jobs: JobActivities,
}

impl std::fmt::Debug for FineTuneActivities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FineTuneActivities").finish_non_exhaustive()
    }
}

impl FineTuneActivities {
    pub fn new(jobs: JobActivities) -> Self {
        Self { jobs }
    }

    fn store(&self) -> ModelStore {
        ModelStore::new(&self.jobs.config().engine.model_store)
    }

    fn job_dir(&self, job: &str) -> Result<PathBuf, ActivityError> {
        // The job is the workflow id: whoever can start a workflow chooses it.
        let job = vecstream_core::path_component(job)
            .map_err(JobError::invalid)
            .activity_err()?;
        let dir = self.store().root().join(".jobs").join(job);
        std::fs::create_dir_all(&dir)
            .map_err(|e| JobError::io(dir.display(), e))
            .activity_err()?;
        Ok(dir)
    }

    fn pairs(input: &FineTuneInput) -> Result<PairsFile, ActivityError> {
        load_pairs(&input.pairs).activity_err()
    }

    /// The base model's directory, resolved through the model store.
    fn base_dir(&self, base: &ModelTarget) -> Result<String, ActivityError> {
        resolve_model(&self.jobs.config().engine, &base.model_dir)
            .map_err(|e| JobError::engine(format!("model {}", base.model_dir), e))
            .activity_err()
    }

    fn threads(&self) -> usize {
        match self.jobs.config().engine.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

#[activities]
impl FineTuneActivities {
    /// Checks the pairs file and the base model; reports the split. Bad input is permanent.
    #[activity(name = "finetune.validate")]
    pub async fn validate(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: FineTuneInput,
    ) -> Result<DatasetSummary, ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "finetune.validate", async move {
            let file = Self::pairs(&input)?;
            let base_model_id = self.jobs.model_id_of(&input.base)?;
            summarize(&file, input.held_out_fraction, &base_model_id).activity_err()
        })
        .await
    }

    /// Embeds every distinct text of the dataset with the base model (once: a finished
    /// table of the same dataset is kept), heartbeating the count.
    #[activity(name = "finetune.embed")]
    pub async fn embed(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: FineTuneStep,
    ) -> Result<usize, ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "finetune.embed", async move {
            let file = Self::pairs(&step.input)?;
            let path = self.job_dir(&step.job)?.join(EMBEDDINGS);
            if let Some(t) = load_table(&path, &file.sha)
                .map_err(|e| JobError::io(path.display(), e))
                .activity_err()?
            {
                return Ok(t.vectors.len() / t.dim);
            }
            let (texts, query, positive, negatives) = texts_and_rows(&file.pairs);
            let engine = self.jobs.engine(&step.input.base).await?;
            let dim = engine.info().dim;
            let mut vectors = Vec::with_capacity(texts.len() * dim);
            for chunk in texts.chunks(EMBED_CHUNK) {
                if ctx.is_cancelled() {
                    return Err(ActivityError::cancelled());
                }
                let out = engine
                    .embed(chunk.to_vec())
                    .await
                    .map_err(JobError::from)
                    .activity_err()?;
                vectors.extend(out.into_iter().flat_map(|e| e.vector));
                ctx.record_heartbeat(vectors.len() / dim).await?;
            }
            let table = PairTable {
                dim,
                vectors,
                query,
                positive,
                negatives,
            };
            save_table(&path, &table, &file.sha)
                .map_err(|e| JobError::io(path.display(), e))
                .activity_err()?;
            Ok(texts.len())
        })
        .await
    }

    /// Trains the adapter on the training split, checkpointing every `checkpoint_every`
    /// steps and heartbeating epoch, step and loss; a retried attempt resumes from the last
    /// checkpoint (the report names the step).
    #[activity(name = "finetune.train")]
    pub async fn train(
        self: Arc<Self>,
        ctx: ActivityContext,
        step: FineTuneStep,
    ) -> Result<TrainReport, ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "finetune.train", async move {
            let started = std::time::Instant::now();
            let file = Self::pairs(&step.input)?;
            let dir = self.job_dir(&step.job)?;
            let embeddings = dir.join(EMBEDDINGS);
            let table = load_table(&embeddings, &file.sha)
                .map_err(|e| JobError::io(embeddings.display(), e))
                .and_then(|t| {
                    t.ok_or_else(|| {
                        JobError::invalid(
                            "no embeddings of this dataset: the embed step did not run",
                        )
                    })
                })
                .activity_err()?;
            let table = Arc::new(table);
            let (train, _) = split(&file.pairs, step.input.held_out_fraction);
            let cfg = step.input.train.clone();
            cfg.check().map_err(JobError::invalid).activity_err()?;
            let checkpoint_path = dir.join(CHECKPOINT);
            let resume = match Checkpoint::load(&checkpoint_path) {
                Ok(Some(c)) if !c.is_finite() => {
                    tracing::warn!("checkpoint of a diverged training: training starts over");
                    None
                }
                Ok(c) => c,
                Err(e) => {
                    // Written through a rename, so this is another file's damage: start over.
                    tracing::warn!(error = %e, "unreadable checkpoint: training starts over");
                    None
                }
            };
            let resumed_from_step = resume.as_ref().map(|c| c.step);
            let attempt = ctx.info().attempt;
            if let Some(s) = resumed_from_step {
                tracing::info!(
                    job = step.job,
                    step = s,
                    attempt,
                    "training resumes from its checkpoint"
                );
            }
            let threads = self.threads();
            let probe = Trainer::new(&table, train.clone(), cfg.clone(), threads, resume.clone());
            let (per_epoch, total) = (probe.steps_per_epoch(), probe.total_steps());
            let mut state = probe.state().clone();
            drop(probe);
            let every = step.input.checkpoint_every.max(1);
            let mut checkpoint_step = resumed_from_step.unwrap_or(0);
            while state.step < total {
                if ctx.is_cancelled() {
                    return Err(ActivityError::cancelled());
                }
                let (table, train, cfg) = (table.clone(), train.clone(), cfg.clone());
                let slice = STEPS_PER_SLICE.min(total - state.step);
                state = tokio::task::spawn_blocking(move || {
                    let mut t = Trainer::new(&table, train, cfg, threads, Some(state));
                    for _ in 0..slice {
                        let loss = t.step();
                        if !loss.is_finite() {
                            // Ends the job before a diverged state is checkpointed.
                            return Err(JobError::invalid(format!(
                                "training diverged at step {} (loss {loss}): lower \
                                 --learning-rate or raise --temperature",
                                t.state().step
                            )));
                        }
                    }
                    Ok(t.state().clone())
                })
                .await
                .map_err(JobError::from)
                .and_then(|r| r)
                .activity_err()?;
                if state.step % every == 0 || state.step == total {
                    state
                        .save(&checkpoint_path)
                        .map_err(|e| JobError::io(checkpoint_path.display(), e))
                        .activity_err()?;
                    checkpoint_step = state.step;
                }
                ctx.record_heartbeat(TrainHeartbeat {
                    epoch: state.step.div_ceil(per_epoch.max(1)),
                    step: state.step,
                    total_steps: total,
                    loss: state.last_loss,
                    checkpoint_step,
                    resumed_from_step,
                })
                .await?;
            }
            let adapter = Adapter::new(table.dim, state.w.clone())
                .map_err(JobError::Invalid)
                .activity_err()?;
            adapter
                .save(&dir)
                .map_err(|e| JobError::io(dir.display(), e))
                .activity_err()?;
            Ok(TrainReport {
                steps: state.step,
                epochs: cfg.epochs,
                final_loss: state.last_loss,
                epoch_losses: state.epoch_losses,
                resumed_from_step,
                attempt,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
        .await
    }

    /// Assembles the candidate model (base files + the trained adapter) in the store's
    /// staging area; its name is the base's with `-ft-` and a hash of the adapter.
    #[activity(name = "finetune.stage")]
    pub async fn stage(
        self: Arc<Self>,
        _ctx: ActivityContext,
        step: FineTuneStep,
    ) -> Result<Candidate, ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "finetune.stage", async move {
            let dir = self.job_dir(&step.job)?;
            let (adapter, bytes) = Adapter::load(&dir)
                .map_err(|e| JobError::engine("reading the trained adapter", e))
                .and_then(|a| {
                    a.ok_or_else(|| {
                        JobError::invalid("no trained adapter: the train step did not finish")
                    })
                })
                .activity_err()?;
            let base_dir = self.base_dir(&step.input.base)?;
            let base_name = Path::new(&base_dir)
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "model".into());
            let name = format!(
                "{base_name}-ft-{}",
                &hex::encode(Sha256::digest(&bytes))[..8]
            );
            let staged = self
                .store()
                .stage(&name, Path::new(&base_dir), &adapter)
                .map_err(|e| JobError::engine(format!("staging {name}"), e))
                .activity_err()?;
            let (spec, _) = ModelSpec::load(&staged, step.input.base.max_seq_length)
                .map_err(|e| JobError::engine(format!("staged model {name}"), e))
                .activity_err()?;
            Ok(Candidate {
                name,
                model_id: spec.model_id,
                model_dir: staged.display().to_string(),
            })
        })
        .await
    }

    /// Moves the approved candidate into the model store with its manifest.
    #[activity(name = "finetune.register")]
    pub async fn register(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: RegisterInput,
    ) -> Result<Candidate, ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "finetune.register", async move {
            let base_dir = self.base_dir(&input.base)?;
            let manifest = Manifest {
                name: input.candidate.name.clone(),
                model_id: input.candidate.model_id.clone(),
                base_model_id: input.base_model_id,
                base_dir,
                job: input.job,
                created_ms: input.time_ms,
                reviewer: input.review.as_ref().map(|r| r.reviewer.clone()),
                reviewer_key: input
                    .review
                    .map(|r| r.key_fingerprint)
                    .filter(|k| !k.is_empty()),
                training: serde_json::to_value(&input.training).unwrap_or_default(),
                evaluation: serde_json::to_value(&input.evaluation).unwrap_or_default(),
            };
            let dir = self
                .store()
                .register(&manifest)
                .map_err(|e| JobError::engine(format!("registering {}", manifest.name), e))
                .activity_err()?;
            Ok(Candidate {
                model_dir: dir.display().to_string(),
                ..input.candidate
            })
        })
        .await
    }

    /// Removes a rejected candidate from the staging area.
    #[activity(name = "finetune.discard")]
    pub async fn discard(
        self: Arc<Self>,
        _ctx: ActivityContext,
        candidate: Candidate,
    ) -> Result<(), ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "finetune.discard", async move {
            self.store()
                .discard(&candidate.name)
                .map_err(|e| JobError::engine(format!("discarding {}", candidate.name), e))
                .activity_err()
        })
        .await
    }

    /// Retrieval quality of one model on the held-out split of a pairs file.
    #[activity(name = "eval.pairs")]
    pub async fn evaluate_pairs(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: EvalPairs,
    ) -> Result<EvalRow, ActivityError> {
        let metrics = self.jobs.metrics().clone();
        timed(&metrics, "eval.pairs", async move {
            let file = load_pairs(&input.held_out.pairs).activity_err()?;
            let (queries, corpus, relevant) =
                held_out_corpus(&file.pairs, input.held_out.held_out_fraction);
            let engine = self.jobs.engine(&input.target).await?;
            let vectors = |texts: Vec<String>| {
                let engine = engine.clone();
                async move {
                    engine
                        .embed(texts)
                        .await
                        .map(|v| v.into_iter().map(|e| e.vector).collect::<Vec<_>>())
                        .map_err(|e| activity_error(JobError::from(e)))
                }
            };
            let n = queries.len();
            let q = vectors(queries).await?;
            let d = vectors(corpus).await?;
            let m = held_out_metrics(&q, &d, &relevant, input.k);
            Ok(EvalRow {
                mode: String::new(),
                collection: input.label,
                model_id: engine.info().model_id.clone(),
                queries: n,
                recall_at_k: m.recall_at_k,
                mrr: m.mrr,
                ndcg_at_10: m.ndcg_at_10,
            })
        })
        .await
    }
}
