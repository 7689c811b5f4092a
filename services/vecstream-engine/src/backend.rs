//! The `Backend` trait every device implements, and the one-time device choice.

use std::ops::Range;

use crate::EngineError;

/// Where the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Cuda,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// Numeric precision of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Int8,
    /// Half-precision weights and activations: the CUDA backend only.
    Fp16,
    Bf16,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            "fp16" => Ok(Precision::Fp16),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?} (fp32, int8, fp16, bf16)")),
        }
    }
}

/// Token ids of several sequences packed back to back (no padding), each already wrapped in
/// the model's special tokens and within its length limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    /// `offsets[i]..offsets[i + 1]` are the tokens of sequence `i`; starts with 0.
    pub offsets: Vec<usize>,
}

impl TokenBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self {
            ids: Vec::new(),
            offsets: vec![0],
        }
    }

    /// Appends one sequence.
    pub fn push(&mut self, ids: &[u32]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len());
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when the batch holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token ranges of the sequences.
    pub fn sequences(&self) -> Vec<Range<usize>> {
        self.offsets.windows(2).map(|w| w[0]..w[1]).collect()
    }
}

/// A device that turns token batches into sentence vectors.
///
/// Implementations own their threads or streams and buffers; the engine calls them from its
/// own thread, one batch at a time.
pub trait Backend: Send + std::fmt::Debug {
    fn kind(&self) -> BackendKind;
    fn precision(&self) -> Precision;
    /// Width of the vectors.
    fn dim(&self) -> usize;
    /// One vector per sequence, row-major `[batch.len(), dim]`, pooled (and normalised if the
    /// model says so).
    fn embed(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_packs_sequences_back_to_back() {
        let mut b = TokenBatch::new();
        assert!(b.is_empty());
        b.push(&[101, 7, 102]);
        b.push(&[101, 102]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.sequences(), vec![0..3, 3..5]);
        assert_eq!("int8".parse::<Precision>(), Ok(Precision::Int8));
        assert!("fp8".parse::<Precision>().is_err());
    }
}
