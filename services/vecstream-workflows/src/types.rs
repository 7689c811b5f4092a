//! Inputs, outputs and query answers of the long jobs: what the CLI, the stock `temporal`
//! CLI (JSON payloads) and the workflows exchange. Field names are the JSON contract.

use serde::{Deserialize, Serialize};

mod finetune;
mod reindex;
pub use finetune::*;
pub use reindex::*;

/// Numeric precision of the forward pass, as the JSON contract spells it (`fp32`, `int8`,
/// `fp16`, `bf16`: the same strings as before it was typed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// CPU only.
    Int8,
    /// CUDA only.
    Fp16,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        vecstream_engine::Precision::from(self).as_str()
    }
}

impl From<Precision> for vecstream_engine::Precision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Fp32 => Self::Fp32,
            Precision::Int8 => Self::Int8,
            Precision::Fp16 => Self::Fp16,
            Precision::Bf16 => Self::Bf16,
        }
    }
}

impl From<vecstream_engine::Precision> for Precision {
    fn from(p: vecstream_engine::Precision) -> Self {
        match p {
            vecstream_engine::Precision::Fp32 => Self::Fp32,
            vecstream_engine::Precision::Int8 => Self::Int8,
            vecstream_engine::Precision::Fp16 => Self::Fp16,
            vecstream_engine::Precision::Bf16 => Self::Bf16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<vecstream_engine::Precision>().map(Self::from)
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads an optional count where inputs written before it was an `Option` said "none" with
/// 0: `0`, `null` and a missing field are all `None`.
fn zero_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.filter(|&n| n > 0))
}

/// Reads an optional text where older inputs said "none" with `""`.
/// Writes `None` as `""`: for fields that older workers read as a required string (a
/// rolling deploy runs old and new workers side by side).
pub(crate) fn none_as_empty<S: serde::Serializer>(
    value: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_deref().unwrap_or(""))
}

pub(crate) fn empty_is_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A model configuration: weights directory plus the settings that change its vectors (and
/// so its model id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTarget {
    /// Directory with config.json, tokenizer.json, model.safetensors (on the worker).
    pub model_dir: String,
    /// Token limit per chunk text; `None` keeps the model's. Inputs written before this was
    /// an `Option` say 0 for that, and still read so.
    #[serde(
        default,
        deserialize_with = "zero_is_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_seq_length: Option<usize>,
    /// `fp32` (default), `int8` (CPU), `fp16` (CUDA) or `bf16`.
    #[serde(default)]
    pub precision: Precision,
}

impl ModelTarget {
    /// The model of the engine settings (`engine.*`); fails on an unknown
    /// `engine.precision`.
    pub fn configured(s: &vecstream_config::EngineSettings) -> Result<Self, String> {
        Ok(Self {
            model_dir: s.model_dir.clone(),
            max_seq_length: (s.max_seq_length > 0).then_some(s.max_seq_length),
            precision: s
                .precision
                .parse()
                .map_err(|e| format!("engine.precision: {e}"))?,
        })
    }
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
    /// Search modes compared side by side on each collection (`vector`, `hybrid`,
    /// `keyword`); empty: vector only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<vecstream_weaviate::SearchMode>,
}

pub(crate) fn default_k() -> usize {
    10
}

/// Retrieval quality of one collection on a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub collection: String,
    /// The search mode (`vector` when empty: reports written before modes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
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
            "suite {} (k = {})\n{:<48} {:<8} {:>8} {:>10} {:>8} {:>9}\n",
            self.suite, self.k, "collection", "mode", "queries", "recall@k", "MRR", "nDCG@10"
        );
        for r in &self.rows {
            let mode = if r.mode.is_empty() { "vector" } else { &r.mode };
            out.push_str(&format!(
                "{:<48} {:<8} {:>8} {:>10.4} {:>8.4} {:>9.4}\n",
                r.collection, mode, r.queries, r.recall_at_k, r.mrr, r.ndcg_at_10
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

pub(crate) fn default_heartbeat() -> u64 {
    20
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

pub(crate) fn default_gpu_queue() -> String {
    "vecstream-gpu".into()
}

/// The held-out split of a pairs file: each held-out query ranks every held-out positive and
/// hard negative; its own positive is the one relevant text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldOutPairs {
    pub pairs: String,
    pub held_out_fraction: f64,
}

/// A review decision the job took: who (the trusted key's name), which key, what, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewDecision {
    pub approve: bool,
    /// The name the worker's `review.authorized_keys` gives the signing key (runs started
    /// before signed reviews: the name the sender claimed).
    pub reviewer: String,
    #[serde(default)]
    pub comment: String,
    /// `SHA256:...` of the key that signed it; empty only for runs started before signed
    /// reviews.
    #[serde(default)]
    pub key_fingerprint: String,
}

/// A `review` the job refused, as its `progress` records it (the latest
/// [`MAX_REFUSED_REVIEWS`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedReview {
    /// Stable reason name (`unsigned`, `unknown_key`, `four_eyes_self_approval`, ...).
    pub code: String,
    /// The reason in words.
    pub reason: String,
    /// When the job received it (ms since the epoch, workflow time).
    pub time_ms: i64,
}

/// What a `review` update answers (the stock CLI prints it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewOutcome {
    /// The job took this decision.
    pub accepted: bool,
    /// `accepted`, `not_taken` (verified, but the job no longer awaited it), or why it was
    /// refused (`unsigned`, `unknown_key`, `bad_signature`, `other_review`,
    /// `four_eyes_self_approval`, ...).
    pub code: String,
    /// The reason in words (empty when accepted).
    pub reason: String,
    /// The job's phase after it.
    pub phase: String,
    /// The decision the job holds now, if any.
    pub review: Option<ReviewDecision>,
}

/// Refusals kept in `progress`; older ones stay in the workflow's history.
pub const MAX_REFUSED_REVIEWS: usize = 16;

/// The review state every reviewed job's `progress` carries (flattened into its JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReviewGate {
    /// Whether the job waits for a review now.
    pub awaiting_review: bool,
    /// When an unanswered review counts as a reject (ms since the epoch).
    pub review_deadline_ms: Option<i64>,
    /// The decision taken, if any.
    pub review: Option<ReviewDecision>,
    /// Id of the open (or last) review: a signed decision names it, so one signed for an
    /// earlier review, or another job, is refused.
    pub review_id: String,
    /// Reviews refused (unsigned, unknown key, four-eyes, ...), latest last.
    pub refused_reviews: Vec<RefusedReview>,
    /// The job's signed start (`review.key` of whoever started it), if any: the four-eyes
    /// rule's starter.
    pub started_by: Option<crate::signing::SignedStatement>,
    /// When the job started (workflow time, ms since the epoch): a signed start counts only
    /// if it was signed then, so one copied from an earlier run of the same id does not.
    pub started_at_ms: i64,
    /// `review` updates and signals received so far (each gets its own patch marker).
    pub reviews_received: u32,
}

impl ReviewGate {
    /// Records a refusal, keeping the latest [`MAX_REFUSED_REVIEWS`].
    pub fn refuse(&mut self, refused: RefusedReview) {
        self.refused_reviews.push(refused);
        let excess = self
            .refused_reviews
            .len()
            .saturating_sub(MAX_REFUSED_REVIEWS);
        self.refused_reviews.drain(..excess);
    }
}

/// What the `progress` answer of every reviewed job (reindex, fine-tuning) shares: its
/// phase, the review state, and what its lineage names. The `review` update and signal, the
/// wait for them and the phase lineage are written once against this
/// (`crate::workflows::job`), and the CLI reads any job's review state through it.
pub trait JobProgress: Clone + Default + Send + 'static {
    /// The lineage job name: `reindex` or `finetune`.
    const JOB: &'static str;
    /// The phase, as the JSON names it.
    fn phase_name(&self) -> &'static str;
    /// The review state.
    fn gate(&self) -> &ReviewGate;
    /// The review state, to change (only through the methods below and the workflows).
    fn gate_mut(&mut self) -> &mut ReviewGate;
    /// Whether the job has ended (approved and applied, or rejected).
    fn finished(&self) -> bool;
    /// The model the lineage names (the candidate or target, else the base).
    fn lineage_model_id(&self) -> String;
    /// The collection the job writes, if any.
    fn lineage_collection(&self) -> Option<String>;
    /// The run its lineage events name, when it outlives the Temporal run (continue-as-new).
    fn lineage_run_id(&self) -> Option<String> {
        None
    }

    /// Whether the job waits for a review now.
    fn awaiting_review(&self) -> bool {
        self.gate().awaiting_review
    }

    /// The decision taken, if any.
    fn review(&self) -> Option<&ReviewDecision> {
        self.gate().review.as_ref()
    }

    /// The rule for every job: a decision is taken only while the job awaits review, and
    /// the first one wins; earlier or later ones are ignored (nobody approves an
    /// unevaluated candidate). Returns whether it was taken.
    fn take_review(&mut self, decision: ReviewDecision) -> bool {
        let gate = self.gate_mut();
        if gate.awaiting_review && gate.review.is_none() {
            gate.review = Some(decision);
            true
        } else {
            false
        }
    }

    /// Opens review `review_id`: the job awaits a decision until `deadline_ms`.
    fn open_review(&mut self, deadline_ms: i64, review_id: String) {
        let gate = self.gate_mut();
        gate.awaiting_review = true;
        gate.review_deadline_ms = Some(deadline_ms);
        gate.review_id = review_id;
    }

    /// Closes the review (decided or timed out).
    fn close_review(&mut self) {
        self.gate_mut().awaiting_review = false;
    }
}

/// Deterministic workflow id of a fine-tuning job (DESIGN section 5).
pub fn finetune_workflow_id(base_model_id: &str, dataset_sha: &str) -> String {
    format!("finetune-{base_model_id}-{dataset_sha}")
}

/// Deterministic workflow id of a large document's job (DESIGN section 5): see
/// [`vecstream_core::large_document_workflow_id`].
pub use vecstream_core::large_document_workflow_id;

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
    fn decisions_recorded_before_signed_reviews_still_read() {
        let r: ReviewDecision =
            serde_json::from_str(r#"{"approve": true, "reviewer": "ana"}"#).unwrap();
        assert!(r.approve);
        assert_eq!(r.comment, "");
        assert_eq!(r.key_fingerprint, "");
        // A progress from before the review gate: its fields sit at the top level.
        let mut old = serde_json::to_value(ReindexProgress::default()).unwrap();
        let fields = old.as_object_mut().unwrap();
        for new in ["review_id", "refused_reviews", "started_by"] {
            fields.remove(new);
        }
        fields.insert("awaiting_review".into(), true.into());
        fields.insert("review_deadline_ms".into(), 5.into());
        fields.insert(
            "review".into(),
            serde_json::json!({"approve": false, "reviewer": "bo"}),
        );
        let p: ReindexProgress = serde_json::from_value(old).unwrap();
        assert!(p.awaiting_review());
        assert_eq!(p.gate.review_deadline_ms, Some(5));
        assert_eq!(p.review().unwrap().reviewer, "bo");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["awaiting_review"], true, "{json}");
        assert!(json["refused_reviews"].is_array(), "{json}");
    }

    #[test]
    fn refusals_kept_in_progress_are_bounded() {
        let mut gate = ReviewGate::default();
        for i in 0..40 {
            gate.refuse(RefusedReview {
                code: "unsigned".into(),
                reason: String::new(),
                time_ms: i,
            });
        }
        assert_eq!(gate.refused_reviews.len(), MAX_REFUSED_REVIEWS);
        assert_eq!(gate.refused_reviews.last().unwrap().time_ms, 39);
    }

    #[test]
    fn inputs_written_before_the_typed_fields_still_read() {
        // 0 meant "the model's limit", "" meant "no trace": both read as None now.
        let old: ModelTarget = serde_json::from_str(
            r#"{"model_dir": "/m", "max_seq_length": 0, "precision": "int8"}"#,
        )
        .unwrap();
        assert_eq!(old.max_seq_length, None);
        assert_eq!(old.precision, Precision::Int8);
        let set: ModelTarget =
            serde_json::from_str(r#"{"model_dir": "/m", "max_seq_length": 128}"#).unwrap();
        assert_eq!(set.max_seq_length, Some(128));
        assert_eq!(set.precision, Precision::Fp32);
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            serde_json::json!({"model_dir": "/m", "precision": "int8"})
        );
        assert!(
            serde_json::from_str::<ModelTarget>(r#"{"model_dir": "/m", "precision": "fp64"}"#)
                .is_err()
        );
        let doc: LargeDocumentInput = serde_json::from_str(
            r#"{"doc_id": "d", "version": 1, "partition": 0, "offset": 5,
                "target": {"model_dir": "/m", "max_seq_length": 0, "precision": "fp32"},
                "traceparent": ""}"#,
        )
        .unwrap();
        assert_eq!(doc.traceparent, None);
        assert_eq!(doc.target.max_seq_length, None);
    }

    #[test]
    fn precision_names_match_the_engine() {
        for p in [
            Precision::Fp32,
            Precision::Int8,
            Precision::Fp16,
            Precision::Bf16,
        ] {
            assert_eq!(p.as_str().parse::<Precision>().unwrap(), p);
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }

    #[test]
    fn a_review_is_taken_only_while_awaited_and_first_wins() {
        let d = |reviewer: &str| ReviewDecision {
            approve: true,
            reviewer: reviewer.into(),
            comment: String::new(),
            key_fingerprint: String::new(),
        };
        let mut p = FineTuneProgress::default();
        assert!(!p.take_review(d("early")), "nothing to review yet");
        p.open_review(1_000, "r1".into());
        assert_eq!(p.gate.review_deadline_ms, Some(1_000));
        assert_eq!(p.gate.review_id, "r1");
        assert!(p.take_review(d("ana")));
        assert!(!p.take_review(d("bo")), "the first one wins");
        p.close_review();
        assert_eq!(p.review().unwrap().reviewer, "ana");
        assert!(!p.awaiting_review());
        let mut r = ReindexProgress::default();
        r.open_review(5, "r2".into());
        assert!(r.take_review(d("ana")));
        assert_eq!(ReindexProgress::JOB, "reindex");
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
                    first_end: 30,
                },
                PartitionProgress {
                    partition: 1,
                    start: 0,
                    done: 5,
                    end: 5,
                    first_end: 0,
                },
            ],
            ..Default::default()
        };
        assert_eq!(p.offsets(), (15, 25));
    }
}
