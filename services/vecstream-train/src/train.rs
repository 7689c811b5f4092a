//! Training of a linear retrieval adapter on a frozen encoder (the fine-tuning job's
//! compute): `W` (d × d, starting at the identity) maps embeddings `v` to `normalize(W·v)`;
//! the loss is InfoNCE with in-batch negatives (each query against every positive of its
//! batch, plus the batch's explicit hard negatives), temperature `τ`, and an L2 pull of `W`
//! toward the identity so a small dataset cannot drag the space far. Adam updates `W`.
//! Every GEMM runs on the engine's CPU kernels ([`vecstream_engine::cpu::gemm`]).
//!
//! Deterministic: the batch order of epoch `e` is a shuffle seeded by `(seed, e)`, so a
//! run resumed from a [`Checkpoint`] at step `s` continues exactly as the uninterrupted
//! run would have.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use vecstream_engine::adapter::Adapter;
use vecstream_engine::cpu::gemm::{View, matmul};
use vecstream_engine::tensor_io::{
    f32_le_bytes, invalid_data, read_if_exists, tensor_f32, write_atomic,
};

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: u64,
    /// Pairs per batch (each batch's positives are the other queries' negatives).
    pub batch_size: usize,
    pub learning_rate: f32,
    /// Softmax temperature of the similarities.
    pub temperature: f32,
    /// Weight of `‖W − I‖²/2`.
    pub identity_pull: f32,
    pub seed: u64,
}

impl TrainConfig {
    /// Why these settings cannot train (a zero temperature divides by zero, a learning rate
    /// that is not positive never moves), if they cannot.
    pub fn check(&self) -> Result<(), String> {
        let positive = |name: &str, v: f32| {
            (v.is_finite() && v > 0.0)
                .then_some(())
                .ok_or_else(|| format!("{name} must be a positive number, not {v}"))
        };
        positive("learning_rate", self.learning_rate)?;
        positive("temperature", self.temperature)?;
        if !(self.identity_pull.is_finite() && self.identity_pull >= 0.0) {
            return Err(format!(
                "identity_pull must be zero or more, not {}",
                self.identity_pull
            ));
        }
        if self.epochs == 0 || self.batch_size < 2 {
            return Err("epochs must be at least 1 and batch_size at least 2".into());
        }
        Ok(())
    }
}

impl Checkpoint {
    /// True when every weight and moment is a finite number: a checkpoint of a training
    /// that diverged is never resumed from.
    pub fn is_finite(&self) -> bool {
        [&self.w, &self.adam_m, &self.adam_v]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()))
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            learning_rate: 2e-4,
            temperature: 0.05,
            identity_pull: 0.1,
            seed: 7,
        }
    }
}

/// The training pairs as rows of an embedding table: `texts[i]` is a `dim`-vector; each
/// pair names its query, positive and hard negatives by row.
#[derive(Debug, Clone, PartialEq)]
pub struct PairTable {
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub query: Vec<u32>,
    pub positive: Vec<u32>,
    pub negatives: Vec<Vec<u32>>,
}

/// Where training is: enough to resume exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimiser steps done.
    pub step: u64,
    pub w: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
    /// Mean loss of each finished epoch.
    pub epoch_losses: Vec<f32>,
    /// Loss of the last step.
    pub last_loss: f32,
    /// Sum of the losses of the current epoch so far.
    pub epoch_loss_sum: f32,
}

fn row(t: &PairTable, i: u32) -> &[f32] {
    let i = i as usize;
    &t.vectors[i * t.dim..(i + 1) * t.dim]
}

/// splitmix64: a tiny, stable generator (the shuffle must not change with a crate version).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The order of `items` in epoch `epoch`.
fn shuffled(items: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut out = items.to_vec();
    let mut state = seed ^ epoch.wrapping_mul(0x2545_f491_4f6c_dd1d);
    for i in (1..out.len()).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// Normalises each row of `m [rows, d]` in place; returns the norms (before).
fn normalize_rows(m: &mut [f32], d: usize) -> Vec<f32> {
    m.chunks_exact_mut(d)
        .map(|r| {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            r.iter_mut().for_each(|x| *x /= n);
            n
        })
        .collect()
}

/// Gradient through `x̂ = u/‖u‖`: `du = (dx̂ − (dx̂·x̂) x̂) / ‖u‖`, row by row, in place on
/// `grad`.
fn through_normalize(grad: &mut [f32], unit: &[f32], norms: &[f32], d: usize) {
    for ((g, x), n) in grad
        .chunks_exact_mut(d)
        .zip(unit.chunks_exact(d))
        .zip(norms)
    {
        let dot: f32 = g.iter().zip(x).map(|(a, b)| a * b).sum();
        for (gi, xi) in g.iter_mut().zip(x) {
            *gi = (*gi - dot * xi) / n;
        }
    }
}

/// Loss and gradient of one batch, with `w` as it is.
pub fn loss_and_gradient(
    table: &PairTable,
    batch: &[usize],
    w: &[f32],
    cfg: &TrainConfig,
    threads: usize,
) -> (f32, Vec<f32>) {
    let d = table.dim;
    let b = batch.len();
    // Queries Q [b, d]; documents D [b + k, d]: the batch's positives, then its negatives.
    let mut q = Vec::with_capacity(b * d);
    let mut docs = Vec::with_capacity(b * d);
    for &p in batch {
        q.extend_from_slice(row(table, table.query[p]));
        docs.extend_from_slice(row(table, table.positive[p]));
    }
    for &p in batch {
        for &n in &table.negatives[p] {
            docs.extend_from_slice(row(table, n));
        }
    }
    let nd = docs.len() / d;
    let wt = View::transposed(w, d, d, d);
    let mut qh = vec![0f32; b * d];
    matmul(&mut qh, d, View::rows(&q, b, d, d), wt, 1.0, false, threads);
    let mut dh = vec![0f32; nd * d];
    matmul(
        &mut dh,
        d,
        View::rows(&docs, nd, d, d),
        wt,
        1.0,
        false,
        threads,
    );
    let q_norms = normalize_rows(&mut qh, d);
    let d_norms = normalize_rows(&mut dh, d);
    // Scores S [b, nd] = Q̂ · D̂ᵀ / τ; the positive of query i is column i.
    let inv_t = 1.0 / cfg.temperature;
    let mut s = vec![0f32; b * nd];
    matmul(
        &mut s,
        nd,
        View::rows(&qh, b, d, d),
        View::transposed(&dh, d, nd, d),
        inv_t,
        false,
        threads,
    );
    // G = (softmax(S) − onehot) / b, row by row; loss = mean −log softmax(S)ᵢᵢ.
    let mut loss = 0f32;
    for (i, r) in s.chunks_exact_mut(nd).enumerate() {
        let max = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = r.iter().map(|x| (x - max).exp()).sum();
        loss += -(r[i] - max - sum.ln());
        for (j, x) in r.iter_mut().enumerate() {
            let p = (*x - max).exp() / sum;
            *x = (p - if i == j { 1.0 } else { 0.0 }) / b as f32;
        }
    }
    loss /= b as f32;
    // dQ̂ = G · D̂ / τ; dD̂ = Gᵀ · Q̂ / τ.
    let mut dq = vec![0f32; b * d];
    matmul(
        &mut dq,
        d,
        View::rows(&s, b, nd, nd),
        View::rows(&dh, nd, d, d),
        inv_t,
        false,
        threads,
    );
    let mut dd = vec![0f32; nd * d];
    matmul(
        &mut dd,
        d,
        View::transposed(&s, nd, b, nd),
        View::rows(&qh, b, d, d),
        inv_t,
        false,
        threads,
    );
    through_normalize(&mut dq, &qh, &q_norms, d);
    through_normalize(&mut dd, &dh, &d_norms, d);
    // dW = dUᵀ · Q + dVᵀ · D (+ the pull toward I).
    let mut grad = vec![0f32; d * d];
    matmul(
        &mut grad,
        d,
        View::transposed(&dq, d, b, d),
        View::rows(&q, b, d, d),
        1.0,
        false,
        threads,
    );
    matmul(
        &mut grad,
        d,
        View::transposed(&dd, d, nd, d),
        View::rows(&docs, nd, d, d),
        1.0,
        true,
        threads,
    );
    let mut pull = 0f32;
    for i in 0..d {
        for j in 0..d {
            let delta = w[i * d + j] - if i == j { 1.0 } else { 0.0 };
            grad[i * d + j] += cfg.identity_pull * delta;
            pull += delta * delta;
        }
    }
    (loss + 0.5 * cfg.identity_pull * pull, grad)
}

/// A training run over `table`'s pairs `train`.
#[derive(Debug)]
pub struct Trainer<'a> {
    table: &'a PairTable,
    train: Vec<usize>,
    cfg: TrainConfig,
    threads: usize,
    state: Checkpoint,
    /// The batch order of one epoch, kept while the epoch runs.
    order: Option<(u64, Vec<usize>)>,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const ADAM_EPS: f32 = 1e-8;

impl<'a> Trainer<'a> {
    /// From the identity, or from `resume`.
    pub fn new(
        table: &'a PairTable,
        train: Vec<usize>,
        cfg: TrainConfig,
        threads: usize,
        resume: Option<Checkpoint>,
    ) -> Self {
        let d = table.dim;
        let state = resume.unwrap_or_else(|| Checkpoint {
            step: 0,
            w: Adapter::identity(d).weight().to_vec(),
            adam_m: vec![0.0; d * d],
            adam_v: vec![0.0; d * d],
            epoch_losses: Vec::new(),
            last_loss: f32::NAN,
            epoch_loss_sum: 0.0,
        });
        Self {
            table,
            train,
            cfg,
            threads: threads.max(1),
            state,
            order: None,
        }
    }

    pub fn steps_per_epoch(&self) -> u64 {
        self.train.len().div_ceil(self.cfg.batch_size.max(1)) as u64
    }

    pub fn total_steps(&self) -> u64 {
        self.steps_per_epoch() * self.cfg.epochs
    }

    pub fn state(&self) -> &Checkpoint {
        &self.state
    }

    pub fn done(&self) -> bool {
        self.state.step >= self.total_steps()
    }

    /// Runs one optimiser step; returns its loss.
    pub fn step(&mut self) -> f32 {
        let per_epoch = self.steps_per_epoch().max(1);
        let epoch = self.state.step / per_epoch;
        let within = (self.state.step % per_epoch) as usize;
        if within == 0 {
            self.state.epoch_loss_sum = 0.0;
        }
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, shuffled(&self.train, self.cfg.seed, epoch)));
        }
        let order = &self.order.as_ref().expect("set above").1;
        let bs = self.cfg.batch_size.max(1);
        let batch = &order[within * bs..((within + 1) * bs).min(order.len())];
        let (loss, grad) =
            loss_and_gradient(self.table, batch, &self.state.w, &self.cfg, self.threads);
        let t = (self.state.step + 1) as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        let s = &mut self.state;
        for (((w, m), v), g) in
            s.w.iter_mut()
                .zip(s.adam_m.iter_mut())
                .zip(s.adam_v.iter_mut())
                .zip(&grad)
        {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *w -= self.cfg.learning_rate * (*m / c1) / ((*v / c2).sqrt() + ADAM_EPS);
        }
        s.step += 1;
        s.last_loss = loss;
        s.epoch_loss_sum += loss;
        if s.step.is_multiple_of(per_epoch) {
            s.epoch_losses.push(s.epoch_loss_sum / per_epoch as f32);
        }
        loss
    }

    /// The adapter as it is now.
    pub fn adapter(&self) -> Adapter {
        Adapter::new(self.table.dim, self.state.w.clone()).expect("finite weights")
    }
}

impl Checkpoint {
    /// Writes the checkpoint ([`write_atomic`]: a crash leaves the previous one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let d = (self.w.len() as f64).sqrt() as usize;
        let (w, m, v) = (
            f32_le_bytes(&self.w),
            f32_le_bytes(&self.adam_m),
            f32_le_bytes(&self.adam_v),
        );
        let losses = f32_le_bytes(&self.epoch_losses);
        fn view(b: &[u8], shape: Vec<usize>) -> safetensors::tensor::TensorView<'_> {
            safetensors::tensor::TensorView::new(Dtype::F32, shape, b).expect("shape")
        }
        let mut meta = std::collections::HashMap::new();
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("last_loss".to_string(), self.last_loss.to_string());
        meta.insert(
            "epoch_loss_sum".to_string(),
            self.epoch_loss_sum.to_string(),
        );
        let data = safetensors::serialize(
            [
                ("w", view(&w, vec![d, d])),
                ("adam_m", view(&m, vec![d, d])),
                ("adam_v", view(&v, vec![d, d])),
                ("epoch_losses", view(&losses, vec![self.epoch_losses.len()])),
            ],
            Some(meta),
        )
        .map_err(std::io::Error::other)?;
        write_atomic(path, &data)
    }

    /// Reads a checkpoint; `None` when there is none.
    pub fn load(path: &Path) -> std::io::Result<Option<Self>> {
        let Some(bytes) = read_if_exists(path)? else {
            return Ok(None);
        };
        let bad = |m: String| invalid_data(m);
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let floats = |name: &str| -> std::io::Result<Vec<f32>> {
            let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            tensor_f32(&t).ok_or_else(|| bad(format!("{name}: dtype {:?}", t.dtype())))
        };
        let field = |k: &str| meta.get(k).cloned().ok_or_else(|| bad(format!("no {k}")));
        Ok(Some(Self {
            step: field("step")?
                .parse()
                .map_err(|e| bad(format!("step: {e}")))?,
            last_loss: field("last_loss")?.parse().unwrap_or(f32::NAN),
            epoch_loss_sum: field("epoch_loss_sum")?.parse().unwrap_or(0.0),
            w: floats("w")?,
            adam_m: floats("adam_m")?,
            adam_v: floats("adam_v")?,
            epoch_losses: floats("epoch_losses")?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_train_are_refused_and_diverged_checkpoints_are_not_resumed() {
        assert!(TrainConfig::default().check().is_ok());
        for bad in [
            TrainConfig {
                temperature: 0.0,
                ..Default::default()
            },
            TrainConfig {
                learning_rate: f32::NAN,
                ..Default::default()
            },
            TrainConfig {
                identity_pull: -1.0,
                ..Default::default()
            },
            TrainConfig {
                epochs: 0,
                ..Default::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let mut c = Checkpoint {
            step: 3,
            w: vec![1.0, 0.0, 0.0, 1.0],
            adam_m: vec![0.0; 4],
            adam_v: vec![0.0; 4],
            epoch_losses: Vec::new(),
            last_loss: 0.5,
            epoch_loss_sum: 0.5,
        };
        assert!(c.is_finite());
        c.w[2] = f32::NAN;
        assert!(!c.is_finite());
    }

    /// A small table where queries are noisy, rotated copies of their positives: an adapter
    /// can learn the rotation back.
    fn toy(pairs: usize, d: usize, seed: u64) -> PairTable {
        let mut state = seed;
        let mut rnd = || (splitmix(&mut state) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        let mut vectors = Vec::new();
        for _ in 0..pairs {
            let doc: Vec<f32> = (0..d).map(|_| rnd()).collect();
            // The query: the document with its first two coordinates swapped, plus noise.
            let mut query = doc.clone();
            query.swap(0, 1);
            query.iter_mut().for_each(|x| *x += 0.3 * rnd());
            vectors.extend(query);
            vectors.extend(doc);
        }
        let n = pairs as u32;
        PairTable {
            dim: d,
            vectors,
            query: (0..n).map(|i| 2 * i).collect(),
            positive: (0..n).map(|i| 2 * i + 1).collect(),
            negatives: (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        vec![2 * ((i + 1) % n) + 1]
                    } else {
                        vec![]
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let table = toy(5, 4, 1);
        let cfg = TrainConfig {
            temperature: 0.5,
            ..TrainConfig::default()
        };
        let mut w = Adapter::identity(4).weight().to_vec();
        w[1] = 0.2;
        w[6] = -0.1;
        let batch = [0, 1, 2, 3];
        let (_, grad) = loss_and_gradient(&table, &batch, &w, &cfg, 1);
        for k in [0, 1, 5, 6, 11, 15] {
            let h = 1e-3;
            let mut plus = w.clone();
            plus[k] += h;
            let mut minus = w.clone();
            minus[k] -= h;
            let numeric = (loss_and_gradient(&table, &batch, &plus, &cfg, 1).0
                - loss_and_gradient(&table, &batch, &minus, &cfg, 1).0)
                / (2.0 * h);
            assert!(
                (numeric - grad[k]).abs() < 2e-2 * numeric.abs().max(0.05),
                "w[{k}]: analytic {} numeric {numeric}",
                grad[k]
            );
        }
    }

    #[test]
    fn training_lowers_the_loss_and_a_resumed_run_matches_an_uninterrupted_one() {
        let table = toy(64, 8, 3);
        let cfg = TrainConfig {
            epochs: 6,
            batch_size: 16,
            learning_rate: 1e-2,
            temperature: 0.1,
            identity_pull: 0.0,
            seed: 11,
        };
        let train: Vec<usize> = (0..64).collect();
        let mut full = Trainer::new(&table, train.clone(), cfg.clone(), 1, None);
        assert_eq!(full.total_steps(), 24);
        let mut saved = None;
        while !full.done() {
            full.step();
            if full.state().step == 10 {
                saved = Some(full.state().clone());
            }
        }
        let losses = &full.state().epoch_losses;
        assert_eq!(losses.len(), 6);
        assert!(losses[5] < losses[0] * 0.8, "loss did not fall: {losses:?}");

        // Through a checkpoint file, as a retried activity would.
        let path =
            std::env::temp_dir().join(format!("vecstream-ckpt-{}.safetensors", std::process::id()));
        saved.unwrap().save(&path).unwrap();
        let resumed_from = Checkpoint::load(&path).unwrap().expect("checkpoint");
        assert_eq!(resumed_from.step, 10);
        let mut resumed = Trainer::new(&table, train, cfg, 1, Some(resumed_from));
        while !resumed.done() {
            resumed.step();
        }
        assert_eq!(
            resumed.state().w,
            full.state().w,
            "same weights as uninterrupted"
        );
        assert_eq!(resumed.state().step, 24);
        std::fs::remove_file(&path).unwrap();
        assert!(Checkpoint::load(&path).unwrap().is_none());
    }
}
