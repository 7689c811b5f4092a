//! A sentence-transformers model directory: configs, tokenizer and safetensors weights.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::EngineError;

/// `config.json` of a BERT-family encoder (the fields the forward pass needs).
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f32,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: String,
}

fn default_eps() -> f32 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

#[derive(Debug, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Debug, Deserialize)]
struct SbertFile {
    max_seq_length: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// Everything read from a model directory except the weights' values.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub dir: PathBuf,
    /// Short name: the directory name.
    pub name: String,
    /// `name-<hash8>`: hash of the weights and the pooling/normalisation/length settings.
    pub model_id: String,
    pub config: BertConfig,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Tokens per input, special tokens included (sentence-transformers' max_seq_length).
    pub max_seq_length: usize,
    /// A fine-tuned linear adapter applied after pooling (`adapter.safetensors`).
    pub adapter: Option<std::sync::Arc<crate::adapter::Adapter>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, &e))?;
    serde_json::from_str(&text).map_err(|e| model_err(path, &e.to_string()))
}

fn model_err(path: &Path, message: &str) -> EngineError {
    EngineError::Model {
        path: path.display().to_string(),
        message: message.to_owned(),
    }
}

impl ModelSpec {
    /// Reads the configs of `dir` and its weights file (returned, to be parsed once), and
    /// derives the model id from both.
    ///
    /// `max_seq_length` overrides the directory's value (it may only shrink it: positions
    /// beyond the trained ones do not exist).
    pub fn load(dir: &Path, max_seq_length: Option<usize>) -> Result<(Self, Vec<u8>), EngineError> {
        let config: BertConfig = read_json(&dir.join("config.json"))?;
        if !config.model_type.is_empty()
            && !["bert", "roberta", "xlm-roberta"].contains(&config.model_type.as_str())
        {
            return Err(model_err(
                dir,
                &format!("model_type {:?} is not BERT-family", config.model_type),
            ));
        }
        if config.hidden_act != "gelu" {
            return Err(model_err(
                dir,
                &format!(
                    "hidden_act {:?} is not supported (gelu only)",
                    config.hidden_act
                ),
            ));
        }
        if !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
        {
            return Err(model_err(
                dir,
                "hidden_size is not a multiple of num_attention_heads",
            ));
        }

        // modules.json names the pooling directory and whether vectors are normalised.
        let modules: Vec<ModuleEntry> = if dir.join("modules.json").exists() {
            read_json(&dir.join("modules.json"))?
        } else {
            Vec::new()
        };
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with("models.Pooling"))
            .map(|m| dir.join(&m.path))
            .unwrap_or_else(|| dir.join("1_Pooling"));
        let normalize =
            modules.is_empty() || modules.iter().any(|m| m.kind.ends_with("models.Normalize"));
        let pooling_path = pooling_dir.join("config.json");
        let pooling_text = std::fs::read_to_string(&pooling_path).unwrap_or_default();
        let pooling = if pooling_text.is_empty() {
            Pooling::Mean
        } else {
            let p: PoolingFile = serde_json::from_str(&pooling_text)
                .map_err(|e| model_err(&pooling_path, &e.to_string()))?;
            if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens {
                return Err(model_err(
                    &pooling_path,
                    "only mean and CLS pooling are supported",
                ));
            }
            match (p.pooling_mode_cls_token, p.pooling_mode_mean_tokens) {
                (true, false) => Pooling::Cls,
                (false, true) => Pooling::Mean,
                _ => {
                    return Err(model_err(
                        &pooling_path,
                        "exactly one of mean or CLS pooling must be set",
                    ));
                }
            }
        };
        let sbert_len = dir
            .join("sentence_bert_config.json")
            .exists()
            .then(|| read_json::<SbertFile>(&dir.join("sentence_bert_config.json")))
            .transpose()?
            .and_then(|s| s.max_seq_length);
        let trained = config.max_position_embeddings;
        let max_seq_length = max_seq_length.or(sbert_len).unwrap_or(trained).min(trained);
        if max_seq_length < 3 {
            return Err(model_err(dir, "max_seq_length must be at least 3"));
        }

        let weights = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights).map_err(|e| EngineError::io(&weights, &e))?;
        let mut hash = Sha256::new();
        hash.update(&bytes);
        hash.update(format!("|{pooling:?}|{normalize}|{max_seq_length}").as_bytes());
        let adapter = match crate::adapter::Adapter::load(dir)? {
            Some((adapter, adapter_bytes)) => {
                if adapter.dim() != config.hidden_size {
                    return Err(model_err(
                        dir,
                        &format!(
                            "adapter of dimension {} on a model of hidden size {}",
                            adapter.dim(),
                            config.hidden_size
                        ),
                    ));
                }
                hash.update(b"|adapter|");
                hash.update(&adapter_bytes);
                Some(std::sync::Arc::new(adapter))
            }
            None => None,
        };
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let model_id = format!("{name}-{}", &hex::encode(hash.finalize())[..8]);
        let spec = Self {
            dir: dir.to_path_buf(),
            name,
            model_id,
            config,
            pooling,
            normalize,
            max_seq_length,
            adapter,
        };
        Ok((spec, bytes))
    }
}
