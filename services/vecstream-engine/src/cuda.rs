//! The CUDA backend (cargo feature `cuda`): cuBLAS for every GEMM, the kernels of
//! `kernels/` (compiled once at start with NVRTC) for everything else, weights resident on
//! the device, one stream. The same program runs on the CPU through OpenCL in CI
//! (`vecstream-kernels`' tests, including a whole forward pass); this module only adds the
//! device plumbing. fp32 only.
//!
//! cudarc loads libcuda, libnvrtc and libcublas at run time; [`probe`] checks each before
//! touching them (cudarc panics on a missing library), so a machine without them gets the
//! CPU and one log line, never a panic.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use safetensors::{Dtype, SafeTensors};

use crate::EngineError;
use crate::backend::{Backend, BackendKind, Precision, TokenBatch};
use crate::model::{ModelSpec, Pooling};

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
    EngineError::BackendUnavailable {
        backend: "cuda".into(),
        reason: format!("{what}: {e}"),
    }
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
    if precision != Precision::Fp32 {
        return Err(EngineError::BackendUnavailable {
            backend: "cuda".into(),
            reason: format!(
                "precision {} has no CUDA path yet; use fp32",
                precision.as_str()
            ),
        });
    }
    let ctx = match CudaContext::new(0) {
        Ok(c) => c,
        Err(e) => return absent(format!("no usable CUDA device: {e}")),
    };
    Ok(Probe::Ready(Box::new(CudaBackend::new(
        ctx, spec, weights,
    )?)))
}

struct Layer {
    q_w: CudaSlice<f32>,
    q_b: CudaSlice<f32>,
    k_w: CudaSlice<f32>,
    k_b: CudaSlice<f32>,
    v_w: CudaSlice<f32>,
    v_b: CudaSlice<f32>,
    o_w: CudaSlice<f32>,
    o_b: CudaSlice<f32>,
    ln1_g: CudaSlice<f32>,
    ln1_b: CudaSlice<f32>,
    i_w: CudaSlice<f32>,
    i_b: CudaSlice<f32>,
    d_w: CudaSlice<f32>,
    d_b: CudaSlice<f32>,
    ln2_g: CudaSlice<f32>,
    ln2_b: CudaSlice<f32>,
}

struct Kernels {
    embed_layernorm: CudaFunction,
    add_bias: CudaFunction,
    bias_gelu: CudaFunction,
    masked_softmax: CudaFunction,
    residual_layernorm: CudaFunction,
    pool_normalize: CudaFunction,
}

/// See the module docs.
pub(crate) struct CudaBackend {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Kernels,
    word: CudaSlice<f32>,
    position: CudaSlice<f32>,
    token_type: CudaSlice<f32>,
    emb_g: CudaSlice<f32>,
    emb_b: CudaSlice<f32>,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    cls: bool,
    normalize: bool,
    device: String,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device)
            .finish()
    }
}

/// A safetensors tensor as f32 (f32 or f16 on disk).
fn tensor(st: &SafeTensors<'_>, prefix: &str, name: &str) -> Result<Vec<f32>, EngineError> {
    let full = format!("{prefix}{name}");
    let t = st
        .tensor(&full)
        .map_err(|e| weight_err(&full, &e.to_string()))?;
    let b = t.data();
    match t.dtype() {
        Dtype::F32 => Ok(b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Dtype::F16 => Ok(b
            .chunks_exact(2)
            .map(|c| crate::weights::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect()),
        other => Err(weight_err(&full, &format!("dtype {other:?}"))),
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

impl CudaBackend {
    fn new(ctx: Arc<CudaContext>, spec: &ModelSpec, bytes: &[u8]) -> Result<Self, EngineError> {
        let device = ctx.name().unwrap_or_else(|_| "CUDA device 0".into());
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_err("cuBLAS", e))?;
        // Compiled once at start for the device's architecture (the driver JITs the PTX).
        let ptx = cudarc::nvrtc::compile_ptx(vecstream_kernels::program_source())
            .map_err(|e| cuda_err("NVRTC compiling kernels/", e))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| cuda_err("loading the kernels", e))?;
        let f = |name: &str| {
            module
                .load_function(name)
                .map_err(|e| cuda_err(&format!("kernel {name}"), e))
        };
        let kernels = Kernels {
            embed_layernorm: f("embed_layernorm")?,
            add_bias: f("add_bias")?,
            bias_gelu: f("bias_gelu")?,
            masked_softmax: f("masked_softmax")?,
            residual_layernorm: f("residual_layernorm")?,
            pool_normalize: f("pool_normalize")?,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| weight_err("*", &e.to_string()))?;
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.embeddings.")) {
            "bert."
        } else {
            ""
        };
        let up = |name: &str| -> Result<CudaSlice<f32>, EngineError> {
            let host = tensor(&st, prefix, name)?;
            stream
                .clone_htod(&host)
                .map_err(|e| cuda_err("uploading weights", e))
        };
        let cfg = &spec.config;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = |n: &str| format!("encoder.layer.{l}.{n}");
            layers.push(Layer {
                q_w: up(&p("attention.self.query.weight"))?,
                q_b: up(&p("attention.self.query.bias"))?,
                k_w: up(&p("attention.self.key.weight"))?,
                k_b: up(&p("attention.self.key.bias"))?,
                v_w: up(&p("attention.self.value.weight"))?,
                v_b: up(&p("attention.self.value.bias"))?,
                o_w: up(&p("attention.output.dense.weight"))?,
                o_b: up(&p("attention.output.dense.bias"))?,
                ln1_g: up(&p("attention.output.LayerNorm.weight"))?,
                ln1_b: up(&p("attention.output.LayerNorm.bias"))?,
                i_w: up(&p("intermediate.dense.weight"))?,
                i_b: up(&p("intermediate.dense.bias"))?,
                d_w: up(&p("output.dense.weight"))?,
                d_b: up(&p("output.dense.bias"))?,
                ln2_g: up(&p("output.LayerNorm.weight"))?,
                ln2_b: up(&p("output.LayerNorm.bias"))?,
            });
        }
        Ok(Self {
            word: up("embeddings.word_embeddings.weight")?,
            position: up("embeddings.position_embeddings.weight")?,
            token_type: up("embeddings.token_type_embeddings.weight")?,
            emb_g: up("embeddings.LayerNorm.weight")?,
            emb_b: up("embeddings.LayerNorm.bias")?,
            layers,
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            inter: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
            cls: spec.pooling == Pooling::Cls,
            normalize: spec.normalize,
            stream,
            blas,
            kernels,
            device,
        })
    }

    fn alloc(&self, n: usize) -> Result<CudaSlice<f32>, EngineError> {
        self.stream
            .alloc_zeros::<f32>(n)
            .map_err(|e| cuda_err("allocating", e))
    }

    /// Row-major `c[m, n] = a[m, k] · w[n, k]ᵀ` (cuBLAS is column-major: `cᵀ = w · aᵀ`).
    fn linear(
        &self,
        a: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<CudaSlice<f32>, EngineError> {
        let mut c = self.alloc(m * n)?;
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: 1.0f32,
            lda: k as i32,
            ldb: k as i32,
            beta: 0.0f32,
            ldc: n as i32,
        };
        // SAFETY: the sizes above match the buffers' lengths.
        unsafe { self.blas.gemm(cfg, w, a, &mut c) }.map_err(|e| cuda_err("cuBLAS gemm", e))?;
        Ok(c)
    }

    /// Attention of one sequence `b` over all heads: scores = Q·Kᵀ per head into `scores`
    /// (`[heads, seq, seq]` at `b`), then, after the softmax, context = P·V per head.
    #[allow(clippy::too_many_arguments)]
    fn head_gemm(
        &self,
        a: &impl DevicePtr<f32>,
        b: &impl DevicePtr<f32>,
        c: &mut impl DevicePtrMut<f32>,
        gemm: GemmConfig<f32>,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
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

    /// `x = LN(x + y + bias) * gamma + beta` per row; `params` = bias, gamma, beta.
    fn residual_layernorm(
        &self,
        x: &mut CudaSlice<f32>,
        y: &CudaSlice<f32>,
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
        unsafe { b.launch(rows_launch(rows)) }
            .map(|_| ())
            .map_err(|e| cuda_err("kernel residual_layernorm", e))
    }

    fn forward(&self, batch: &TokenBatch) -> Result<Vec<f32>, EngineError> {
        let (h, heads, inter) = (self.hidden, self.heads, self.inter);
        let hd = h / heads;
        let seqs = batch.sequences();
        let n = seqs.len();
        let seq = seqs.iter().map(|r| r.len()).max().unwrap_or(1).max(1);
        let rows = n * seq;
        let mut ids = vec![0i32; rows];
        let mut lengths = Vec::with_capacity(n);
        for (b, r) in seqs.iter().enumerate() {
            for (t, id) in batch.ids[r.clone()].iter().enumerate() {
                ids[b * seq + t] = *id as i32;
            }
            lengths.push(r.len() as i32);
        }
        let positions: Vec<i32> = (0..rows).map(|i| (i % seq) as i32).collect();
        let up_i32 = |v: &[i32]| {
            self.stream
                .clone_htod(v)
                .map_err(|e| cuda_err("uploading tokens", e))
        };
        let (ids_d, pos_d, types_d, len_d) = (
            up_i32(&ids)?,
            up_i32(&positions)?,
            up_i32(&vec![0i32; rows])?,
            up_i32(&lengths)?,
        );
        let launch = |e: Result<(), cudarc::driver::DriverError>, name: &str| {
            e.map_err(|e| cuda_err(&format!("kernel {name}"), e))
        };
        let (hi, ii, si, hdi) = (h as i32, inter as i32, seq as i32, heads as i32);
        let mut x = self.alloc(rows * h)?;
        let mut b = self.stream.launch_builder(&self.kernels.embed_layernorm);
        b.arg(&ids_d)
            .arg(&pos_d)
            .arg(&types_d)
            .arg(&self.word)
            .arg(&self.position)
            .arg(&self.token_type)
            .arg(&self.emb_g)
            .arg(&self.emb_b)
            .arg(&mut x)
            .arg(&hi)
            .arg(&self.eps);
        // SAFETY: arguments follow the kernel's signature; one block per token row.
        launch(
            unsafe { b.launch(rows_launch(rows)) }.map(|_| ()),
            "embed_layernorm",
        )?;

        let scale = 1.0 / (hd as f32).sqrt();
        let rh = (rows * h) as i32;
        for layer in &self.layers {
            let mut q = self.linear(&x, &layer.q_w, rows, h, h)?;
            let mut k = self.linear(&x, &layer.k_w, rows, h, h)?;
            let mut v = self.linear(&x, &layer.v_w, rows, h, h)?;
            for (m, bias) in [
                (&mut q, &layer.q_b),
                (&mut k, &layer.k_b),
                (&mut v, &layer.v_b),
            ] {
                let mut b = self.stream.launch_builder(&self.kernels.add_bias);
                b.arg(m).arg(bias).arg(&rh).arg(&hi);
                // SAFETY: n = rows * hidden elements, bias of hidden.
                launch(
                    unsafe { b.launch(elems_launch(rows * h)) }.map(|_| ()),
                    "add_bias",
                )?;
            }
            let mut scores = self.alloc(n * heads * seq * seq)?;
            for s in 0..n {
                let at = s * seq * h;
                // Column-major per head: scoresᵀ[key, query] = K · Qᵀ.
                let gemm = GemmConfig {
                    transa: cublasOperation_t::CUBLAS_OP_T,
                    transb: cublasOperation_t::CUBLAS_OP_N,
                    m: si,
                    n: si,
                    k: hd as i32,
                    alpha: 1.0f32,
                    lda: hi,
                    ldb: hi,
                    beta: 0.0f32,
                    ldc: si,
                };
                let ss = s * heads * seq * seq;
                self.head_gemm(
                    &k.slice(at..),
                    &q.slice(at..),
                    &mut scores.slice_mut(ss..ss + heads * seq * seq),
                    gemm,
                    hd,
                    hd,
                    seq * seq,
                )?;
            }
            let mut b = self.stream.launch_builder(&self.kernels.masked_softmax);
            b.arg(&mut scores)
                .arg(&len_d)
                .arg(&hdi)
                .arg(&si)
                .arg(&scale);
            // SAFETY: one block per score row.
            launch(
                unsafe { b.launch(rows_launch(n * heads * seq)) }.map(|_| ()),
                "masked_softmax",
            )?;
            let mut context = self.alloc(rows * h)?;
            for s in 0..n {
                let at = s * seq * h;
                // Column-major per head: contextᵀ[d, query] = Vᵀ[d, key] · Pᵀ[key, query].
                let gemm = GemmConfig {
                    transa: cublasOperation_t::CUBLAS_OP_N,
                    transb: cublasOperation_t::CUBLAS_OP_N,
                    m: hd as i32,
                    n: si,
                    k: si,
                    alpha: 1.0f32,
                    lda: hi,
                    ldb: si,
                    beta: 0.0f32,
                    ldc: hi,
                };
                let ss = s * heads * seq * seq;
                self.head_gemm(
                    &v.slice(at..),
                    &scores.slice(ss..),
                    &mut context.slice_mut(at..at + seq * h),
                    gemm,
                    hd,
                    seq * seq,
                    hd,
                )?;
            }
            let attn = self.linear(&context, &layer.o_w, rows, h, h)?;
            self.residual_layernorm(
                &mut x,
                &attn,
                [&layer.o_b, &layer.ln1_g, &layer.ln1_b],
                rows,
            )?;
            let mut upv = self.linear(&x, &layer.i_w, rows, h, inter)?;
            let ri = (rows * inter) as i32;
            let mut b = self.stream.launch_builder(&self.kernels.bias_gelu);
            b.arg(&mut upv).arg(&layer.i_b).arg(&ri).arg(&ii);
            // SAFETY: n = rows * intermediate elements.
            launch(
                unsafe { b.launch(elems_launch(rows * inter)) }.map(|_| ()),
                "bias_gelu",
            )?;
            let down = self.linear(&upv, &layer.d_w, rows, inter, h)?;
            self.residual_layernorm(
                &mut x,
                &down,
                [&layer.d_b, &layer.ln2_g, &layer.ln2_b],
                rows,
            )?;
        }
        let mut out = self.alloc(n * h)?;
        let (cls, norm) = (i32::from(self.cls), i32::from(self.normalize));
        let mut b = self.stream.launch_builder(&self.kernels.pool_normalize);
        b.arg(&x)
            .arg(&len_d)
            .arg(&mut out)
            .arg(&si)
            .arg(&hi)
            .arg(&cls)
            .arg(&norm);
        // SAFETY: one block per sequence.
        launch(
            unsafe { b.launch(rows_launch(n)) }.map(|_| ()),
            "pool_normalize",
        )?;
        self.stream
            .clone_dtoh(&out)
            .map_err(|e| cuda_err("reading vectors", e))
    }
}

impl Backend for CudaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Cuda
    }

    fn precision(&self) -> Precision {
        Precision::Fp32
    }

    fn dim(&self) -> usize {
        self.hidden
    }

    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, EngineError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(batch)
    }
}
