//! The command line of the Temporal jobs: `reindex`, `review`, `finetune`, `eval`.

use clap::{Args, Subcommand};
use vecstream_workflows::Precision;

use super::parse_key_value;

/// A model configuration on the command line (the reindex target, an evaluated model).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model directory (config.json, tokenizer.json, model.safetensors), as the worker sees
    /// it, or a version name or model id of the model store (engine.model_store).
    #[arg(long)]
    pub model_dir: String,
    /// Token limit per chunk text (default, or 0: the model's). Changes the model id.
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Precision of the forward pass: fp32, int8 (CPU) or fp16 (CUDA); bf16 is refused.
    #[arg(long, default_value = "fp32")]
    pub precision: Precision,
}

/// `vecstream reindex ...`.
#[derive(Debug, Subcommand)]
pub enum ReindexCommand {
    /// Start a reindex of the alias to another model configuration; prints the workflow id
    /// (`reindex-<alias>-<model id>`). A second start of the same reindex is refused.
    Start(ReindexStartArgs),
    /// Show a reindex's progress (the workflow's `progress` query).
    Status(ReindexStatusArgs),
    /// Cancel a reindex before its approval: it ends as rejected (embedders leave its
    /// collection, which is then dropped; the live collection is never touched).
    Cancel(OperatorArgs),
    /// During an approved reindex's rollback window: catch the previous collection up,
    /// point the alias back at it, retire the new one.
    Rollback(OperatorArgs),
}

/// A workflow id and who asks for the operation, and why.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Workflow id (`reindex-<alias>-<model id>`).
    pub workflow_id: String,
    /// Who asks (recorded in the progress, the lineage and the migration state). A
    /// rollback is signed instead: the name the workers' trusted keys give your key is
    /// recorded.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
    /// Rollback: your secret key file (default: review.key, env VECSTREAM_REVIEW_KEY).
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
    /// Why (recorded with it).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `vecstream reindex start`.
#[derive(Debug, Args)]
pub struct ReindexStartArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Alias to reindex (default: weaviate.alias).
    #[arg(long)]
    pub alias: Option<String>,
    /// Only this tenant's documents, for an alias that serves one tenant (default: all).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Labelled query set (JSONL {query, relevant_doc_ids}) to evaluate before review.
    #[arg(long)]
    pub eval_suite: Option<String>,
    /// Cut-off of the evaluation's recall@k.
    #[arg(long, default_value_t = 10)]
    pub eval_k: usize,
    /// Only documents of this tenant count in the evaluation.
    #[arg(long)]
    pub eval_tenant: Option<String>,
    /// Reject without review when the new collection's recall@k is below this.
    #[arg(long)]
    pub min_recall: Option<f64>,
    /// Seconds to wait for the review before rejecting (default: temporal.review_timeout_secs).
    #[arg(long)]
    pub review_timeout: Option<u64>,
    /// Offsets per scan activity (default: temporal.reindex_range_offsets).
    #[arg(long)]
    pub range_offsets: Option<i64>,
    /// Seconds between copies of newly arrived documents into both collections while the
    /// migration is open (default: temporal.reindex_catch_up_secs).
    #[arg(long)]
    pub catch_up_secs: Option<u64>,
    /// After approval, seconds the previous collection is kept current for `reindex
    /// rollback` before it is dropped (default: temporal.rollback_window_secs).
    #[arg(long)]
    pub rollback_window: Option<u64>,
    /// Seconds between telling embedders to leave a collection and dropping it (default:
    /// temporal.switch_grace_secs).
    #[arg(long)]
    pub switch_grace: Option<u64>,
    /// Seconds of heartbeat silence after which a scan activity is retried elsewhere.
    #[arg(long, default_value_t = 20)]
    pub heartbeat_secs: u64,
    /// History events after which a run continues as new with its progress.
    #[arg(long, default_value_t = 4000)]
    pub history_budget: u32,
}

/// `vecstream reindex status`.
#[derive(Debug, Args)]
pub struct ReindexStatusArgs {
    /// Workflow id (`reindex-<alias>-<model id>`).
    pub workflow_id: String,
    /// Keep watching with a live progress bar until the reindex awaits review, finishes or
    /// its workflow ends; exits non-zero when the workflow failed, was cancelled or
    /// terminated (saying why).
    #[arg(long)]
    pub watch: bool,
    /// Print the progress as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A workflow id argument.
#[derive(Debug, Args)]
pub struct WorkflowIdArg {
    /// Workflow id (`reindex-<alias>-<model id>`).
    pub workflow_id: String,
}

/// `vecstream finetune ...`.
#[derive(Debug, Subcommand)]
pub enum FinetuneCommand {
    /// Start fine-tuning; prints the workflow id (`finetune-<base model id>-<dataset hash>`).
    /// A second start of the same job is refused. Review it with `vecstream review`.
    Start(FinetuneStartArgs),
    /// Show a job's progress: phase, live training step and loss, evaluation, review.
    Status(FinetuneStatusArgs),
    /// Cancel a running job (its candidate is never registered).
    Cancel(WorkflowIdArg),
    /// List the registered model versions of the model store (engine.model_store).
    List(FinetuneListArgs),
}

/// `vecstream finetune start`.
#[derive(Debug, Args)]
pub struct FinetuneStartArgs {
    /// Base model: a directory, or a version name or model id of the model store.
    #[arg(long, value_name = "MODEL")]
    pub base: String,
    /// JSONL of {"query", "positive", "negatives"?} (path on the worker).
    #[arg(long, value_name = "FILE")]
    pub pairs: String,
    /// Passes over the training pairs.
    #[arg(long, default_value_t = 10)]
    pub epochs: u64,
    /// Pairs per batch (each batch's positives are the other queries' negatives).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub learning_rate: f32,
    /// Softmax temperature of the similarities.
    #[arg(long, default_value_t = 0.05)]
    pub temperature: f32,
    /// Weight of the pull of the adapter toward the identity.
    #[arg(long, default_value_t = 0.1)]
    pub identity_pull: f32,
    /// Seed of the batch order.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Share of the pairs held out for the evaluation (by a hash of the query).
    #[arg(long, default_value_t = 0.2)]
    pub held_out: f64,
    /// Optimiser steps between checkpoints.
    #[arg(long, default_value_t = 20)]
    pub checkpoint_every: u64,
    /// Cut-off of the evaluation's recall@k.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// Seconds to wait for the review before rejecting (default: temporal.review_timeout_secs).
    #[arg(long)]
    pub review_timeout: Option<u64>,
    /// Seconds of heartbeat silence after which the training activity is retried (it
    /// resumes from its last checkpoint).
    #[arg(long, default_value_t = 30)]
    pub heartbeat_secs: u64,
    /// Token limit per text of the base model (default, or 0: the model's).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
}

/// `vecstream finetune status`.
#[derive(Debug, Args)]
pub struct FinetuneStatusArgs {
    /// Workflow id (`finetune-<base model id>-<dataset hash>`).
    pub workflow_id: String,
    /// Keep watching (a progress bar over training steps) until it awaits review or ends;
    /// exits non-zero when the workflow failed, was cancelled or terminated (saying why).
    #[arg(long)]
    pub watch: bool,
    /// Print the progress (and the live training heartbeat) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `vecstream finetune list`.
#[derive(Debug, Args)]
pub struct FinetuneListArgs {
    /// Print the manifests as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `vecstream review ...`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Approve: a reindex moves the alias to the new collection (the old one is kept for
    /// rollback); a fine-tuning job registers its model version. Signed with your key.
    Approve(ReviewArgs),
    /// Reject: a reindex drops the new collection; a fine-tuning job discards its candidate.
    /// Signed with your key.
    Reject(ReviewArgs),
    /// Print a signed decision as JSON, to send with the stock temporal CLI
    /// (`temporal workflow update execute --workflow-id ID --name review --input "$(...)"`).
    Sign(ReviewSignArgs),
    /// Create a reviewer key: writes the secret key (mode 0600) to --out and prints the
    /// public key line for the workers' review.authorized_keys file.
    Keygen(ReviewKeygenArgs),
}

/// `vecstream review approve|reject`.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Workflow id of the reindex or fine-tuning job.
    pub workflow_id: String,
    /// Your secret key file (default: review.key, env VECSTREAM_REVIEW_KEY).
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
    /// Optional check: the name your key carries must be this one. The job records the
    /// name the workers' trusted keys give your key, whatever is passed here.
    #[arg(long)]
    pub reviewer: Option<String>,
    /// Why (at most 4096 bytes).
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Seconds to wait for a worker to answer; the command fails if none does in time.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
}

/// `vecstream review sign`.
#[derive(Debug, Args)]
pub struct ReviewSignArgs {
    /// Workflow id of the reindex or fine-tuning job.
    pub workflow_id: String,
    /// The decision.
    #[arg(long, value_parser = ["approve", "reject"])]
    pub decision: String,
    /// The open review's id (`review_id` in the job's progress; `temporal workflow query
    /// --name progress` shows it). Default: asked from Temporal.
    #[arg(long)]
    pub review_id: Option<String>,
    /// Your secret key file (default: review.key, env VECSTREAM_REVIEW_KEY).
    #[arg(long, value_name = "FILE")]
    pub key: Option<String>,
    /// Why (at most 4096 bytes).
    #[arg(long, default_value = "")]
    pub comment: String,
}

/// `vecstream review keygen`.
#[derive(Debug, Args)]
pub struct ReviewKeygenArgs {
    /// The reviewer's name (no spaces): what jobs, manifests and lineage record.
    #[arg(long)]
    pub name: String,
    /// Where to write the secret key (a new file; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: std::path::PathBuf,
}

/// `vecstream eval ...`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Run an EvaluateWorkflow and print the side-by-side report.
    Run(EvalRunArgs),
}

/// `vecstream eval run`.
#[derive(Debug, Args)]
pub struct EvalRunArgs {
    /// Labelled query set: JSONL of {"query", "relevant_doc_ids"}.
    #[arg(long)]
    pub suite: String,
    /// Collection to evaluate, as COLLECTION=MODEL_DIR (repeat to compare); default: the
    /// alias's collection with the configured model.
    #[arg(long = "collection", value_parser = parse_key_value)]
    pub collections: Vec<(String, String)>,
    /// Cut-off of recall@k.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Only documents of this tenant count.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Fail (exit 1) when the last collection's recall@k is below this.
    #[arg(long)]
    pub min_recall: Option<f64>,
    /// Search modes compared side by side on each collection, e.g. `vector,hybrid`
    /// (hybrid: alpha 0.5, relative-score fusion); default: vector.
    #[arg(long = "mode", value_enum, value_delimiter = ',')]
    pub modes: Vec<crate::cli::SearchModeArg>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
