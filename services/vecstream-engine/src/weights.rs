//! BERT weights from safetensors, laid out for the forward pass: linear weights transposed
//! to `[in, out]` row-major (what the GEMM streams best) and Q, K, V fused into one matrix.

use safetensors::SafeTensors;

use crate::EngineError;
use crate::backend::Precision;
use crate::cpu::packed::PackedMatrix;
use crate::cpu::quant::QuantMatrix;
use crate::model::BertConfig;
use crate::tensor_io::tensor_f32;

/// The weights of one linear layer, in the form the chosen precision multiplies with.
#[derive(Debug, Clone)]
pub enum Linear {
    Fp32(PackedMatrix),
    Int8(QuantMatrix),
}

impl Linear {
    /// `w` is `k × n` row-major (inputs × outputs). fp16 and bf16 have no kernel on the CPU
    /// (the engine refuses them there before loading).
    pub fn new(w: Vec<f32>, k: usize, n: usize, precision: Precision) -> Self {
        match precision {
            Precision::Int8 => Linear::Int8(QuantMatrix::new(&w, k, n)),
            Precision::Fp32 | Precision::Fp16 | Precision::Bf16 => {
                Linear::Fp32(PackedMatrix::new(w, k, n))
            }
        }
    }

    /// `c[m × n] = a[m × k] · W` on the current rayon pool (see [`PackedMatrix::matmul`]).
    pub fn matmul(
        &self,
        a: &[f32],
        m: usize,
        lda: usize,
        c: &mut [f32],
        ldc: usize,
        threads: usize,
    ) {
        match self {
            Linear::Fp32(w) => w.matmul(a, m, lda, c, ldc, threads),
            Linear::Int8(w) => w.matmul(a, m, lda, c, ldc, threads),
        }
    }
}

/// One encoder layer.
#[derive(Debug)]
pub struct LayerWeights {
    /// `[H, 3H]`: columns Q | K | V.
    pub qkv_w: Linear,
    pub qkv_b: Vec<f32>,
    /// `[H, H]`.
    pub attn_out_w: Linear,
    pub attn_out_b: Vec<f32>,
    pub attn_ln_g: Vec<f32>,
    pub attn_ln_b: Vec<f32>,
    /// `[H, I]`.
    pub ffn_in_w: Linear,
    pub ffn_in_b: Vec<f32>,
    /// `[I, H]`.
    pub ffn_out_w: Linear,
    pub ffn_out_b: Vec<f32>,
    pub ffn_ln_g: Vec<f32>,
    pub ffn_ln_b: Vec<f32>,
}

/// The whole encoder.
#[derive(Debug)]
pub struct BertWeights {
    /// `[V, H]`.
    pub word: Vec<f32>,
    /// `[P, H]`.
    pub position: Vec<f32>,
    /// Row 0 of the token-type table (single-segment inputs only).
    pub token_type0: Vec<f32>,
    pub emb_ln_g: Vec<f32>,
    pub emb_ln_b: Vec<f32>,
    pub layers: Vec<LayerWeights>,
    pub vocab_size: usize,
}

struct Reader<'a> {
    st: SafeTensors<'a>,
    prefix: String,
}

impl Reader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EngineError> {
        let full = format!("{}{name}", self.prefix);
        let view = self
            .st
            .tensor(&full)
            .map_err(|e| weight_err(&full, &e.to_string()))?;
        if view.shape() != shape {
            return Err(weight_err(
                &full,
                &format!("shape {:?}, expected {shape:?}", view.shape()),
            ));
        }
        tensor_f32(&view)
            .ok_or_else(|| weight_err(&full, &format!("dtype {:?} is not supported", view.dtype())))
    }

    /// A PyTorch `Linear` weight `[out, in]`, returned transposed as `[in, out]`.
    fn linear_t(&self, name: &str, out: usize, inp: usize) -> Result<Vec<f32>, EngineError> {
        Ok(transpose(&self.get(name, &[out, inp])?, out, inp))
    }

    /// LayerNorm parameters, under either spelling (`weight/bias` or the older `gamma/beta`).
    fn layer_norm(&self, base: &str, h: usize) -> Result<(Vec<f32>, Vec<f32>), EngineError> {
        match self.get(&format!("{base}.weight"), &[h]) {
            Ok(g) => Ok((g, self.get(&format!("{base}.bias"), &[h])?)),
            Err(_) => Ok((
                self.get(&format!("{base}.gamma"), &[h])?,
                self.get(&format!("{base}.beta"), &[h])?,
            )),
        }
    }
}

fn weight_err(name: &str, message: &str) -> EngineError {
    EngineError::Model {
        path: format!("model.safetensors tensor {name}"),
        message: message.to_owned(),
    }
}

/// `[rows, cols]` → `[cols, rows]`.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

impl BertWeights {
    /// Parses `bytes` (a safetensors file) for an encoder of `cfg`.
    pub fn from_safetensors(
        bytes: &[u8],
        cfg: &BertConfig,
        precision: Precision,
    ) -> Result<Self, EngineError> {
        let linear = |w: Vec<f32>, k: usize, n: usize| Linear::new(w, k, n, precision);
        let st = SafeTensors::deserialize(bytes).map_err(|e| weight_err("*", &e.to_string()))?;
        // Checkpoints saved from BertForX carry a `bert.` prefix; sentence-transformers' don't.
        let prefix = if st.names().iter().any(|n| n.starts_with("bert.embeddings.")) {
            "bert."
        } else {
            ""
        };
        let r = Reader {
            st,
            prefix: prefix.to_owned(),
        };
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let word_view =
            r.st.tensor(&format!("{prefix}embeddings.word_embeddings.weight"))
                .map_err(|e| weight_err("word_embeddings", &e.to_string()))?;
        let vocab_size = word_view.shape().first().copied().unwrap_or(0);
        let word = r.get("embeddings.word_embeddings.weight", &[vocab_size, h])?;
        let position = r.get(
            "embeddings.position_embeddings.weight",
            &[cfg.max_position_embeddings, h],
        )?;
        let types =
            r.st.tensor(&format!("{prefix}embeddings.token_type_embeddings.weight"))
                .map(|v| v.shape()[0])
                .unwrap_or(0);
        let token_type0 = if types > 0 {
            r.get("embeddings.token_type_embeddings.weight", &[types, h])?[..h].to_vec()
        } else {
            vec![0.0; h]
        };
        let (emb_ln_g, emb_ln_b) = r.layer_norm("embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let q = r.linear_t(&format!("{p}attention.self.query.weight"), h, h)?;
            let k = r.linear_t(&format!("{p}attention.self.key.weight"), h, h)?;
            let v = r.linear_t(&format!("{p}attention.self.value.weight"), h, h)?;
            let mut qkv_w = vec![0.0; h * 3 * h];
            for row in 0..h {
                let dst = &mut qkv_w[row * 3 * h..(row + 1) * 3 * h];
                dst[..h].copy_from_slice(&q[row * h..(row + 1) * h]);
                dst[h..2 * h].copy_from_slice(&k[row * h..(row + 1) * h]);
                dst[2 * h..].copy_from_slice(&v[row * h..(row + 1) * h]);
            }
            let mut qkv_b = r.get(&format!("{p}attention.self.query.bias"), &[h])?;
            qkv_b.extend(r.get(&format!("{p}attention.self.key.bias"), &[h])?);
            qkv_b.extend(r.get(&format!("{p}attention.self.value.bias"), &[h])?);
            let (attn_ln_g, attn_ln_b) =
                r.layer_norm(&format!("{p}attention.output.LayerNorm"), h)?;
            let (ffn_ln_g, ffn_ln_b) = r.layer_norm(&format!("{p}output.LayerNorm"), h)?;
            layers.push(LayerWeights {
                qkv_w: linear(qkv_w, h, 3 * h),
                qkv_b,
                attn_out_w: linear(
                    r.linear_t(&format!("{p}attention.output.dense.weight"), h, h)?,
                    h,
                    h,
                ),
                attn_out_b: r.get(&format!("{p}attention.output.dense.bias"), &[h])?,
                attn_ln_g,
                attn_ln_b,
                ffn_in_w: linear(
                    r.linear_t(&format!("{p}intermediate.dense.weight"), i, h)?,
                    h,
                    i,
                ),
                ffn_in_b: r.get(&format!("{p}intermediate.dense.bias"), &[i])?,
                ffn_out_w: linear(r.linear_t(&format!("{p}output.dense.weight"), h, i)?, i, h),
                ffn_out_b: r.get(&format!("{p}output.dense.bias"), &[h])?,
                ffn_ln_g,
                ffn_ln_b,
            });
        }
        Ok(Self {
            word,
            position,
            token_type0,
            emb_ln_g,
            emb_ln_b,
            layers,
            vocab_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
