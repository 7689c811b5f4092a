//! Tokenisation with the model's `tokenizer.json`, truncated to the model's limit as
//! sentence-transformers does (the shipped file's fixed 128-token padding and truncation are
//! overridden), with truncation counted, never silent.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::EngineError;

/// One tokenised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// `[CLS] … [SEP]`, at most `max_seq_length` ids.
    pub ids: Vec<u32>,
    /// True when the text had more tokens than fit.
    pub truncated: bool,
}

/// The model's tokenizer.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
    sep: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from the model directory; `max_len` counts special tokens.
    pub fn load(dir: &Path, max_len: usize) -> Result<Self, EngineError> {
        let path = dir.join("tokenizer.json");
        let mut inner = Tokenizer::from_file(&path)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let sep = ["[SEP]", "</s>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .ok_or_else(|| {
                EngineError::Tokenizer("no [SEP] or </s> token in the vocabulary".into())
            })?;
        Ok(Self {
            inner,
            max_len,
            sep,
        })
    }

    /// Token limit per text, special tokens included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The underlying tokenizer (the chunker needs offsets).
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The separator id that closes a sequence.
    pub fn sep_id(&self) -> u32 {
        self.sep
    }

    /// Tokenises texts (in parallel) and truncates each to the limit, keeping the final
    /// separator as the reference implementation does.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Encoded>, EngineError> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| self.truncate(e.get_ids()))
            .collect())
    }

    fn truncate(&self, ids: &[u32]) -> Encoded {
        if ids.len() <= self.max_len {
            return Encoded {
                ids: ids.to_vec(),
                truncated: false,
            };
        }
        let mut kept = ids[..self.max_len - 1].to_vec();
        kept.push(self.sep);
        Encoded {
            ids: kept,
            truncated: true,
        }
    }
}
