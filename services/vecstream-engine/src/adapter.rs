//! A linear adapter on top of a frozen encoder: `v' = W·v`, re-normalised when the model
//! normalises. `FineTuneWorkflow` trains `W` (d × d, starting at the identity) and writes it
//! as `adapter.safetensors` (one F32 tensor `weight`, `[out, in]`) into a model directory of
//! the model store; the engine applies it after pooling, and it is part of the model id.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::EngineError;
use crate::cpu::gemm::{View, matmul};
use crate::tensor_io::{f32_le_bytes, tensor_f32, write_atomic};

/// File name of an adapter in a model directory.
pub const ADAPTER_FILE: &str = "adapter.safetensors";
const TENSOR: &str = "weight";

/// `W`, row-major `[dim (out), dim (in)]`.
#[derive(Clone, PartialEq)]
pub struct Adapter {
    dim: usize,
    weight: Vec<f32>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter").field("dim", &self.dim).finish()
    }
}

fn adapter_err(path: &Path, message: impl Into<String>) -> EngineError {
    EngineError::Model {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl Adapter {
    /// `weight` must hold `dim * dim` finite values.
    pub fn new(dim: usize, weight: Vec<f32>) -> Result<Self, String> {
        if dim == 0 || weight.len() != dim * dim {
            return Err(format!(
                "an adapter of dimension {dim} needs {} weights, got {}",
                dim * dim,
                weight.len()
            ));
        }
        if weight.iter().any(|w| !w.is_finite()) {
            return Err("adapter weights must be finite".into());
        }
        Ok(Self { dim, weight })
    }

    /// `W = I`: vectors unchanged.
    pub fn identity(dim: usize) -> Self {
        let mut weight = vec![0f32; dim * dim];
        for i in 0..dim {
            weight[i * dim + i] = 1.0;
        }
        Self { dim, weight }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row-major `[out, in]`.
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }

    /// The adapter file's bytes.
    pub fn to_safetensors(&self) -> Vec<u8> {
        let bytes = f32_le_bytes(&self.weight);
        let view =
            safetensors::tensor::TensorView::new(Dtype::F32, vec![self.dim, self.dim], &bytes)
                .expect("shape matches the data");
        safetensors::serialize([(TENSOR, view)], None).expect("serialising one F32 tensor")
    }

    /// Parses adapter file bytes.
    pub fn from_safetensors(path: &Path, bytes: &[u8]) -> Result<Self, EngineError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| adapter_err(path, e.to_string()))?;
        let t = st
            .tensor(TENSOR)
            .map_err(|e| adapter_err(path, format!("tensor {TENSOR}: {e}")))?;
        let shape = t.shape();
        if t.dtype() != Dtype::F32 || shape.len() != 2 || shape[0] != shape[1] {
            return Err(adapter_err(
                path,
                format!(
                    "tensor {TENSOR} must be square F32, is {:?} {shape:?}",
                    t.dtype()
                ),
            ));
        }
        let weight = tensor_f32(&t).expect("checked F32 above");
        Self::new(shape[0], weight).map_err(|e| adapter_err(path, e))
    }

    /// The adapter of a model directory, if it has one, with the file's bytes (they are part
    /// of the model id).
    pub fn load(dir: &Path) -> Result<Option<(Self, Vec<u8>)>, EngineError> {
        let path = dir.join(ADAPTER_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| EngineError::io(&path, &e))?;
        let adapter = Self::from_safetensors(&path, &bytes)?;
        Ok(Some((adapter, bytes)))
    }

    /// Writes the adapter file into `dir` ([`write_atomic`]: never half-written).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        write_atomic(&dir.join(ADAPTER_FILE), &self.to_safetensors())
    }

    /// `vectors[n, dim]` ← `vectors · Wᵀ`, each row then L2-normalised when `normalize`.
    pub fn apply(&self, vectors: &mut [f32], normalize: bool, threads: usize) {
        let d = self.dim;
        let n = vectors.len() / d;
        let mut out = vec![0f32; n * d];
        matmul(
            &mut out,
            d,
            View::rows(vectors, n, d, d),
            View::transposed(&self.weight, d, d, d),
            1.0,
            false,
            threads,
        );
        if normalize {
            for row in out.chunks_exact_mut(d) {
                crate::cpu::ops::l2_normalize(row);
            }
        }
        vectors.copy_from_slice(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_leaves_vectors_alone_and_a_matrix_is_applied_row_by_row() {
        let mut v = vec![0.6, 0.8, 0.0, 1.0];
        Adapter::identity(2).apply(&mut v, false, 1);
        assert_eq!(v, vec![0.6, 0.8, 0.0, 1.0]);
        // W = [[2, 0], [1, 1]]: (0.6, 0.8) -> (1.2, 1.4); (0, 1) -> (0, 1).
        let w = Adapter::new(2, vec![2.0, 0.0, 1.0, 1.0]).unwrap();
        w.apply(&mut v, false, 1);
        assert!((v[0] - 1.2).abs() < 1e-6 && (v[1] - 1.4).abs() < 1e-6);
        assert_eq!(&v[2..], &[0.0, 1.0]);
        w.apply(&mut v, true, 1);
        let norm: f32 = v[..2].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_file_round_trips_and_bad_weights_are_refused() {
        let dir = std::env::temp_dir().join(format!("vecstream-adapter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Adapter::new(3, (0..9).map(|i| i as f32 * 0.5).collect()).unwrap();
        a.save(&dir).unwrap();
        let (back, bytes) = Adapter::load(&dir).unwrap().expect("adapter present");
        assert_eq!(back, a);
        assert_eq!(bytes, a.to_safetensors());
        assert!(Adapter::new(2, vec![1.0; 3]).is_err());
        assert!(Adapter::new(1, vec![f32::NAN]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Adapter::load(&dir).unwrap().is_none());
    }
}
