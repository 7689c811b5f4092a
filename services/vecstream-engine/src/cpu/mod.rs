//! The CPU backend: the BERT encoder forward pass on our kernels.
//!
//! Tokens of a batch are packed without padding: the linear layers run on one
//! `[tokens, hidden]` matrix and attention runs per (sequence, head) over that sequence's
//! own length, so no work is spent on pad tokens and no mask is needed. All buffers live in
//! a workspace that only grows, so the hot loop does not allocate.

pub mod gemm;
pub mod ops;
pub mod packed;
pub mod quant;

use std::sync::Mutex;

use rayon::prelude::*;

use self::gemm::{View, matmul};
use crate::EngineError;
use crate::backend::{Backend, BackendKind, Precision, TokenBatch};
use crate::model::{ModelSpec, Pooling};
use crate::weights::BertWeights;

/// Grow-only buffers of one forward pass.
#[derive(Debug, Default)]
struct Workspace {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    ffn: Vec<f32>,
    positions: Vec<u32>,
    /// One attention-score scratch per pool thread (`max_len²`).
    scores: Vec<Mutex<Vec<f32>>>,
}

fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

/// The fp32 CPU backend.
#[derive(Debug)]
pub struct CpuBackend {
    spec: ModelSpec,
    weights: BertWeights,
    pool: rayon::ThreadPool,
    threads: usize,
    precision: Precision,
    ws: Workspace,
}

impl CpuBackend {
    /// A backend for `spec` running on `threads` threads of its own.
    /// `precision` is the one `weights` were loaded with (fp32 or int8 linear layers).
    pub fn new(
        spec: ModelSpec,
        weights: BertWeights,
        threads: usize,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vecstream-cpu-{i}"))
            .build()
            .map_err(|e| EngineError::BackendUnavailable {
                backend: "cpu".into(),
                reason: e.to_string(),
            })?;
        let ws = Workspace {
            scores: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
            ..Default::default()
        };
        Ok(Self {
            spec,
            weights,
            pool,
            threads,
            precision,
            ws,
        })
    }

    fn forward(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, EngineError> {
        let cfg = &self.spec.config;
        let (h, inter, heads) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_attention_heads,
        );
        let d = h / heads;
        let eps = cfg.layer_norm_eps;
        let t = batch.ids.len();
        let seqs = batch.sequences();
        let max_len = seqs.iter().map(|r| r.len()).max().unwrap_or(0);
        if max_len > self.spec.max_seq_length {
            return Err(EngineError::Unsupported(format!(
                "sequence of {max_len} tokens over the limit {}",
                self.spec.max_seq_length
            )));
        }
        if let Some(bad) = batch
            .ids
            .iter()
            .find(|&&id| id as usize >= self.weights.vocab_size)
        {
            return Err(EngineError::Unsupported(format!(
                "token id {bad} outside the vocabulary"
            )));
        }

        let ws = &mut self.ws;
        grow(&mut ws.x, t * h);
        grow(&mut ws.qkv, t * 3 * h);
        grow(&mut ws.ctx, t * h);
        grow(&mut ws.tmp, t * h);
        grow(&mut ws.ffn, t * inter);
        ws.positions.clear();
        for r in &seqs {
            ws.positions.extend(0..r.len() as u32);
        }
        for s in &ws.scores {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            grow(&mut s, max_len * max_len);
        }
        let w = &self.weights;
        let threads = self.threads;
        let rows_per_task = t.div_ceil(threads * 4).max(1);

        self.pool.install(|| {
            let (x, qkv, ctx, tmp, ffn) = (
                &mut ws.x[..t * h],
                &mut ws.qkv[..t * 3 * h],
                &mut ws.ctx[..t * h],
                &mut ws.tmp[..t * h],
                &mut ws.ffn[..t * inter],
            );
            // Embeddings: word + position + token type 0, then LayerNorm.
            x.par_chunks_mut(h)
                .zip(batch.ids.par_iter().zip(ws.positions.par_iter()))
                .for_each(|(row, (&id, &pos))| {
                    let word = &w.word[id as usize * h..][..h];
                    let position = &w.position[pos as usize * h..][..h];
                    for (((o, a), b), c) in
                        row.iter_mut().zip(word).zip(position).zip(&w.token_type0)
                    {
                        *o = a + b + c;
                    }
                });
            x.par_chunks_mut(rows_per_task * h)
                .for_each(|c| ops::layer_norm(c, &w.emb_ln_g, &w.emb_ln_b, eps));

            let scale = 1.0 / (d as f32).sqrt();
            for layer in &w.layers {
                layer.qkv_w.matmul(x, t, h, qkv, 3 * h, threads);
                qkv.par_chunks_mut(rows_per_task * 3 * h)
                    .for_each(|c| ops::add_bias(c, &layer.qkv_b));

                attention(qkv, ctx, &seqs, heads, d, scale, &ws.scores);

                layer.attn_out_w.matmul(ctx, t, h, tmp, h, threads);
                x.par_chunks_mut(rows_per_task * h)
                    .zip(tmp.par_chunks(rows_per_task * h))
                    .for_each(|(xc, yc)| {
                        ops::bias_residual_layer_norm(
                            xc,
                            yc,
                            &layer.attn_out_b,
                            &layer.attn_ln_g,
                            &layer.attn_ln_b,
                            eps,
                        )
                    });

                layer.ffn_in_w.matmul(x, t, h, ffn, inter, threads);
                ffn.par_chunks_mut(rows_per_task * inter)
                    .for_each(|c| ops::bias_gelu(c, &layer.ffn_in_b));
                layer.ffn_out_w.matmul(ffn, t, inter, tmp, h, threads);
                x.par_chunks_mut(rows_per_task * h)
                    .zip(tmp.par_chunks(rows_per_task * h))
                    .for_each(|(xc, yc)| {
                        ops::bias_residual_layer_norm(
                            xc,
                            yc,
                            &layer.ffn_out_b,
                            &layer.ffn_ln_g,
                            &layer.ffn_ln_b,
                            eps,
                        )
                    });
            }
        });

        let mut out = vec![0.0; seqs.len() * h];
        for (o, r) in out.chunks_exact_mut(h).zip(&seqs) {
            let rows = &ws.x[r.start * h..r.end * h];
            match self.spec.pooling {
                Pooling::Mean => ops::mean_rows(rows, o),
                Pooling::Cls => o.copy_from_slice(&rows[..h]),
            }
            if self.spec.normalize {
                ops::l2_normalize(o);
            }
        }
        Ok(out)
    }
}

/// Multi-head self-attention of every sequence, in parallel over (sequence, head): each task
/// reads its Q, K, V columns of `qkv` and writes its own `d`-wide column band of `ctx`.
fn attention(
    qkv: &[f32],
    ctx: &mut [f32],
    seqs: &[std::ops::Range<usize>],
    heads: usize,
    d: usize,
    scale: f32,
    scratch: &[Mutex<Vec<f32>>],
) {
    let h = heads * d;
    // Split ctx into per-sequence row blocks, then hand each (sequence, head) its block.
    let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(seqs.len());
    let mut rest = ctx;
    for r in seqs {
        let (block, tail) = rest.split_at_mut(r.len() * h);
        blocks.push((r.start, block));
        rest = tail;
    }
    blocks.par_iter_mut().for_each(|(start, block)| {
        let len = block.len() / h;
        let q_rows = &qkv[*start * 3 * h..(*start + len) * 3 * h];
        let idx = rayon::current_thread_index().unwrap_or(0) % scratch.len();
        let mut scores = scratch[idx].lock().unwrap_or_else(|p| p.into_inner());
        let scores = &mut scores[..len * len];
        // Heads of one sequence run on this thread: sequences give enough parallelism, and
        // the context rows of the sequence stay in this core's cache.
        for head in 0..heads {
            let q = View::rows(&q_rows[head * d..], len, d, 3 * h);
            let k_t = View::transposed(&q_rows[h + head * d..], d, len, 3 * h);
            matmul(scores, len, q, k_t, 1.0, false, 1);
            ops::scaled_softmax(scores, len, scale);
            let v = View::rows(&q_rows[2 * h + head * d..], len, d, 3 * h);
            let out = &mut block[head * d..];
            matmul(out, h, View::rows(scores, len, len, len), v, 1.0, false, 1);
        }
    });
}

impl Backend for CpuBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn dim(&self) -> usize {
        self.spec.config.hidden_size
    }

    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, EngineError> {
        self.forward(batch)
    }
}
