//! Helpers of the crate's unit tests: a tiny word-level tokenizer (so the chunker runs
//! without a model directory), documents, metrics.

use vecstream_core::Document;
use vecstream_engine::Chunker;
use vecstream_engine::tokenize::TextTokenizer;

use crate::PipelineMetrics;

/// A chunker over a whitespace word-level vocabulary (unknown words are `[UNK]`), windows
/// of `max_tokens` tokens including `[CLS]` and `[SEP]`.
pub(crate) fn chunker(max_tokens: usize) -> Chunker {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {
            "type": "WordLevel",
            "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "the": 3, "a": 4},
            "unk_token": "[UNK]"
        }
    });
    std::fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).expect("write");
    let tokenizer = TextTokenizer::load(dir.path(), max_tokens).expect("test tokenizer");
    Chunker::new(tokenizer, None, 0).expect("chunker")
}

pub(crate) fn document(id: &str, version: i64, body: &str) -> Document {
    Document {
        id: id.into(),
        tenant: "default".into(),
        source: format!("test://{id}"),
        title: None,
        body: body.into(),
        content_type: "text/plain".into(),
        metadata: Default::default(),
        version,
        deleted: false,
        produced_at: 0,
    }
}

pub(crate) fn metrics() -> PipelineMetrics {
    PipelineMetrics::register(&prometheus::Registry::new()).expect("metrics")
}
