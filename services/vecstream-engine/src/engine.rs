//! The engine: one thread owning the backend, fed by a bounded channel. Requests that arrive
//! within `max_wait` of each other are tokenised together, sorted by token count and cut
//! into batches by a token budget; results go back to each caller in its input order.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::EngineError;
use crate::backend::{Backend, BackendKind, Precision, TokenBatch};
use crate::cpu::CpuBackend;
use crate::model::ModelSpec;
use crate::tokenize::{Encoded, TextTokenizer};
use crate::weights::BertWeights;

/// Which device to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// CUDA when a driver and GPU are present, else the CPU (logged once).
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            _ => Err(format!("unknown backend {s:?} (auto, cpu, cuda)")),
        }
    }
}

/// How to start an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub model_dir: PathBuf,
    pub backend: BackendChoice,
    pub precision: Precision,
    /// Threads of the forward pass.
    pub threads: usize,
    /// Most tokens in one forward batch.
    pub batch_tokens: usize,
    /// Longest a request waits for others to share its batch.
    pub max_wait: Duration,
    /// Token limit per text; `None` keeps the model's (sentence-transformers' max_seq_length).
    pub max_seq_length: Option<usize>,
    /// Requests queued before callers block (backpressure).
    pub queue_depth: usize,
}

impl EngineConfig {
    /// Defaults for `model_dir`: all cores, 8192-token batches, 5 ms wait.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            backend: BackendChoice::Auto,
            precision: Precision::Fp32,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            batch_tokens: 8192,
            max_wait: Duration::from_millis(5),
            max_seq_length: None,
            queue_depth: 64,
        }
    }
}

/// What the engine runs.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub model_id: String,
    pub backend: BackendKind,
    pub precision: Precision,
    pub dim: usize,
    pub max_seq_length: usize,
    pub threads: usize,
}

/// One text's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    pub vector: Vec<f32>,
    /// Tokens embedded (after truncation, special tokens included).
    pub tokens: usize,
    pub truncated: bool,
}

enum Input {
    Texts(Vec<String>),
    Tokens(Vec<Vec<u32>>),
}

struct Request {
    input: Input,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Embedding>, EngineError>>,
}

/// Handle to a running engine; dropping it stops the thread after the queued work.
#[derive(Debug)]
pub struct Engine {
    tx: Option<SyncSender<Request>>,
    info: EngineInfo,
    tokenizer: TextTokenizer,
    thread: Option<JoinHandle<()>>,
}

/// Picks the backend once. No GPU, no driver or a build without CUDA means the CPU, said
/// once; `--backend cuda` without one is a clear error, never a panic.
fn select_backend(
    cfg: &EngineConfig,
    spec: ModelSpec,
    bytes: &[u8],
) -> Result<Box<dyn Backend>, EngineError> {
    let cpu = |spec: ModelSpec| -> Result<Box<dyn Backend>, EngineError> {
        if cfg.precision == Precision::Fp16 {
            return Err(EngineError::Unsupported(
                "precision fp16 runs on the CUDA backend only; use fp32 or int8 on the CPU".into(),
            ));
        }
        let weights = BertWeights::from_safetensors(bytes, &spec.config, cfg.precision)?;
        Ok(Box::new(CpuBackend::new(
            spec,
            weights,
            cfg.threads,
            cfg.precision,
        )?))
    };
    if cfg.backend == BackendChoice::Cpu {
        return cpu(spec);
    }
    let why_not = match cuda_probe(&spec, bytes, cfg.precision)? {
        CudaProbe::Ready(b) => {
            tracing::info!("embedding on CUDA");
            return Ok(b);
        }
        CudaProbe::Absent(why) => why,
    };
    if cfg.backend == BackendChoice::Cuda {
        return Err(EngineError::BackendUnavailable {
            backend: "cuda".into(),
            reason: why_not,
        });
    }
    if cfg.precision == Precision::Fp16 {
        return Err(EngineError::Unsupported(format!(
            "precision fp16 runs on the CUDA backend only ({why_not}); use fp32 or int8 on the CPU"
        )));
    }
    tracing::info!(
        "{why_not}: embedding on the CPU with {} thread(s)",
        cfg.threads
    );
    cpu(spec)
}

#[cfg_attr(
    not(feature = "cuda"),
    allow(dead_code, reason = "only the `cuda` build finds a device")
)]
enum CudaProbe {
    Ready(Box<dyn Backend>),
    Absent(String),
}

#[cfg(feature = "cuda")]
fn cuda_probe(
    spec: &ModelSpec,
    bytes: &[u8],
    precision: Precision,
) -> Result<CudaProbe, EngineError> {
    Ok(match crate::cuda::probe(spec, bytes, precision)? {
        crate::cuda::Probe::Ready(b) => CudaProbe::Ready(b),
        crate::cuda::Probe::Absent(why) => CudaProbe::Absent(why),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_probe(_: &ModelSpec, _: &[u8], _: Precision) -> Result<CudaProbe, EngineError> {
    Ok(CudaProbe::Absent(
        "no CUDA backend in this build (cargo feature `cuda`)".into(),
    ))
}

impl Engine {
    /// Loads the model and starts the engine thread.
    pub fn start(cfg: EngineConfig) -> Result<Self, EngineError> {
        let (spec, bytes) = ModelSpec::load(&cfg.model_dir, cfg.max_seq_length)?;
        if cfg.precision == Precision::Bf16 {
            // Said before the weights are read: the choice fails the same way on any model.
            return Err(EngineError::Unsupported(
                "precision bf16 has no CPU kernel in this build; use fp32 or int8".into(),
            ));
        }
        let tokenizer = TextTokenizer::load(&spec.dir, spec.max_seq_length)?;
        let model_id = spec.model_id.clone();
        let max_seq_length = spec.max_seq_length;
        let adapter = spec.adapter.clone();
        let normalize = spec.normalize;
        let backend = select_backend(&cfg, spec, &bytes)?;
        drop(bytes);
        let info = EngineInfo {
            model_id,
            backend: backend.kind(),
            precision: backend.precision(),
            dim: backend.dim(),
            max_seq_length,
            threads: cfg.threads,
        };
        let (tx, rx) = sync_channel(cfg.queue_depth.max(1));
        let worker = Worker {
            backend,
            tokenizer: tokenizer.clone(),
            batch_tokens: cfg.batch_tokens.max(max_seq_length),
            max_wait: cfg.max_wait,
            adapter,
            normalize,
            threads: cfg.threads,
        };
        let thread = std::thread::Builder::new()
            .name("vecstream-engine".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| EngineError::BackendUnavailable {
                backend: "engine thread".into(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            tx: Some(tx),
            info,
            tokenizer,
            thread: Some(thread),
        })
    }

    /// What the engine runs.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// The model's tokenizer (for chunking).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Embeds texts; waits while the engine's queue is full.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Embedding>, EngineError> {
        self.submit(Input::Texts(texts)).await
    }

    /// Embeds pre-tokenised sequences (`[CLS] … [SEP]`, within the length limit).
    pub async fn embed_tokens(
        &self,
        sequences: Vec<Vec<u32>>,
    ) -> Result<Vec<Embedding>, EngineError> {
        self.submit(Input::Tokens(sequences)).await
    }

    /// Blocking form of [`Engine::embed`], for callers outside an async runtime.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Vec<Embedding>, EngineError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.sender()?
            .send(Request {
                input: Input::Texts(texts),
                reply,
            })
            .map_err(|_| EngineError::Stopped)?;
        rx.blocking_recv().map_err(|_| EngineError::Stopped)?
    }

    async fn submit(&self, input: Input) -> Result<Vec<Embedding>, EngineError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let mut request = Request { input, reply };
        let tx = self.sender()?;
        // A full queue is backpressure: wait without blocking the async workers.
        loop {
            match tx.try_send(request) {
                Ok(()) => break,
                Err(TrySendError::Full(r)) => {
                    request = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(EngineError::Stopped),
            }
        }
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    fn sender(&self) -> Result<&SyncSender<Request>, EngineError> {
        self.tx.as_ref().ok_or(EngineError::Stopped)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    backend: Box<dyn Backend>,
    tokenizer: TextTokenizer,
    batch_tokens: usize,
    max_wait: Duration,
    /// Applied to the backend's vectors (fine-tuned model versions).
    adapter: Option<std::sync::Arc<crate::adapter::Adapter>>,
    normalize: bool,
    threads: usize,
}

/// Where an item of a gathered group goes back to: (request, position in it).
type Slot = (usize, usize);

impl Worker {
    fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let now = Instant::now();
            let deadline = now
                .checked_add(self.max_wait)
                .unwrap_or(now + Duration::from_secs(86_400));
            let mut pending_tokens = group[0].input_len() * 32;
            while pending_tokens < self.batch_tokens {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(r) => {
                        pending_tokens += r.input_len() * 32;
                        group.push(r);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.process(group);
        }
    }

    fn process(&mut self, group: Vec<Request>) {
        // Tokenise every request; a request that fails tokenisation fails alone.
        let mut items: Vec<(Slot, Encoded)> = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        // Ids past the vocabulary would index past the embedding table (a panic on the
        // CPU, a wild read on a GPU).
        let vocab = self.tokenizer.inner().get_vocab_size(true);
        for (ri, req) in group.into_iter().enumerate() {
            let encoded = match req.input {
                Input::Texts(texts) => {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    self.tokenizer.encode_batch(&refs)
                }
                Input::Tokens(seqs) => seqs
                    .into_iter()
                    .map(|ids| {
                        if ids.len() > self.tokenizer.max_len() || ids.is_empty() {
                            Err(EngineError::Unsupported(format!(
                                "a sequence of {} tokens (limit {})",
                                ids.len(),
                                self.tokenizer.max_len()
                            )))
                        } else if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                            Err(EngineError::Unsupported(format!(
                                "token id {bad} outside the vocabulary of {vocab}"
                            )))
                        } else {
                            Ok(Encoded {
                                ids,
                                truncated: false,
                            })
                        }
                    })
                    .collect(),
            };
            match encoded {
                Ok(list) => {
                    let n = list.len();
                    items.extend(list.into_iter().enumerate().map(|(i, e)| ((ri, i), e)));
                    replies.push(Some((req.reply, vec![None; n])));
                }
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                    replies.push(None);
                }
            }
        }

        // Longest first, so each batch holds similar lengths and threads stay balanced.
        items.sort_by_key(|(_, e)| std::cmp::Reverse(e.ids.len()));
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < items.len()
                && (end == start || tokens + items[end].1.ids.len() <= self.batch_tokens)
            {
                tokens += items[end].1.ids.len();
                end += 1;
            }
            let mut batch = TokenBatch::new();
            for (_, e) in &items[start..end] {
                batch.push(&e.ids);
            }
            match self.backend.embed(&batch) {
                Ok(mut vectors) => {
                    if let Some(adapter) = &self.adapter {
                        adapter.apply(&mut vectors, self.normalize, self.threads);
                    }
                    let dim = self.backend.dim();
                    for ((slot, e), v) in items[start..end].iter().zip(vectors.chunks_exact(dim)) {
                        if let Some((_, out)) = &mut replies[slot.0] {
                            out[slot.1] = Some(Embedding {
                                vector: v.to_vec(),
                                tokens: e.ids.len(),
                                truncated: e.truncated,
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedding batch failed");
                    for (slot, _) in &items[start..end] {
                        if let Some((reply, _)) = replies[slot.0].take() {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            start = end;
        }
        for (reply, out) in replies.into_iter().flatten() {
            let done: Option<Vec<Embedding>> = out.into_iter().collect();
            let _ = reply.send(done.ok_or(EngineError::Stopped));
        }
    }
}

impl Request {
    fn input_len(&self) -> usize {
        match &self.input {
            Input::Texts(t) => t.len(),
            Input::Tokens(t) => t.len(),
        }
    }
}
