//! The command line. Every flag has a `VECSTREAM_*` environment variable; connection flags
//! share theirs with the config keys they override.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod jobs;
pub use jobs::*;

/// vecstream: a stream of documents in, a searchable, versioned vector index with lineage out.
#[derive(Debug, Parser)]
#[command(
    name = "vecstream",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Configuration: defaults < vecstream.toml < VECSTREAM_<SECTION>_<KEY> env < flags.\n\
Run `vecstream config show --keys` to list every key and its environment variable."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (TOML). Default: ./vecstream.toml when it exists.
    #[arg(long, global = true, env = "VECSTREAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override any config key, e.g. `--set kafka.partitions=12` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub overrides: Vec<(String, String)>,
    /// Kafka bootstrap servers (config kafka.brokers).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_KAFKA_BROKERS",
        value_name = "HOST:PORT,..."
    )]
    pub kafka_brokers: Option<String>,
    /// Schema registry URL, Confluent API (config registry.url).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_REGISTRY_URL",
        value_name = "URL"
    )]
    pub registry_url: Option<String>,
    /// Temporal frontend address (config temporal.address).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_TEMPORAL_ADDRESS",
        value_name = "URL"
    )]
    pub temporal_address: Option<String>,
    /// Temporal namespace (config temporal.namespace).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_TEMPORAL_NAMESPACE",
        value_name = "NAME"
    )]
    pub temporal_namespace: Option<String>,
    /// Weaviate REST URL (config weaviate.url).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_WEAVIATE_URL",
        value_name = "URL"
    )]
    pub weaviate_url: Option<String>,
    /// Log filter, e.g. `info` or `vecstream=debug` (config telemetry.log_level).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_TELEMETRY_LOG_LEVEL",
        value_name = "FILTER"
    )]
    pub log_level: Option<String>,
    /// Log format (config telemetry.log_format).
    #[arg(long, global = true, env = "VECSTREAM_TELEMETRY_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Listen address of /metrics, /healthz, /readyz for `run` (config telemetry.metrics_addr).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_TELEMETRY_METRICS_ADDR",
        value_name = "IP:PORT"
    )]
    pub metrics_addr: Option<String>,
    /// OTLP/gRPC trace endpoint; empty disables export (config telemetry.otlp_endpoint).
    #[arg(
        long,
        global = true,
        env = "VECSTREAM_TELEMETRY_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,
}

impl GlobalArgs {
    /// The flags as `(config key, value)` overrides, applied after file and environment.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let named = [
            ("kafka.brokers", &self.kafka_brokers),
            ("registry.url", &self.registry_url),
            ("temporal.address", &self.temporal_address),
            ("temporal.namespace", &self.temporal_namespace),
            ("weaviate.url", &self.weaviate_url),
            ("telemetry.log_level", &self.log_level),
            ("telemetry.log_format", &self.log_format),
            ("telemetry.metrics_addr", &self.metrics_addr),
            ("telemetry.otlp_endpoint", &self.otlp_endpoint),
        ];
        let mut out: Vec<(String, String)> = named
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
            .collect();
        out.extend(self.overrides.iter().cloned());
        out
    }
}

pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check Kafka, the schema registry, Temporal and Weaviate; exit 1 naming any that is down.
    Status(StatusArgs),
    /// Publish documents (JSONL or a directory of files) as Avro to docs.documents.v1.
    Produce(ProduceArgs),
    /// Create or list vecstream's Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Show the effective configuration (secrets redacted) and every key's env variable.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a long-lived component: embedder, sink, Temporal worker, or all of them.
    Run(RunArgs),
    /// Embed a JSONL file of texts with the local engine; vectors come out in input order.
    Embed(EmbedArgs),
    /// Search the active collection (alias `Chunks`) by meaning.
    Search(SearchArgs),
    /// Serve the engine over HTTP: OpenAI `/v1/embeddings` and TEI `/embed`, with priority
    /// lanes (query, stream, bulk) and per-lane admission control.
    Serve(ServeArgs),
    /// Start, watch, cancel or roll back a blue/green reindex (a Temporal workflow).
    #[command(subcommand)]
    Reindex(ReindexCommand),
    /// Approve or reject a reindex or fine-tuning job waiting for human review (the `review`
    /// signal).
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Fine-tune a retrieval adapter on labelled pairs (FineTuneWorkflow), watch it, list the
    /// registered model versions.
    #[command(subcommand)]
    Finetune(FinetuneCommand),
    /// Evaluate collections on a labelled query set (recall@k, MRR, nDCG@10).
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Follow the lineage topic or trace one document's story.
    #[command(subcommand)]
    Lineage(LineageCommand),
    /// List or replay dead-lettered records.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// `vecstream status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the report as JSON.
    #[arg(long, env = "VECSTREAM_STATUS_JSON")]
    pub json: bool,
    /// Seconds to wait for each service.
    #[arg(
        long,
        default_value_t = 5,
        env = "VECSTREAM_STATUS_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub timeout: u64,
    /// Also run a health-check workflow end to end (needs a running `vecstream run worker`).
    #[arg(long, env = "VECSTREAM_STATUS_WORKFLOW")]
    pub workflow: bool,
}

/// `vecstream lineage`.
#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Print lineage events as they arrive (Ctrl-C stops).
    Tail {
        /// Only events of this document (of `--tenant`).
        #[arg(long, env = "VECSTREAM_LINEAGE_DOC")]
        doc: Option<String>,
        /// The tenant of `--doc`: a document is its (tenant, id).
        #[arg(long, env = "VECSTREAM_LINEAGE_TENANT", default_value = "default")]
        tenant: String,
        /// Start at the oldest retained event instead of now.
        #[arg(long, env = "VECSTREAM_LINEAGE_FROM_BEGINNING")]
        from_beginning: bool,
        /// One JSON object per event.
        #[arg(long, env = "VECSTREAM_LINEAGE_JSON")]
        json: bool,
    },
    /// Print every retained event of one document, oldest first, and exit.
    Trace {
        /// The document id (matched byte for byte).
        doc_id: String,
        /// The document's tenant: a document is its (tenant, id).
        #[arg(long, env = "VECSTREAM_LINEAGE_TENANT", default_value = "default")]
        tenant: String,
        /// One JSON object per event.
        #[arg(long, env = "VECSTREAM_LINEAGE_JSON")]
        json: bool,
    },
    /// Send the lineage topic's events as OpenLineage run events through the configured
    /// transports (`openlineage.http_url`, `openlineage.kafka_topic`). Without
    /// `--from-beginning` it follows the topic in the exporter's consumer group until
    /// stopped, as `vecstream run openlineage` does.
    Export {
        /// Back-fill: send every retained event from the topic's beginning to its current
        /// end, waiting for the endpoint instead of dropping, then exit.
        #[arg(long, env = "VECSTREAM_LINEAGE_FROM_BEGINNING")]
        from_beginning: bool,
        /// With `--from-beginning`: only events from this time on (RFC 3339, e.g.
        /// `2026-12-01T10:00:00Z`, or an age such as `2h`).
        #[arg(long, env = "VECSTREAM_LINEAGE_SINCE", requires = "from_beginning")]
        since: Option<String>,
    },
    /// Where one document is, in one line: accepted (offset), embedded (model), indexed
    /// (collection), searchable under the alias, or dead-lettered (reason), with times.
    /// Exit status 0 when searchable, 1 when not (yet), 2 when dead-lettered.
    Status {
        /// The document id (matched byte for byte).
        doc_id: String,
        /// The document's tenant: a document is its (tenant, id).
        #[arg(long, env = "VECSTREAM_LINEAGE_TENANT", default_value = "default")]
        tenant: String,
        /// The version to ask about; default: the newest one the embedder accepted.
        #[arg(long, env = "VECSTREAM_LINEAGE_DOC_VERSION")]
        doc_version: Option<i64>,
        /// Wait until the document (that version, or the newest accepted) is searchable,
        /// dead-lettered, or `--timeout` passes.
        #[arg(long, env = "VECSTREAM_LINEAGE_WAIT")]
        wait: bool,
        /// Seconds `--wait` waits.
        #[arg(
            long,
            default_value_t = 60,
            env = "VECSTREAM_LINEAGE_TIMEOUT",
            value_name = "SECONDS"
        )]
        timeout: u64,
        /// One JSON object instead of the line.
        #[arg(long, env = "VECSTREAM_LINEAGE_JSON")]
        json: bool,
    },
}

/// `vecstream dlq`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered records with their reason and source position, and exit.
    List {
        /// Only records of this reason (undecodable, unknown_schema, invalid, empty_body,
        /// over_limits, rejected).
        #[arg(long, alias = "class", env = "VECSTREAM_DLQ_REASON")]
        reason: Option<String>,
        /// One JSON object per record.
        #[arg(long, env = "VECSTREAM_DLQ_JSON")]
        json: bool,
    },
    /// Republish dead-lettered records to their source topic (after fixing the cause), each
    /// at most once per replay group.
    Replay {
        /// Only the records of this document id (of `--tenant`): its record key.
        #[arg(long, env = "VECSTREAM_DLQ_KEY")]
        key: Option<String>,
        /// The tenant of `--key` (its record key is `<tenant>\0<id>`; default: the tenant
        /// `default`, whose key is the bare id).
        #[arg(long, env = "VECSTREAM_DLQ_TENANT", requires = "key")]
        tenant: Option<String>,
        /// Only records of this reason (see `dlq list --help`).
        #[arg(long, alias = "class", env = "VECSTREAM_DLQ_REASON")]
        reason: Option<String>,
        /// Consumer group that remembers which records were replayed (with `--reason` or
        /// `--key`, a group of that filter: `<group>.reason=<r>`, `<group>.key=<hash>`, so a
        /// filtered replay never counts other records as replayed).
        #[arg(
            long,
            default_value = "vecstream-dlq-replay",
            env = "VECSTREAM_DLQ_GROUP"
        )]
        group: String,
        /// Show what would be replayed; publish and remember nothing.
        #[arg(long, env = "VECSTREAM_DLQ_DRY_RUN")]
        dry_run: bool,
    },
}

/// `vecstream search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for: natural language, keywords, codes.
    pub query: String,
    /// Number of results: documents (each with its best chunk), or chunks with `--chunks`.
    #[arg(long, short, default_value_t = 5, env = "VECSTREAM_SEARCH_K")]
    pub k: usize,
    /// `vector` (nearest vectors), `keyword` (BM25 over the chunk's text, the title and
    /// the metadata) or `hybrid` (both, fused).
    #[arg(
        long,
        value_enum,
        default_value = "hybrid",
        env = "VECSTREAM_SEARCH_MODE"
    )]
    pub mode: SearchModeArg,
    /// Hybrid: weight of the vector side (1 = vector only, 0 = keywords only).
    #[arg(long, default_value_t = 0.5, env = "VECSTREAM_SEARCH_ALPHA")]
    pub alpha: f32,
    /// Hybrid: how the two rankings fuse: `relative-score` (scores normalised, then
    /// weighted) or `ranked` (reciprocal ranks).
    #[arg(
        long,
        value_enum,
        default_value = "relative-score",
        env = "VECSTREAM_SEARCH_FUSION"
    )]
    pub fusion: FusionArg,
    /// Only documents matching, repeatable (all apply): `source=VALUE`,
    /// `metadata.KEY=VALUE` (exact, case-sensitive).
    #[arg(
        long = "where",
        value_name = "FIELD=VALUE",
        env = "VECSTREAM_SEARCH_WHERE"
    )]
    pub filters: Vec<String>,
    /// Only documents produced at or after this time (RFC 3339, or an age such as `7d`).
    #[arg(long, env = "VECSTREAM_SEARCH_SINCE")]
    pub since: Option<String>,
    /// List the best chunks themselves (several per document) instead of the best chunk
    /// per document.
    #[arg(long, env = "VECSTREAM_SEARCH_CHUNKS")]
    pub chunks: bool,
    /// Collection or alias to search; default: config weaviate.alias (`Chunks`).
    #[arg(long, env = "VECSTREAM_SEARCH_COLLECTION")]
    pub collection: Option<String>,
    /// Only chunks of this tenant's documents.
    #[arg(long, env = "VECSTREAM_SEARCH_TENANT")]
    pub tenant: Option<String>,
    /// One JSON object per hit instead of a table.
    #[arg(long, env = "VECSTREAM_SEARCH_JSON")]
    pub json: bool,
}

/// `vecstream search --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchModeArg {
    Vector,
    Hybrid,
    Keyword,
}

/// `vecstream search --fusion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FusionArg {
    RelativeScore,
    Ranked,
}

/// `vecstream embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Input lines `{"id": ..., "text": ...}`.
    #[arg(long, short, env = "VECSTREAM_EMBED_INPUT", value_name = "FILE.jsonl")]
    pub input: PathBuf,
    /// Output lines `{"id": ..., "vector": [...]}`; default: standard output.
    #[arg(long, short, env = "VECSTREAM_EMBED_OUTPUT", value_name = "FILE.jsonl")]
    pub output: Option<PathBuf>,
    /// Model directory, or a version name or model id of the model store (config
    /// engine.model_dir).
    #[arg(long, env = "VECSTREAM_ENGINE_MODEL_DIR", value_name = "DIR")]
    pub model: Option<String>,
    /// fp32; int8 for quantised linear layers (CPU); fp16 (CUDA only) (config
    /// engine.precision).
    #[arg(long, env = "VECSTREAM_ENGINE_PRECISION", value_parser = ["fp32", "int8", "fp16"])]
    pub precision: Option<String>,
    /// Threads of the forward pass, 0 = every core (config engine.threads).
    #[arg(long, env = "VECSTREAM_ENGINE_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Most tokens per forward batch (config engine.batch_tokens).
    #[arg(long, env = "VECSTREAM_ENGINE_BATCH_TOKENS", value_name = "N")]
    pub batch_tokens: Option<usize>,
    /// auto, cpu or cuda (config engine.backend).
    #[arg(long, env = "VECSTREAM_ENGINE_BACKEND", value_parser = ["auto", "cpu", "cuda"])]
    pub backend: Option<String>,
    /// Hide the progress bar.
    #[arg(long, env = "VECSTREAM_EMBED_QUIET")]
    pub quiet: bool,
}

impl EmbedArgs {
    /// The engine flags as config overrides.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let named = [
            ("engine.model_dir", self.model.clone()),
            ("engine.precision", self.precision.clone()),
            ("engine.threads", self.threads.map(|n| n.to_string())),
            (
                "engine.batch_tokens",
                self.batch_tokens.map(|n| n.to_string()),
            ),
            ("engine.backend", self.backend.clone()),
        ];
        named
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect()
    }
}

/// `vecstream serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "Lanes: a request's lane is the path's (`/bulk/v1/embeddings`, \
`/stream/embed`), else its `x-vecstream-lane` header, else its API key's, else \
serve.default_lane. Batches fill from query, then stream, then bulk; a lower lane waiting \
past serve.starvation_ms goes first. Over its queued-token limit a lane answers 429 with \
Retry-After. Every serve.* key is also a VECSTREAM_SERVE_* variable."
)]
pub struct ServeArgs {
    /// Listen address of the API and of /healthz, /readyz, /metrics (config serve.addr).
    #[arg(long, env = "VECSTREAM_SERVE_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// A lane's queued-token limit, e.g. `bulk=100000` (repeatable; config
    /// serve.max_queued_tokens_<lane>).
    #[arg(long, value_name = "LANE=TOKENS", value_parser = parse_key_value)]
    pub max_queued_tokens: Vec<(String, String)>,
    /// Lane of requests that name none: query, stream or bulk (config serve.default_lane).
    #[arg(long, env = "VECSTREAM_SERVE_DEFAULT_LANE", value_parser = ["query", "stream", "bulk"])]
    pub default_lane: Option<String>,
    /// One first-come queue instead of priority lanes (the benchmark's baseline; config
    /// serve.lanes = false).
    #[arg(long)]
    pub no_lanes: bool,
    /// File of `<lane> <name> <key>` lines: requests need one of the keys (config
    /// serve.api_keys).
    #[arg(long, env = "VECSTREAM_SERVE_API_KEYS", value_name = "FILE")]
    pub api_keys: Option<String>,
    /// Model directory, or a version name or model id of the model store (config
    /// engine.model_dir).
    #[arg(long, env = "VECSTREAM_ENGINE_MODEL_DIR", value_name = "DIR")]
    pub model: Option<String>,
    /// fp32, int8 (CPU) or fp16 (CUDA) (config engine.precision).
    #[arg(long, env = "VECSTREAM_ENGINE_PRECISION", value_parser = ["fp32", "int8", "fp16"])]
    pub precision: Option<String>,
    /// auto, cpu or cuda (config engine.backend).
    #[arg(long, env = "VECSTREAM_ENGINE_BACKEND", value_parser = ["auto", "cpu", "cuda"])]
    pub backend: Option<String>,
    /// Threads of the forward pass, 0 = every core (config engine.threads).
    #[arg(long, env = "VECSTREAM_ENGINE_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Most tokens per engine batch: a query waits for the batch in flight (config
    /// serve.batch_tokens).
    #[arg(long, env = "VECSTREAM_SERVE_BATCH_TOKENS", value_name = "N")]
    pub batch_tokens: Option<usize>,
}

impl ServeArgs {
    /// The flags as config overrides.
    pub fn overrides(&self) -> Result<Vec<(String, String)>, String> {
        let mut out: Vec<(String, String)> = [
            ("serve.addr", self.addr.clone()),
            ("serve.default_lane", self.default_lane.clone()),
            ("serve.api_keys", self.api_keys.clone()),
            ("serve.lanes", self.no_lanes.then(|| "false".to_owned())),
            ("engine.model_dir", self.model.clone()),
            ("engine.precision", self.precision.clone()),
            ("engine.backend", self.backend.clone()),
            ("engine.threads", self.threads.map(|n| n.to_string())),
            (
                "engine.batch_tokens",
                self.batch_tokens.map(|n| n.to_string()),
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
        for (lane, tokens) in &self.max_queued_tokens {
            let lane = lane.trim().to_lowercase();
            if !["query", "stream", "bulk"].contains(&lane.as_str()) {
                return Err(format!(
                    "--max-queued-tokens {lane}=…: the lane is query, stream or bulk"
                ));
            }
            out.push((format!("serve.max_queued_tokens_{lane}"), tokens.clone()));
        }
        Ok(out)
    }
}

/// `vecstream produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// A JSONL file (one document per line) or a directory (each text file becomes a document).
    #[arg(
        long,
        short,
        env = "VECSTREAM_PRODUCE_INPUT",
        value_name = "FILE.jsonl|DIR"
    )]
    pub input: PathBuf,
    /// Documents per second; 0 publishes as fast as the brokers acknowledge.
    #[arg(
        long,
        default_value_t = 0.0,
        env = "VECSTREAM_PRODUCE_RATE",
        value_name = "N"
    )]
    pub rate: f64,
    /// Tenant of documents that name none.
    #[arg(long, default_value = "default", env = "VECSTREAM_PRODUCE_TENANT")]
    pub tenant: String,
    /// Publish the valid documents even when some inputs are invalid (they are listed).
    #[arg(long, env = "VECSTREAM_PRODUCE_SKIP_INVALID")]
    pub skip_invalid: bool,
    /// Largest body accepted, in bytes; bigger inputs are invalid.
    #[arg(long, default_value_t = 4 * 1024 * 1024, env = "VECSTREAM_PRODUCE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Hide the progress bar.
    #[arg(long, env = "VECSTREAM_PRODUCE_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the missing topics (documents compacted); existing ones are left alone.
    Create,
    /// List the topics the brokers know, marking vecstream's.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML, secrets redacted.
    Show {
        /// Print every key with its environment variable instead.
        #[arg(long)]
        keys: bool,
    },
}

/// Which component `vecstream run` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// Documents → chunks → vectors and lineage, in Kafka transactions.
    Embedder,
    /// Vectors → Weaviate (idempotent upserts, stale-chunk deletes, version fencing).
    Sink,
    /// Temporal worker for vecstream's workflows and activities.
    Worker,
    /// OpenLineage exporter: the lineage topic as OpenLineage events over HTTP and/or Kafka
    /// (`[openlineage]`).
    Openlineage,
    /// Embedder, sink and worker in one process, and the OpenLineage exporter when
    /// `[openlineage]` names a transport.
    All,
}

/// Task queues a worker polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Queue {
    Cpu,
    Gpu,
    Both,
}

/// `vecstream run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The component to run.
    pub component: Component,
    /// Task queues of `worker`: vecstream-cpu, vecstream-gpu, or both.
    #[arg(long, value_enum, default_value = "both", env = "VECSTREAM_RUN_QUEUE")]
    pub queue: Queue,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_config_overrides_after_set() {
        let cli = Cli::try_parse_from([
            "vecstream",
            "--kafka-brokers",
            "k:1",
            "--set",
            "kafka.partitions=3",
            "status",
        ])
        .unwrap();
        let o = cli.global.overrides();
        assert!(o.contains(&("kafka.brokers".into(), "k:1".into())));
        assert!(o.contains(&("kafka.partitions".into(), "3".into())));
        assert!(Cli::try_parse_from(["vecstream", "--set", "novalue", "status"]).is_err());
    }

    #[test]
    fn every_design_subcommand_exists() {
        let cmd = Cli::command();
        for name in [
            "run", "produce", "embed", "search", "serve", "reindex", "review", "finetune", "eval",
            "lineage", "dlq", "status",
        ] {
            let sub = cmd
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("missing subcommand {name}"));
            assert!(sub.get_about().is_some(), "{name} has no help");
        }
    }
}
