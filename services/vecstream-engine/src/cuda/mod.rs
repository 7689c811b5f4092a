//! The CUDA backend (cargo feature `cuda`): cuBLAS for every GEMM, the kernels of
//! `kernels/` (compiled once at start with NVRTC) for everything else, weights resident on
//! the device. The same program runs on the CPU through OpenCL in CI (`vecstream-kernels`'
//! tests, including a whole forward pass in both precisions); this module only adds the
//! device plumbing:
//!
//! - precision `fp32`, or `fp16`: matrices and activations stored as half, cuBLAS GemmEx
//!   with fp32 compute, the kernels' `_f16` variants (fp32 arithmetic inside); LayerNorm
//!   parameters and biases stay fp32.
//! - a stream of its own per engine worker (not the legacy default stream, which would
//!   serialise two engines in one process), with the cuBLAS handle bound to it.
//! - a [`Workspace`] of device buffers reused across batches (grown to the largest batch
//!   seen, never freed between batches) and page-locked host buffers for the token upload
//!   and the vector download.
//!
//! cudarc loads libcuda, libnvrtc and libcublas at run time; [`probe`] checks each before
//! touching them (cudarc panics on a missing library), so a machine without them gets the
//! CPU and one log line, never a panic.
//!
//! Here: the probe, the types and the forward pass; `load` puts the model on the device,
//! `workspace` grows the [`Workspace`]'s buffers.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
    LaunchConfig, PinnedHostSlice, PushKernelArg, ValidAsZeroBits,
};
use vecstream_kernels::Activation;
use vecstream_kernels::half::f16;

use crate::EngineError;
use crate::backend::{Backend, BackendKind, Precision, TokenBatch};
use crate::model::ModelSpec;

mod load;
mod workspace;

/// What the probe found.
pub(crate) enum Probe {
    Ready(Box<dyn Backend>),
    /// No usable device, and why (said once in the log, or as the error of `--backend cuda`).
    Absent(String),
}

fn weight_err(name: &str, message: &str) -> EngineError {
    EngineError::Model {
        path: format!("model.safetensors tensor {name}"),
        message: message.to_owned(),
    }
}

fn absent(why: impl Into<String>) -> Result<Probe, EngineError> {
    Ok(Probe::Absent(why.into()))
}

fn cuda_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::device("cuda", what, e)
}

/// Checks for the libraries and a device, then builds the backend on device 0.
pub(crate) fn probe(
    spec: &ModelSpec,
    weights: &[u8],
    precision: Precision,
) -> Result<Probe, EngineError> {
    // SAFETY: these only try to load the shared libraries.
    let (driver, nvrtc, cublas) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    };
    if !driver {
        return absent("no CUDA driver (libcuda) on this machine");
    }
    if !nvrtc || !cublas {
        return absent(
            "the CUDA driver is present but libnvrtc or libcublas is not on the loader path \
             (LD_LIBRARY_PATH)",
        );
    }
    if !matches!(precision, Precision::Fp32 | Precision::Fp16) {
        return absent(format!(
            "precision {} has no CUDA path (fp32 or fp16 there)",
            precision.as_str()
        ));
    }
    let ctx = match CudaContext::new(0) {
        Ok(c) => c,
        Err(e) => return absent(format!("no usable CUDA device: {e}")),
    };
    let backend: Box<dyn Backend> = if precision == Precision::Fp16 {
        Box::new(CudaBackend::<f16>::new(ctx, spec, weights)?)
    } else {
        Box::new(CudaBackend::<f32>::new(ctx, spec, weights)?)
    };
    Ok(Probe::Ready(backend))
}

/// An activation storage type the device path runs: `f32`, or `f16` (cuBLAS GemmEx with
/// fp32 compute, the kernels' `_f16` variants).
pub(crate) trait DeviceActivation: Activation + DeviceRepr + ValidAsZeroBits {
    /// What [`Backend::precision`] reports.
    const PRECISION: Precision;
}

impl DeviceActivation for f32 {
    const PRECISION: Precision = Precision::Fp32;
}

impl DeviceActivation for f16 {
    const PRECISION: Precision = Precision::Fp16;
}

/// One encoder layer: matrices in the activation type, biases and LayerNorm in fp32.
struct Layer<T> {
    q_w: CudaSlice<T>,
    q_b: CudaSlice<f32>,
    k_w: CudaSlice<T>,
    k_b: CudaSlice<f32>,
    v_w: CudaSlice<T>,
    v_b: CudaSlice<f32>,
    o_w: CudaSlice<T>,
    o_b: CudaSlice<f32>,
    ln1_g: CudaSlice<f32>,
    ln1_b: CudaSlice<f32>,
    i_w: CudaSlice<T>,
    i_b: CudaSlice<f32>,
    d_w: CudaSlice<T>,
    d_b: CudaSlice<f32>,
    ln2_g: CudaSlice<f32>,
    ln2_b: CudaSlice<f32>,
}

/// The kernels of one precision (`name` or `name_f16`).
struct Kernels {
    embed_layernorm: CudaFunction,
    add_bias: CudaFunction,
    bias_gelu: CudaFunction,
    masked_softmax: CudaFunction,
    residual_layernorm: CudaFunction,
    pool_normalize: CudaFunction,
}

/// The model on the device and what runs it: read-only during a forward pass.
struct DeviceModel<T> {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    word: CudaSlice<T>,
    position: CudaSlice<T>,
    token_type: CudaSlice<T>,
    emb_g: CudaSlice<f32>,
    emb_b: CudaSlice<f32>,
    layers: Vec<Layer<T>>,
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    cls: bool,
    normalize: bool,
}

/// The buffers of a forward pass, reused across batches: each grows to the largest batch
/// seen and is never freed in between, so a steady stream of batches allocates nothing.
/// The host side is page-locked, so uploads and downloads are DMA transfers.
struct Workspace<T> {
    /// Token ids, positions and token types (`rows` each), then sequence lengths (`n`).
    tokens: CudaSlice<i32>,
    host_tokens: PinnedHostSlice<i32>,
    /// Hidden states `[rows, hidden]`.
    x: CudaSlice<T>,
    q: CudaSlice<T>,
    k: CudaSlice<T>,
    v: CudaSlice<T>,
    context: CudaSlice<T>,
    /// A projection's output before its residual LayerNorm.
    projected: CudaSlice<T>,
    /// `[rows, intermediate]`.
    up: CudaSlice<T>,
    /// `[n, heads, seq, seq]`.
    scores: CudaSlice<T>,
    /// Pooled vectors `[n, hidden]`, always fp32.
    out: CudaSlice<f32>,
    host_out: PinnedHostSlice<f32>,
}

/// See the module docs.
pub(crate) struct CudaBackend<T> {
    model: DeviceModel<T>,
    workspace: Workspace<T>,
    device: String,
}

impl<T> std::fmt::Debug for CudaBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device)
            .finish()
    }
}

const BLOCK: u32 = vecstream_kernels::BLOCK as u32;

fn rows_launch(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn elems_launch(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK as usize) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn launched(
    e: Result<impl Sized, cudarc::driver::DriverError>,
    name: &str,
) -> Result<(), EngineError> {
    e.map(|_| ())
        .map_err(|e| cuda_err(&format!("kernel {name}"), e))
}

impl<T: DeviceActivation> DeviceModel<T>
where
    CudaBlas: Gemm<T>,
{
    fn gemm_config(
        transa: cublasOperation_t,
        (m, n, k): (usize, usize, usize),
        (lda, ldb, ldc): (usize, usize, usize),
    ) -> GemmConfig<T> {
        GemmConfig {
            transa,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: m as i32,
            n: n as i32,
            k: k as i32,
            alpha: T::from_f32(1.0),
            lda: lda as i32,
            ldb: ldb as i32,
            beta: T::from_f32(0.0),
            ldc: ldc as i32,
        }
    }

    /// Row-major `c[m, n] = a[m, k] · w[n, k]ᵀ` (cuBLAS is column-major: `cᵀ = w · aᵀ`).
    fn linear(
        &self,
        a: &CudaSlice<T>,
        w: &CudaSlice<T>,
        c: &mut CudaSlice<T>,
        (m, k, n): (usize, usize, usize),
    ) -> Result<(), EngineError> {
        let cfg = Self::gemm_config(cublasOperation_t::CUBLAS_OP_T, (n, m, k), (k, k, n));
        // SAFETY: `a` holds at least m·k, `w` n·k and `c` m·n elements (workspace sizes).
        unsafe { self.blas.gemm(cfg, w, a, c) }.map_err(|e| cuda_err("cuBLAS gemm", e))
    }

    /// One GEMM per head over a sequence, as a strided batch.
    fn head_gemm(
        &self,
        a: &impl DevicePtr<T>,
        b: &impl DevicePtr<T>,
        c: &mut impl DevicePtrMut<T>,
        gemm: GemmConfig<T>,
        (stride_a, stride_b, stride_c): (usize, usize, usize),
    ) -> Result<(), EngineError> {
        let cfg = StridedBatchedConfig {
            gemm,
            batch_size: self.heads as i32,
            stride_a: stride_a as i64,
            stride_b: stride_b as i64,
            stride_c: stride_c as i64,
        };
        // SAFETY: strides and leading dimensions stay inside the buffers (see callers).
        unsafe { self.blas.gemm_strided_batched(cfg, a, b, c) }
            .map_err(|e| cuda_err("cuBLAS batched gemm", e))
    }

    /// `x += bias` on `n` elements of rows `cols` wide.
    fn add_bias(
        &self,
        x: &mut CudaSlice<T>,
        bias: &CudaSlice<f32>,
        n: usize,
    ) -> Result<(), EngineError> {
        let (ni, ci) = (n as i32, bias.len() as i32);
        let mut b = self.stream.launch_builder(&self.kernels.add_bias);
        b.arg(x).arg(bias).arg(&ni).arg(&ci);
        // SAFETY: `n` elements of `x`, bias of the row width.
        launched(unsafe { b.launch(elems_launch(n)) }, "add_bias")
    }

    /// `x = LN(x + y + bias) * gamma + beta` per row; `params` = bias, gamma, beta.
    fn residual_layernorm(
        &self,
        x: &mut CudaSlice<T>,
        y: &CudaSlice<T>,
        params: [&CudaSlice<f32>; 3],
        rows: usize,
    ) -> Result<(), EngineError> {
        let hi = self.hidden as i32;
        let mut b = self.stream.launch_builder(&self.kernels.residual_layernorm);
        b.arg(x)
            .arg(y)
            .arg(params[0])
            .arg(params[1])
            .arg(params[2])
            .arg(&hi)
            .arg(&self.eps);
        // SAFETY: arguments follow the kernel's signature; one block per row.
        launched(unsafe { b.launch(rows_launch(rows)) }, "residual_layernorm")
    }

    /// The pooled vectors `[sequences, hidden]` of one batch.
    fn forward(&self, ws: &mut Workspace<T>, batch: &TokenBatch) -> Result<Vec<f32>, EngineError> {
        let (h, heads, inter) = (self.hidden, self.heads, self.inter);
        let hd = h / heads;
        let seqs = batch.sequences();
        let n = seqs.len();
        let seq = seqs.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
        let rows = n * seq;
        ws.fit(self, n, seq)?;

        // Tokens staged in page-locked memory, uploaded in one copy: ids | positions |
        // types | lengths.
        let staged = 3 * rows + n;
        {
            let host = ws
                .host_tokens
                .as_mut_slice()
                .map_err(|e| cuda_err("staging tokens", e))?;
            let (ids, rest) = host.split_at_mut(rows);
            let (positions, rest) = rest.split_at_mut(rows);
            let (types, rest) = rest.split_at_mut(rows);
            ids.fill(0);
            types.fill(0);
            for (i, p) in positions.iter_mut().enumerate() {
                *p = (i % seq) as i32;
            }
            for (b, r) in seqs.iter().enumerate() {
                for (t, id) in batch.ids[r.clone()].iter().enumerate() {
                    ids[b * seq + t] = *id as i32;
                }
                rest[b] = r.len() as i32;
            }
        }
        {
            let host = ws
                .host_tokens
                .as_slice()
                .map_err(|e| cuda_err("staging tokens", e))?;
            self.stream
                .memcpy_htod(&host[..staged], &mut ws.tokens.slice_mut(0..staged))
                .map_err(|e| cuda_err("uploading tokens", e))?;
        }
        let ids = ws.tokens.slice(0..rows);
        let positions = ws.tokens.slice(rows..2 * rows);
        let types = ws.tokens.slice(2 * rows..3 * rows);
        let lengths = ws.tokens.slice(3 * rows..staged);

        let (hi, ii, si, hdi) = (h as i32, inter as i32, seq as i32, heads as i32);
        let mut b = self.stream.launch_builder(&self.kernels.embed_layernorm);
        b.arg(&ids)
            .arg(&positions)
            .arg(&types)
            .arg(&self.word)
            .arg(&self.position)
            .arg(&self.token_type)
            .arg(&self.emb_g)
            .arg(&self.emb_b)
            .arg(&mut ws.x)
            .arg(&hi)
            .arg(&self.eps);
        // SAFETY: arguments follow the kernel's signature; one block per token row.
        launched(unsafe { b.launch(rows_launch(rows)) }, "embed_layernorm")?;

        let scale = 1.0 / (hd as f32).sqrt();
        let per_seq_scores = heads * seq * seq;
        for layer in &self.layers {
            self.linear(&ws.x, &layer.q_w, &mut ws.q, (rows, h, h))?;
            self.linear(&ws.x, &layer.k_w, &mut ws.k, (rows, h, h))?;
            self.linear(&ws.x, &layer.v_w, &mut ws.v, (rows, h, h))?;
            self.add_bias(&mut ws.q, &layer.q_b, rows * h)?;
            self.add_bias(&mut ws.k, &layer.k_b, rows * h)?;
            self.add_bias(&mut ws.v, &layer.v_b, rows * h)?;
            for s in 0..n {
                let at = s * seq * h;
                let ss = s * per_seq_scores;
                // Column-major per head: scoresᵀ[key, query] = K · Qᵀ.
                self.head_gemm(
                    &ws.k.slice(at..),
                    &ws.q.slice(at..),
                    &mut ws.scores.slice_mut(ss..ss + per_seq_scores),
                    Self::gemm_config(cublasOperation_t::CUBLAS_OP_T, (seq, seq, hd), (h, h, seq)),
                    (hd, hd, seq * seq),
                )?;
            }
            let mut b = self.stream.launch_builder(&self.kernels.masked_softmax);
            b.arg(&mut ws.scores)
                .arg(&lengths)
                .arg(&hdi)
                .arg(&si)
                .arg(&scale);
            // SAFETY: one block per score row of the n sequences.
            launched(
                unsafe { b.launch(rows_launch(n * heads * seq)) },
                "masked_softmax",
            )?;
            for s in 0..n {
                let at = s * seq * h;
                let ss = s * per_seq_scores;
                // Column-major per head: contextᵀ[d, query] = Vᵀ[d, key] · Pᵀ[key, query].
                self.head_gemm(
                    &ws.v.slice(at..),
                    &ws.scores.slice(ss..),
                    &mut ws.context.slice_mut(at..at + seq * h),
                    Self::gemm_config(cublasOperation_t::CUBLAS_OP_N, (hd, seq, seq), (h, seq, h)),
                    (hd, seq * seq, hd),
                )?;
            }
            self.linear(&ws.context, &layer.o_w, &mut ws.projected, (rows, h, h))?;
            self.residual_layernorm(
                &mut ws.x,
                &ws.projected,
                [&layer.o_b, &layer.ln1_g, &layer.ln1_b],
                rows,
            )?;
            self.linear(&ws.x, &layer.i_w, &mut ws.up, (rows, h, inter))?;
            let ri = (rows * inter) as i32;
            let mut b = self.stream.launch_builder(&self.kernels.bias_gelu);
            b.arg(&mut ws.up).arg(&layer.i_b).arg(&ri).arg(&ii);
            // SAFETY: rows · intermediate elements, bias of the intermediate width.
            launched(unsafe { b.launch(elems_launch(rows * inter)) }, "bias_gelu")?;
            self.linear(&ws.up, &layer.d_w, &mut ws.projected, (rows, inter, h))?;
            self.residual_layernorm(
                &mut ws.x,
                &ws.projected,
                [&layer.d_b, &layer.ln2_g, &layer.ln2_b],
                rows,
            )?;
        }
        let (cls, norm) = (i32::from(self.cls), i32::from(self.normalize));
        let mut b = self.stream.launch_builder(&self.kernels.pool_normalize);
        b.arg(&ws.x)
            .arg(&lengths)
            .arg(&mut ws.out)
            .arg(&si)
            .arg(&hi)
            .arg(&cls)
            .arg(&norm);
        // SAFETY: one block per sequence.
        launched(unsafe { b.launch(rows_launch(n)) }, "pool_normalize")?;
        let host = ws
            .host_out
            .as_mut_slice()
            .map_err(|e| cuda_err("reading vectors", e))?;
        self.stream
            .memcpy_dtoh(&ws.out.slice(0..n * h), &mut host[..n * h])
            .map_err(|e| cuda_err("reading vectors", e))?;
        // The copy into a plain slice is asynchronous: wait for it (and for the upload
        // above, before the staging buffer is written again by the next batch).
        self.stream
            .synchronize()
            .map_err(|e| cuda_err("reading vectors", e))?;
        Ok(host[..n * h].to_vec())
    }
}

impl<T: DeviceActivation> CudaBackend<T>
where
    CudaBlas: Gemm<T>,
{
    fn new(ctx: Arc<CudaContext>, spec: &ModelSpec, bytes: &[u8]) -> Result<Self, EngineError> {
        let device = ctx.name().unwrap_or_else(|_| "CUDA device 0".into());
        let model = DeviceModel::new(&ctx, spec, bytes)?;
        let workspace = Workspace::new(&model, spec.max_seq_length)?;
        tracing::info!(
            device,
            precision = T::PRECISION.as_str(),
            "CUDA backend ready"
        );
        Ok(Self {
            model,
            workspace,
            device,
        })
    }
}

impl<T: DeviceActivation> Backend for CudaBackend<T>
where
    CudaBlas: Gemm<T>,
{
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn precision(&self) -> Precision {
        T::PRECISION
    }

    fn dim(&self) -> usize {
        self.model.hidden
    }

    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, EngineError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.model.forward(&mut self.workspace, batch)
    }
}
