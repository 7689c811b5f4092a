//! The model onto the device: the kernels compiled by NVRTC for the device, the weights
//! uploaded (matrices and embedding tables in the activation type, biases and LayerNorm
//! parameters in fp32).

use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm};
use cudarc::driver::{CudaContext, CudaSlice};
use safetensors::SafeTensors;

use super::{DeviceActivation, DeviceModel, Kernels, Layer, cuda_err, weight_err};
use crate::EngineError;
use crate::model::{ModelSpec, Pooling};

/// A safetensors tensor as f32 (f32 or f16 on disk).
fn tensor(st: &SafeTensors<'_>, prefix: &str, name: &str) -> Result<Vec<f32>, EngineError> {
    let full = format!("{prefix}{name}");
    let t = st
        .tensor(&full)
        .map_err(|e| weight_err(&full, &e.to_string()))?;
    crate::tensor_io::tensor_f32(&t)
        .ok_or_else(|| weight_err(&full, &format!("dtype {:?}", t.dtype())))
}

impl<T: DeviceActivation> DeviceModel<T>
where
    CudaBlas: Gemm<T>,
{
    pub(super) fn new(
        ctx: &Arc<CudaContext>,
        spec: &ModelSpec,
        bytes: &[u8],
    ) -> Result<Self, EngineError> {
        // A stream of this engine's own: the legacy default stream would serialise it with
        // every other engine (and library) in the process.
        let stream = ctx
            .new_stream()
            .map_err(|e| cuda_err("creating a stream", e))?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| cuda_err("cuBLAS", e))?;
        // Compiled once at start for the device's architecture (the driver JITs the PTX).
        let ptx = cudarc::nvrtc::compile_ptx(vecstream_kernels::program_source())
            .map_err(|e| cuda_err("NVRTC compiling kernels/", e))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| cuda_err("loading the kernels", e))?;
        let f = |name: &str| {
            let name = format!("{name}{}", T::KERNEL_SUFFIX);
            module
                .load_function(&name)
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
        let uploading = |e| cuda_err("uploading weights", e);
        // Biases and LayerNorm parameters: fp32 in both precisions.
        let param = |name: &str| -> Result<CudaSlice<f32>, EngineError> {
            stream
                .clone_htod(&tensor(&st, prefix, name)?)
                .map_err(uploading)
        };
        // Matrices and embedding tables: in the activation type.
        let matrix = |name: &str| -> Result<CudaSlice<T>, EngineError> {
            let host: Vec<T> = tensor(&st, prefix, name)?
                .into_iter()
                .map(T::from_f32)
                .collect();
            stream.clone_htod(&host).map_err(uploading)
        };
        let cfg = &spec.config;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = |n: &str| format!("encoder.layer.{l}.{n}");
            layers.push(Layer {
                q_w: matrix(&p("attention.self.query.weight"))?,
                q_b: param(&p("attention.self.query.bias"))?,
                k_w: matrix(&p("attention.self.key.weight"))?,
                k_b: param(&p("attention.self.key.bias"))?,
                v_w: matrix(&p("attention.self.value.weight"))?,
                v_b: param(&p("attention.self.value.bias"))?,
                o_w: matrix(&p("attention.output.dense.weight"))?,
                o_b: param(&p("attention.output.dense.bias"))?,
                ln1_g: param(&p("attention.output.LayerNorm.weight"))?,
                ln1_b: param(&p("attention.output.LayerNorm.bias"))?,
                i_w: matrix(&p("intermediate.dense.weight"))?,
                i_b: param(&p("intermediate.dense.bias"))?,
                d_w: matrix(&p("output.dense.weight"))?,
                d_b: param(&p("output.dense.bias"))?,
                ln2_g: param(&p("output.LayerNorm.weight"))?,
                ln2_b: param(&p("output.LayerNorm.bias"))?,
            });
        }
        Ok(Self {
            word: matrix("embeddings.word_embeddings.weight")?,
            position: matrix("embeddings.position_embeddings.weight")?,
            token_type: matrix("embeddings.token_type_embeddings.weight")?,
            emb_g: param("embeddings.LayerNorm.weight")?,
            emb_b: param("embeddings.LayerNorm.bias")?,
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
        })
    }
}
