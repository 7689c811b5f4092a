//! The configuration model. Defaults point at the local stack of `compose/local/stack`.

use serde::{Deserialize, Serialize};

use crate::Secret;

/// Everything a vecstream process needs to reach its services.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Apache Kafka.
    pub kafka: KafkaConfig,
    /// Confluent-compatible schema registry.
    pub registry: RegistryConfig,
    /// Temporal frontend.
    pub temporal: TemporalConfig,
    /// Weaviate vector store.
    pub weaviate: WeaviateConfig,
    /// Logs, traces and the metrics/health endpoint.
    pub telemetry: TelemetryConfig,
    /// The embedding engine.
    pub engine: EngineSettings,
    /// The stream embedder (`vecstream run embedder`).
    pub embedder: EmbedderSettings,
    /// The Weaviate sink (`vecstream run sink`).
    pub sink: SinkSettings,
    /// Signed reviews: the keys workers trust, and the key this process signs with.
    pub review: ReviewSettings,
    /// The embedding service (`vecstream serve`).
    pub serve: ServeSettings,
    /// OpenLineage export of the lineage topic (`vecstream run openlineage`, `vecstream
    /// lineage export`).
    pub openlineage: OpenLineageSettings,
}

/// OpenLineage export: the Avro lineage topic's events as spec-valid OpenLineage run
/// events, through the HTTP transport (a Marquez-style `/api/v1/lineage` endpoint), the
/// Kafka transport (JSON on a topic of its own), or both. Off while neither is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenLineageSettings {
    /// OpenLineage job namespace of vecstream's jobs (`embedder`, `sink`, `reindex`...).
    pub namespace: String,
    /// Base URL of the HTTP transport's endpoint (`http://marquez:5000`); empty: no HTTP.
    pub http_url: String,
    /// Path of the lineage endpoint under `http_url`.
    pub http_endpoint: String,
    /// Sent as `Authorization: Bearer <key>`; empty: no header.
    pub http_api_key: Secret,
    /// Timeout of one POST, in milliseconds.
    pub http_timeout_ms: u64,
    /// Events the HTTP transport holds while the endpoint is slow or down; when full, new
    /// events are dropped (counted in `vecstream_openlineage_dropped_total`, logged), and
    /// the stream never waits. `vecstream lineage export --from-beginning` re-sends them.
    pub http_buffer_events: usize,
    /// Events sent at once (concurrent POSTs on kept-alive connections).
    pub http_batch_size: usize,
    /// Tries of one event before it is dropped as undeliverable (backoff 0.5 s doubling,
    /// at most 30 s); 4xx answers other than 408/429 are not retried.
    pub http_max_attempts: u32,
    /// Topic of the Kafka transport (JSON, key = run id); empty: no Kafka transport.
    pub kafka_topic: String,
    /// Consumer group of the exporter on `docs.lineage.v1`.
    pub group_id: String,
}

impl Default for OpenLineageSettings {
    fn default() -> Self {
        Self {
            namespace: "vecstream".into(),
            http_url: String::new(),
            http_endpoint: "api/v1/lineage".into(),
            http_api_key: Secret::default(),
            http_timeout_ms: 5_000,
            http_buffer_events: 10_000,
            http_batch_size: 32,
            http_max_attempts: 5,
            kafka_topic: String::new(),
            group_id: "vecstream-openlineage".into(),
        }
    }
}

impl OpenLineageSettings {
    /// True when at least one transport is configured.
    pub fn enabled(&self) -> bool {
        !self.http_url.is_empty() || !self.kafka_topic.is_empty()
    }
}

/// `vecstream serve`: the engine behind an OpenAI- and TEI-compatible HTTP API, with
/// priority lanes (`query` before `stream` before `bulk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
    /// Listen address of the API (and of `/healthz`, `/readyz`, `/metrics`).
    pub addr: String,
    /// Lane of a request that names none (no `x-vecstream-lane` header, no lane in the
    /// path, no lane of its API key): `query`, `stream` or `bulk`.
    pub default_lane: String,
    /// Tokens the `query` lane may hold queued; a request that would pass it is answered
    /// 429 with `Retry-After`, one over it by itself 413.
    pub max_queued_tokens_query: usize,
    /// Tokens the `stream` lane may hold queued.
    pub max_queued_tokens_stream: usize,
    /// Tokens the `bulk` lane may hold queued.
    pub max_queued_tokens_bulk: usize,
    /// Most tokens in one engine batch. A query waits for the batch in flight, so smaller
    /// batches let it in sooner; larger ones embed a little faster.
    pub batch_tokens: usize,
    /// A request of a lower lane waiting this long (milliseconds) goes into the next batch
    /// ahead of the higher lanes (the starvation guard).
    pub starvation_ms: u64,
    /// Priority lanes on; off, every request waits in one first-come queue (the baseline
    /// of the lanes benchmark).
    pub lanes: bool,
    /// File of API keys, one `<lane> <name> <key>` per line (`#` comments): with it every
    /// request needs `Authorization: Bearer <key>`, and a key's lane is both its default
    /// and the highest it may ask for. Empty: no authentication.
    pub api_keys: String,
    /// Most inputs in one request.
    pub max_inputs: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8088".into(),
            default_lane: "query".into(),
            // About 4 s, 15 s and 30 s of work for 2 CPU cores (18k tokens/s): a client's
            // timeout (30 s by default) outlasts the wait of what is admitted.
            max_queued_tokens_query: 65_536,
            max_queued_tokens_stream: 262_144,
            max_queued_tokens_bulk: 524_288,
            batch_tokens: 2_048,
            starvation_ms: 2_000,
            lanes: true,
            api_keys: String::new(),
            max_inputs: 2_048,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A remote embedding provider: anything speaking the OpenAI embeddings API (`openai`:
/// OpenAI, vLLM, Ollama, `vecstream serve`) or text-embeddings-inference's `/embed`
/// (`tei`). Its vectors are L2-normalised like the engine's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteProvider {
    /// Name used in `engine.provider`, `engine.fallback`, lineage and metrics.
    pub name: String,
    /// `openai` (POST `<url>/embeddings`) or `tei` (POST `<url>/embed`).
    pub kind: String,
    /// Base URL: for `openai` the API root (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:8088/v1`), for `tei` the server (`http://127.0.0.1:8080`).
    pub url: String,
    /// Bearer token (never logged); empty for none.
    pub api_key: Secret,
    /// Model name sent to the provider. When it is the model id of `engine.model_dir`
    /// (what `vecstream serve` runs), the provider shares the local model's vector space
    /// (checked with a probe before its first use) and may fall back to `local`; otherwise
    /// its vector space is its own: `<kind>-<model>-<dimensions>`.
    pub model: String,
    /// Width of the vectors; 0 = whatever the provider answers (checked to stay the same).
    /// `openai` sends it as `dimensions` when set and the model is not the local one.
    pub dimensions: usize,
    /// Most inputs per request; larger calls are split.
    pub max_batch: usize,
    /// Timeout of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Client-side rate limit in requests per second; 0 = none.
    pub requests_per_second: f64,
    /// Client-side rate limit in tokens per minute (counted with the local tokenizer);
    /// 0 = none.
    pub tokens_per_minute: u64,
    /// Attempts per request on a transient failure (timeouts, 429, 5xx) before the call
    /// goes to the fallback.
    pub max_attempts: u32,
    /// First backoff between attempts, in milliseconds (doubled each time, with jitter;
    /// a `Retry-After` answer is honoured instead when it is longer).
    pub backoff_initial_ms: u64,
    /// Longest backoff between attempts, in milliseconds.
    pub backoff_max_ms: u64,
    /// Longest one call waits out `429` answers (each `Retry-After` honoured) before the
    /// next member of the chain takes it, in milliseconds. Throttling is no failure: it
    /// never opens the circuit.
    pub max_throttle_ms: u64,
    /// Consecutive failed calls that open the circuit breaker: while open, calls go
    /// straight to the fallback.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial call, in milliseconds.
    pub breaker_open_ms: u64,
    /// `x-vecstream-lane` sent with every request (`query`, `stream`, `bulk`); empty: the
    /// caller's own (search `query`, embedder `stream`, jobs `bulk`).
    pub lane: String,
    /// Send the local tokenizer's token ids instead of text (OpenAI's token-array input):
    /// exact for a provider running the local model; needs `model` to be the local model.
    pub send_token_ids: bool,
    /// PEM file of a CA for `https://` URLs, on top of the system's.
    pub tls_ca_cert: String,
}

impl Default for RemoteProvider {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: "openai".into(),
            url: String::new(),
            api_key: Secret::default(),
            model: String::new(),
            dimensions: 0,
            // TEI's own default limit (`max_client_batch_size`) is 32.
            max_batch: 32,
            timeout_ms: 30_000,
            requests_per_second: 0.0,
            tokens_per_minute: 0,
            max_attempts: 4,
            backoff_initial_ms: 250,
            backoff_max_ms: 10_000,
            max_throttle_ms: 60_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            lane: String::new(),
            send_token_ids: false,
            tls_ca_cert: String::new(),
        }
    }
}

/// Signed reviews. A `review` counts only when signed by a key the worker trusts; the
/// worker reads `authorized_keys` at every review, so adding or removing a key needs no
/// restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewSettings {
    /// Worker: file of trusted reviewer public keys, one `ed25519:<base64> <name>` per line
    /// (`vecstream review keygen` prints one). Empty: no review is taken.
    pub authorized_keys: String,
    /// Worker: an approval must come from another reviewer (another name in
    /// `authorized_keys`) than the one who signed the job's start (so the job must be
    /// started with a key).
    pub four_eyes: bool,
    /// CLI, embedder: this process's secret key file (mode 0600): it signs `review
    /// approve|reject|sign`, `reindex rollback` and the starts of reindex and fine-tuning
    /// jobs.
    pub key: String,
}

/// The embedding engine (`vecstream embed` and the embedder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// sentence-transformers model directory (BERT family).
    pub model_dir: String,
    /// `auto` (CUDA if present, else CPU), `cpu` or `cuda`.
    pub backend: String,
    /// `fp32`; `int8` (CPU: int8 weights per column, activations per row); `fp16` (CUDA only:
    /// half weights and activations, fp32 accumulation); `bf16` is refused.
    pub precision: String,
    /// Threads of the forward pass; 0 = every core.
    pub threads: usize,
    /// Most tokens in one forward batch.
    pub batch_tokens: usize,
    /// Longest a request waits for others to share its batch, in milliseconds.
    pub max_wait_ms: u64,
    /// Token limit per text, special tokens included; 0 = the model's own (256 for MiniLM).
    pub max_seq_length: usize,
    /// The model store: registered (fine-tuned) model versions. `model_dir`, `embed --model`
    /// and `reindex start --model-dir` also take a version name or model id of this store.
    pub model_store: String,
    /// Who embeds: `local` (this process's engine on `model_dir`) or the `name` of an
    /// `[[engine.providers]]` entry.
    pub provider: String,
    /// Tried in order when the provider fails (retries spent, circuit open): `local` or
    /// provider names. Every member must share the provider's vector space.
    pub fallback: Vec<String>,
    /// Remote embedding providers (`[[engine.providers]]` tables in the config file).
    pub providers: Vec<RemoteProvider>,
}

/// The stream embedder: documents in, vectors + lineage out, in Kafka transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderSettings {
    /// Consumer group on `docs.documents.v1`.
    pub group_id: String,
    /// Kafka `transactional.id`; stable per instance so a restart fences its predecessor.
    /// Empty = `vecstream-embedder-<hostname>`.
    pub transactional_id: String,
    /// Tokens per chunk window, special tokens included; 0 = the model's limit.
    pub chunk_tokens: usize,
    /// Tokens shared by consecutive chunk windows.
    pub chunk_overlap: usize,
    /// Token budget of one micro-batch gathered across messages.
    pub batch_tokens: usize,
    /// Most messages in one micro-batch (one Kafka transaction).
    pub batch_max_records: usize,
    /// Longest the first message of a micro-batch waits for others, in milliseconds.
    pub batch_max_wait_ms: u64,
    /// Bodies larger than this go to the DLQ (`over_limits`).
    pub max_body_bytes: usize,
    /// Documents with more chunks than this go to the DLQ (`over_limits`).
    pub max_chunks: usize,
    /// Upper bound of the retry backoff after transient failures, in milliseconds.
    pub max_backoff_ms: u64,
    /// Documents of more tokens than this go to a `LargeDocumentWorkflow` on Temporal
    /// instead of being embedded inline (so they do not stall their partition); 0 = never.
    pub large_document_tokens: usize,
    /// Documents the dedup memory keeps per partition. Over it, entries that are only an
    /// optimisation (a live document with no pending job) are forgotten: such a document
    /// republished unchanged is embedded again, and the sink still fences older versions.
    /// Delete markers and documents with pending large-document jobs are always kept.
    /// 0 = no bound.
    pub state_max_documents: usize,
    /// How long a large document waits for an unreachable Temporal (its partition held
    /// back, the others going on) before it is dead-lettered (`over_limits`, replayable), in
    /// milliseconds.
    pub temporal_max_wait_ms: u64,
    /// When the alias serves another model and this embedder's model is not part of its
    /// migration, start the reindex to this model (idempotent: deterministic workflow id).
    /// Never for a model the alias's migration rejected, rolled back or superseded.
    pub reindex_on_model_change: bool,
    /// How often the embedder reads the alias's migration state (`docs.control.v1`), in
    /// milliseconds: it switches the model it embeds with when the state says so.
    pub control_poll_ms: u64,
}

impl Default for EmbedderSettings {
    fn default() -> Self {
        Self {
            group_id: "vecstream-embedder".into(),
            transactional_id: String::new(),
            chunk_tokens: 0,
            chunk_overlap: 32,
            batch_tokens: 16384,
            batch_max_records: 256,
            batch_max_wait_ms: 100,
            max_body_bytes: 4 * 1024 * 1024,
            max_chunks: 1024,
            max_backoff_ms: 30_000,
            large_document_tokens: 32_768,
            state_max_documents: 250_000,
            temporal_max_wait_ms: 600_000,
            reindex_on_model_change: true,
            control_poll_ms: 2_000,
        }
    }
}

/// The Weaviate sink: vectors in, idempotent upserts and stale-chunk deletes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkSettings {
    /// Consumer group on `docs.vectors.v1`.
    pub group_id: String,
    /// Most vector records written to Weaviate before one offset commit.
    pub batch_max_records: usize,
    /// Longest the first record of a batch waits for others, in milliseconds.
    pub batch_max_wait_ms: u64,
    /// Most payload bytes in one batch (vectors records reach 16 MiB each); a larger record
    /// alone still makes a batch of one. 0 = records only.
    pub batch_max_bytes: usize,
    /// Upper bound of the retry backoff while Weaviate or Kafka is failing, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            group_id: "vecstream-sink".into(),
            batch_max_records: 64,
            batch_max_wait_ms: 100,
            batch_max_bytes: 64 * 1024 * 1024,
            max_backoff_ms: 30_000,
        }
    }
}

/// `$VECSTREAM_CACHE` or `~/.cache/vecstream`: where the set-up installs models and services.
pub fn cache_dir() -> String {
    std::env::var("VECSTREAM_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/vecstream",
            std::env::var("HOME").unwrap_or_else(|_| ".".into())
        )
    })
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            model_dir: format!("{}/models/all-MiniLM-L6-v2", cache_dir()),
            backend: "auto".into(),
            precision: "fp32".into(),
            threads: 0,
            batch_tokens: 8192,
            max_wait_ms: 5,
            max_seq_length: 0,
            model_store: format!("{}/model-store", cache_dir()),
            provider: "local".into(),
            fallback: Vec::new(),
            providers: Vec::new(),
        }
    }
}

/// Kafka connection and topic settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// SASL mechanism when a `sasl_*` protocol is used: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub sasl_mechanism: String,
    /// SASL user name.
    pub sasl_username: String,
    /// SASL password (never logged).
    pub sasl_password: Secret,
    /// CA bundle for `ssl`/`sasl_ssl`; empty uses the system store.
    pub ssl_ca_location: String,
    /// Client id reported to the brokers.
    pub client_id: String,
    /// Partitions of topics vecstream creates.
    pub partitions: i32,
    /// Replication factor of topics vecstream creates; -1 = the cluster's
    /// `default.replication.factor` (1 on the local one-broker stack, 3 on its three-broker
    /// mode and on most managed clusters).
    pub replication_factor: i32,
    /// Timeout of metadata and admin requests, in milliseconds.
    pub request_timeout_ms: u64,
    /// Consumers (embedder, sink): longest time between two polls before the group evicts
    /// the member, in milliseconds. Consumers keep polling while a batch is retried, so an
    /// outage longer than this does not evict them; a member evicted anyway rejoins.
    pub max_poll_interval_ms: u64,
    /// Consumers: group session timeout in milliseconds (capped at `max_poll_interval_ms`;
    /// the brokers accept 6000 to 300000 by default).
    pub session_timeout_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            security_protocol: "plaintext".into(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            ssl_ca_location: String::new(),
            client_id: "vecstream".into(),
            partitions: 6,
            replication_factor: -1,
            request_timeout_ms: 10_000,
            max_poll_interval_ms: 300_000,
            session_timeout_ms: 45_000,
        }
    }
}

/// Schema registry (Confluent REST API; Apicurio serves it under `/apis/ccompat/v7`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API.
    pub url: String,
    /// Basic-auth user name; empty for none.
    pub username: String,
    /// Basic-auth password (never logged).
    pub password: Secret,
    /// PEM file of the CA that signs the registry's certificate (`https://` URLs), on top
    /// of the system's; empty: the system's only.
    pub tls_ca_cert: String,
    /// Timeout of one registry request, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            username: String::new(),
            password: Secret::default(),
            tls_ca_cert: String::new(),
            request_timeout_ms: 10_000,
        }
    }
}

/// Temporal frontend connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemporalConfig {
    /// gRPC address, `http://host:port` (or `https://` with TLS).
    pub address: String,
    /// Namespace of vecstream's workflows.
    pub namespace: String,
    /// API key for hosted Temporal (never logged); empty for none.
    pub api_key: Secret,
    /// Use TLS (implied by `https://` or a client certificate).
    pub tls: bool,
    /// PEM CA certificate for TLS; empty uses the system roots.
    pub tls_ca_cert: String,
    /// PEM client certificate for mTLS.
    pub tls_client_cert: String,
    /// PEM client private key for mTLS.
    pub tls_client_key: String,
    /// Task queue of workflows and light activities.
    pub cpu_task_queue: String,
    /// Task queue of embedding and training activities.
    pub gpu_task_queue: String,
    /// Activities a worker runs at once on the cpu queue.
    pub cpu_concurrency: usize,
    /// Activities a worker runs at once on the gpu queue (each holds a model).
    pub gpu_concurrency: usize,
    /// Models a worker keeps loaded between activities (least recently used unloaded first;
    /// a model an activity is using is never unloaded, so a worker may hold more meanwhile).
    pub max_engines: usize,
    /// Seconds a reindex waits for its review before it counts as rejected.
    pub review_timeout_secs: u64,
    /// Offsets of the documents topic per reindex scan activity.
    pub reindex_range_offsets: i64,
    /// Seconds between a migration's catch-ups (new documents into both collections) while
    /// it awaits review and during its rollback window, for reindexes the embedder starts.
    pub reindex_catch_up_secs: u64,
    /// Seconds an approved migration keeps the previous collection current and ready for
    /// `vecstream reindex rollback`; then it is dropped.
    pub rollback_window_secs: u64,
    /// Seconds a migration waits after telling embedders to stop writing a collection and
    /// before it drops it (must exceed `embedder.control_poll_ms` plus one batch).
    pub switch_grace_secs: u64,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:7233".into(),
            namespace: "default".into(),
            api_key: Secret::default(),
            tls: false,
            tls_ca_cert: String::new(),
            tls_client_cert: String::new(),
            tls_client_key: String::new(),
            cpu_task_queue: "vecstream-cpu".into(),
            gpu_task_queue: "vecstream-gpu".into(),
            cpu_concurrency: 32,
            gpu_concurrency: 1,
            max_engines: 2,
            review_timeout_secs: 86_400,
            reindex_range_offsets: 500,
            reindex_catch_up_secs: 10,
            rollback_window_secs: 86_400,
            switch_grace_secs: 30,
        }
    }
}

/// Weaviate REST endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeaviateConfig {
    /// Base URL of the REST API.
    pub url: String,
    /// API key (never logged); empty for anonymous access.
    pub api_key: Secret,
    /// PEM file of the CA that signs Weaviate's certificate (`https://` URLs), on top of
    /// the system's; empty: the system's only.
    pub tls_ca_cert: String,
    /// Alias that always points at the active collection.
    pub alias: String,
    /// Timeout of one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Weaviate's own multi-tenancy: chunk collections are created multi-tenant, one
    /// Weaviate tenant per vecstream tenant (made on its first write); reads, searches and
    /// deletes name the tenant. Off: one shared collection whose `tenant` property filter
    /// keeps tenants apart. Tenant names must then match `[A-Za-z0-9_-]{1,64}` (others are
    /// dead-lettered). Changing it needs a reindex: the collections differ.
    pub multi_tenancy: bool,
}

impl Default for WeaviateConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080".into(),
            api_key: Secret::default(),
            tls_ca_cert: String::new(),
            alias: "Chunks".into(),
            request_timeout_ms: 30_000,
            multi_tenancy: false,
        }
    }
}

/// Logs, traces and the `/metrics`, `/healthz`, `/readyz` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter, e.g. `info` or `vecstream=debug,rdkafka=warn`.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// Listen address of the metrics/health server of long-running commands.
    pub metrics_addr: String,
    /// OTLP/gRPC endpoint for traces, e.g. `http://127.0.0.1:4317`; empty disables export.
    pub otlp_endpoint: String,
    /// `service.name` of exported traces.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: "text".into(),
            metrics_addr: "127.0.0.1:9464".into(),
            otlp_endpoint: String::new(),
            service_name: "vecstream".into(),
        }
    }
}
