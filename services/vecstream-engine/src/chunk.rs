//! Tokenizer-aware chunking: a long text becomes windows of at most the model's token limit,
//! overlapping by a few tokens so a sentence cut at a boundary is whole in one of them. Each
//! chunk keeps its char span in the text and its ready-to-embed token ids.

use crate::EngineError;
use crate::tokenize::TextTokenizer;

/// One window of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: u32,
    /// The text of the span.
    pub text: String,
    /// Span in the text, in chars (not bytes), end exclusive.
    pub char_start: usize,
    pub char_end: usize,
    /// `[CLS] … [SEP]`, ready for [`crate::Engine::embed_tokens`].
    pub token_ids: Vec<u32>,
}

impl Chunk {
    /// Tokens of the chunk, special tokens included.
    pub fn token_count(&self) -> usize {
        self.token_ids.len()
    }
}

/// Splits texts into token windows.
#[derive(Debug, Clone)]
pub struct Chunker {
    tokenizer: TextTokenizer,
    /// Content tokens per window (the limit minus the two special tokens).
    window: usize,
    overlap: usize,
    cls: u32,
}

impl Chunker {
    /// Windows of at most `max_tokens` (default: the model's limit) overlapping by `overlap`.
    pub fn new(
        tokenizer: TextTokenizer,
        max_tokens: Option<usize>,
        overlap: usize,
    ) -> Result<Self, EngineError> {
        let limit = max_tokens
            .unwrap_or(tokenizer.max_len())
            .min(tokenizer.max_len());
        if limit < 3 {
            return Err(EngineError::Unsupported(
                "chunks need room for at least one token".into(),
            ));
        }
        let window = limit - 2;
        if overlap >= window {
            return Err(EngineError::Unsupported(format!(
                "overlap {overlap} must be smaller than the window {window}"
            )));
        }
        let cls = ["[CLS]", "<s>"]
            .iter()
            .find_map(|t| tokenizer.inner().token_to_id(t))
            .ok_or_else(|| {
                EngineError::Tokenizer("no [CLS] or <s> token in the vocabulary".into())
            })?;
        Ok(Self {
            tokenizer,
            window,
            overlap,
            cls,
        })
    }

    /// The chunks of `text`; none for a text without tokens.
    pub fn chunk(&self, text: &str) -> Result<Vec<Chunk>, EngineError> {
        let enc = self
            .tokenizer
            .inner()
            .encode_char_offsets(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids();
        let offsets = enc.get_offsets();
        let n = ids.len();
        // Byte index of every char boundary, to cut spans given in chars.
        let byte_of: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .collect();
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + self.window).min(n);
            let (char_start, char_end) = (offsets[start].0, offsets[end - 1].1);
            // Offsets come from the tokenizer: checked, never trusted to cut the text.
            let span = byte_of
                .get(char_start)
                .zip(byte_of.get(char_end))
                .and_then(|(&a, &b)| text.get(a..b))
                .ok_or_else(|| {
                    EngineError::Tokenizer(format!(
                        "token offsets {char_start}..{char_end} outside the text of {} characters",
                        byte_of.len() - 1
                    ))
                })?;
            let mut token_ids = Vec::with_capacity(end - start + 2);
            token_ids.push(self.cls);
            token_ids.extend_from_slice(&ids[start..end]);
            token_ids.push(self.tokenizer.sep_id());
            chunks.push(Chunk {
                index: chunks.len() as u32,
                text: span.to_owned(),
                char_start,
                char_end,
                token_ids,
            });
            if end == n {
                break;
            }
            start = end - self.overlap;
        }
        Ok(chunks)
    }
}
