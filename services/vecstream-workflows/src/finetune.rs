//! Fine-tuning: the data side (pairs file, held-out split, embedding table, held-out
//! evaluation) and the activities of [`crate::FineTuneWorkflow`].
//!
//! A job's files live in `<engine.model_store>/.jobs/<workflow id>/` on the worker:
//! `embeddings.safetensors` (the base model's vectors of every distinct text),
//! `checkpoint.safetensors` (weights and optimiser state, written every
//! `checkpoint_every` steps) and `adapter.safetensors` (the trained adapter). The worker
//! that trains and the one that registers must share that directory (one host, or a shared
//! volume).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use vecstream_engine::adapter::Adapter;
use vecstream_engine::model::ModelSpec;
use vecstream_engine::tensor_io::{f32_le_bytes, tensor_f32, write_atomic};
use vecstream_train::{Checkpoint, Manifest, ModelStore, PairTable, Trainer};

use crate::activities::{JobActivities, permanent, resolve_model, timed, transient};
use crate::eval::{Judged, judge};
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

/// One labelled pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub query: String,
    pub positive: String,
    #[serde(default)]
    pub negatives: Vec<String>,
}

/// A validated pairs file.
#[derive(Debug, Clone)]
pub struct PairsFile {
    pub pairs: Vec<Pair>,
    /// First 12 hex digits of the file's SHA-256.
    pub sha: String,
}

/// Reads and validates a pairs file: every line a `{"query", "positive", "negatives"?}`
/// object with non-empty texts; errors name the line.
pub fn load_pairs(path: &str) -> Result<PairsFile, String> {
    let raw = std::fs::read(path).map_err(|e| format!("pairs {path}: {e}"))?;
    let text = std::str::from_utf8(&raw).map_err(|e| format!("pairs {path}: {e}"))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("pairs {path} line {}", n + 1);
        let p: Pair = serde_json::from_str(line).map_err(|e| format!("{}: {e}", at()))?;
        if p.query.trim().is_empty() || p.positive.trim().is_empty() {
            return Err(format!("{}: query and positive must not be empty", at()));
        }
        if p.negatives.iter().any(|t| t.trim().is_empty()) {
            return Err(format!("{}: an empty negative", at()));
        }
        pairs.push(p);
    }
    Ok(PairsFile {
        pairs,
        sha: hex::encode(Sha256::digest(&raw))[..12].to_owned(),
    })
}

/// Whether a pair belongs to the held-out split: by a hash of its query, so the split is
/// the same on every run and does not depend on the order of the file.
pub fn is_held_out(query: &str, fraction: f64) -> bool {
    let h = Sha256::digest(query.as_bytes());
    let x = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    (x % 1_000_000) < (fraction.clamp(0.0, 1.0) * 1_000_000.0) as u64
}

/// `(train, held_out)` indexes of `pairs`.
pub fn split(pairs: &[Pair], fraction: f64) -> (Vec<usize>, Vec<usize>) {
    (0..pairs.len()).partition(|&i| !is_held_out(&pairs[i].query, fraction))
}

/// Distinct texts in order of first appearance, each with its row.
#[derive(Default)]
struct DistinctTexts {
    texts: Vec<String>,
    rows: HashMap<String, u32>,
}

impl DistinctTexts {
    fn row(&mut self, t: &str) -> u32 {
        if let Some(&r) = self.rows.get(t) {
            return r;
        }
        self.texts.push(t.to_owned());
        let r = (self.texts.len() - 1) as u32;
        self.rows.insert(t.to_owned(), r);
        r
    }
}

/// The dataset's distinct texts, and for each pair the rows of its query, positive and
/// negatives among them.
pub fn texts_and_rows(pairs: &[Pair]) -> (Vec<String>, Vec<u32>, Vec<u32>, Vec<Vec<u32>>) {
    let mut texts = DistinctTexts::default();
    let (mut q, mut p, mut n) = (Vec::new(), Vec::new(), Vec::new());
    for pair in pairs {
        q.push(texts.row(&pair.query));
        p.push(texts.row(&pair.positive));
        n.push(pair.negatives.iter().map(|t| texts.row(t)).collect());
    }
    (texts.texts, q, p, n)
}

/// What the validation reports; refuses a dataset too small to train or evaluate.
pub fn summarize(
    file: &PairsFile,
    fraction: f64,
    base_model_id: &str,
) -> Result<DatasetSummary, String> {
    let (train, held_out) = split(&file.pairs, fraction);
    if train.len() < 2 {
        return Err(format!(
            "{} training pairs: at least 2 are needed (in-batch negatives)",
            train.len()
        ));
    }
    if held_out.is_empty() {
        return Err(format!(
            "no pair falls in the held-out split (held_out_fraction {fraction}); the \
             evaluation needs at least one"
        ));
    }
    Ok(DatasetSummary {
        pairs: file.pairs.len(),
        train: train.len(),
        held_out: held_out.len(),
        negatives: file.pairs.iter().map(|p| p.negatives.len()).sum(),
        texts: texts_and_rows(&file.pairs).0.len(),
        sha: file.sha.clone(),
        base_model_id: base_model_id.to_owned(),
    })
}

fn bytes_u32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the embedding table (through a temporary file), tagged with the dataset's hash.
pub fn save_table(path: &Path, table: &PairTable, sha: &str) -> std::io::Result<()> {
    let mut offsets = vec![0u32];
    let mut negatives = Vec::new();
    for n in &table.negatives {
        negatives.extend_from_slice(n);
        offsets.push(negatives.len() as u32);
    }
    let rows = table.vectors.len() / table.dim;
    let data = [
        (
            "vectors",
            Dtype::F32,
            vec![rows, table.dim],
            f32_le_bytes(&table.vectors),
        ),
        (
            "query",
            Dtype::U32,
            vec![table.query.len()],
            bytes_u32(&table.query),
        ),
        (
            "positive",
            Dtype::U32,
            vec![table.positive.len()],
            bytes_u32(&table.positive),
        ),
        (
            "neg_offsets",
            Dtype::U32,
            vec![offsets.len()],
            bytes_u32(&offsets),
        ),
        (
            "negatives",
            Dtype::U32,
            vec![negatives.len()],
            bytes_u32(&negatives),
        ),
    ];
    let views = data
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (*name, v))
                .map_err(std::io::Error::other)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([("sha".to_string(), sha.to_string())]);
    let out = safetensors::serialize(views, Some(meta)).map_err(std::io::Error::other)?;
    write_atomic(path, &out)
}

/// Reads the embedding table if it exists and belongs to dataset `sha`.
pub fn load_table(path: &Path, sha: &str) -> std::io::Result<Option<PairTable>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    if header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("sha"))
        .map(String::as_str)
        != Some(sha)
    {
        return Ok(None);
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let tensor = |name: &str| st.tensor(name).map_err(|e| bad(format!("{name}: {e}")));
    let u32s = |name: &str| -> std::io::Result<Vec<u32>> {
        Ok(tensor(name)?
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let vectors = tensor("vectors")?;
    let offsets = u32s("neg_offsets")?;
    let all_negatives = u32s("negatives")?;
    Ok(Some(PairTable {
        dim: *vectors
            .shape()
            .get(1)
            .ok_or_else(|| bad("vectors: not 2-D".into()))?,
        vectors: tensor_f32(&vectors).ok_or_else(|| bad("vectors: not F32".into()))?,
        query: u32s("query")?,
        positive: u32s("positive")?,
        negatives: offsets
            .windows(2)
            .map(|w| all_negatives[w[0] as usize..w[1] as usize].to_vec())
            .collect(),
    }))
}

/// Recall@k, MRR and nDCG@10 of the held-out split given the vectors of each held-out
/// query and of every held-out text it is ranked against (positives and hard negatives).
pub fn held_out_metrics(
    queries: &[Vec<f32>],
    corpus: &[Vec<f32>],
    relevant: &[usize],
    k: usize,
) -> crate::eval::Metrics {
    let dot = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let judged: Vec<Judged> = queries
        .iter()
        .zip(relevant)
        .map(|(q, &rel)| {
            let mut scored: Vec<(f32, usize)> = corpus
                .iter()
                .enumerate()
                .map(|(i, d)| (dot(q, d), i))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            Judged {
                ranked: scored
                    .iter()
                    .take(100)
                    .map(|(_, i)| i.to_string())
                    .collect(),
                relevant: vec![rel.to_string()],
            }
        })
        .collect();
    judge(&judged, k)
}

/// The held-out queries, the texts they are ranked against, and each query's relevant
/// text (an index into those).
pub fn held_out_corpus(pairs: &[Pair], fraction: f64) -> (Vec<String>, Vec<String>, Vec<usize>) {
    let (_, held) = split(pairs, fraction);
    let mut corpus = DistinctTexts::default();
    let mut queries = Vec::new();
    let mut relevant = Vec::new();
    for &i in &held {
        queries.push(pairs[i].query.clone());
        relevant.push(corpus.row(&pairs[i].positive) as usize);
        for n in &pairs[i].negatives {
            corpus.row(n);
        }
    }
    (queries, corpus.texts, relevant)
}

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
        let dir = self.store().root().join(".jobs").join(job);
        std::fs::create_dir_all(&dir).map_err(|e| transient(format!("{}: {e}", dir.display())))?;
        Ok(dir)
    }

    fn pairs(input: &FineTuneInput) -> Result<PairsFile, ActivityError> {
        load_pairs(&input.pairs).map_err(permanent)
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
            summarize(&file, input.held_out_fraction, &base_model_id).map_err(permanent)
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
            if let Some(t) = load_table(&path, &file.sha).map_err(transient)? {
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
                    .map_err(|e| transient(e.to_string()))?;
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
            save_table(&path, &table, &file.sha).map_err(transient)?;
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
            let table = load_table(&dir.join(EMBEDDINGS), &file.sha)
                .map_err(transient)?
                .ok_or_else(|| {
                    permanent("no embeddings of this dataset: the embed step did not run")
                })?;
            let table = Arc::new(table);
            let (train, _) = split(&file.pairs, step.input.held_out_fraction);
            let cfg = step.input.train.clone();
            let checkpoint_path = dir.join(CHECKPOINT);
            let resume = match Checkpoint::load(&checkpoint_path) {
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
                        t.step();
                    }
                    t.state().clone()
                })
                .await
                .map_err(|e| transient(e.to_string()))?;
                if state.step % every == 0 || state.step == total {
                    state.save(&checkpoint_path).map_err(transient)?;
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
            let adapter = Adapter::new(table.dim, state.w.clone()).map_err(permanent)?;
            adapter.save(&dir).map_err(transient)?;
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
                .map_err(|e| permanent(e.to_string()))?
                .ok_or_else(|| permanent("no trained adapter: the train step did not finish"))?;
            let base_dir = resolve_model(&self.jobs.config().engine, &step.input.base.model_dir)
                .map_err(permanent)?;
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
                .map_err(|e| transient(e.to_string()))?;
            let len =
                (step.input.base.max_seq_length > 0).then_some(step.input.base.max_seq_length);
            let (spec, _) = ModelSpec::load(&staged, len).map_err(|e| permanent(e.to_string()))?;
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
            let base_dir = resolve_model(&self.jobs.config().engine, &input.base.model_dir)
                .map_err(permanent)?;
            let manifest = Manifest {
                name: input.candidate.name.clone(),
                model_id: input.candidate.model_id.clone(),
                base_model_id: input.base_model_id,
                base_dir,
                job: input.job,
                created_ms: input.time_ms,
                reviewer: input.review.map(|r| r.reviewer),
                training: serde_json::to_value(&input.training).unwrap_or_default(),
                evaluation: serde_json::to_value(&input.evaluation).unwrap_or_default(),
            };
            let dir = self
                .store()
                .register(&manifest)
                .map_err(|e| permanent(e.to_string()))?;
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
                .map_err(|e| transient(e.to_string()))
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
            let file = load_pairs(&input.held_out.pairs).map_err(permanent)?;
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
                        .map_err(|e| transient(e.to_string()))
                }
            };
            let n = queries.len();
            let q = vectors(queries).await?;
            let d = vectors(corpus).await?;
            let m = held_out_metrics(&q, &d, &relevant, input.k);
            Ok(EvalRow {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> String {
        let p = std::env::temp_dir().join(format!("vecstream-{name}-{}.jsonl", std::process::id()));
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    #[test]
    fn a_pairs_file_is_validated_line_by_line() {
        let ok = write(
            "pairs-ok",
            "{\"query\": \"q1\", \"positive\": \"p1\"}\n\n{\"query\": \"q2\", \"positive\": \"p2\", \"negatives\": [\"p1\"]}\n",
        );
        let f = load_pairs(&ok).unwrap();
        assert_eq!(f.pairs.len(), 2);
        assert_eq!(f.sha.len(), 12);
        let (texts, q, p, n) = texts_and_rows(&f.pairs);
        assert_eq!(texts, vec!["q1", "p1", "q2", "p2"]);
        assert_eq!((q, p), (vec![0, 2], vec![1, 3]));
        assert_eq!(n, vec![vec![], vec![1]], "a repeated text is one row");
        let bad = write(
            "pairs-bad",
            "{\"query\": \"q\", \"positive\": \"p\"}\n{\"query\": \"q\"}\n",
        );
        let e = load_pairs(&bad).unwrap_err();
        assert!(e.contains("line 2") && e.contains("positive"), "{e}");
        let empty = write("pairs-empty", "{\"query\": \" \", \"positive\": \"p\"}\n");
        assert!(load_pairs(&empty).unwrap_err().contains("line 1"));
        let unknown = write(
            "pairs-unknown",
            "{\"query\": \"q\", \"positive\": \"p\", \"x\": 1}\n",
        );
        assert!(load_pairs(&unknown).unwrap_err().contains("unknown field"));
        for p in [ok, bad, empty, unknown] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn the_split_is_stable_and_about_the_asked_fraction() {
        let pairs: Vec<Pair> = (0..2000)
            .map(|i| Pair {
                query: format!("query {i}"),
                positive: format!("doc {i}"),
                negatives: vec![],
            })
            .collect();
        let (train, held) = split(&pairs, 0.2);
        assert_eq!(train.len() + held.len(), 2000);
        assert!((300..500).contains(&held.len()), "{}", held.len());
        let mut reversed = pairs.clone();
        reversed.reverse();
        let (_, held_rev) = split(&reversed, 0.2);
        assert_eq!(held_rev.len(), held.len(), "order does not matter");
        assert!(held.iter().all(|&i| is_held_out(&pairs[i].query, 0.2)));
        let file = PairsFile {
            pairs: pairs[..3].to_vec(),
            sha: "x".into(),
        };
        assert!(summarize(&file, 0.0, "m").unwrap_err().contains("held-out"));
    }

    #[test]
    fn held_out_metrics_rank_by_similarity() {
        let corpus = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.7, 0.7]];
        let queries = vec![vec![0.9, 0.1], vec![0.1, 0.9]];
        // The first query's relevant text ranks first; the second's ranks second.
        let m = held_out_metrics(&queries, &corpus, &[0, 2], 1);
        assert!((m.recall_at_k - 0.5).abs() < 1e-9);
        assert!((m.mrr - 0.75).abs() < 1e-9);
    }

    #[test]
    fn the_embedding_table_round_trips_for_its_dataset_only() {
        let table = PairTable {
            dim: 2,
            vectors: vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
            query: vec![0],
            positive: vec![1],
            negatives: vec![vec![2]],
        };
        let path = std::env::temp_dir().join(format!(
            "vecstream-table-{}.safetensors",
            std::process::id()
        ));
        save_table(&path, &table, "abc").unwrap();
        assert_eq!(load_table(&path, "abc").unwrap(), Some(table));
        assert_eq!(load_table(&path, "other").unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }
}
