//! The data side of fine-tuning: the pairs file (validation, held-out split by query hash),
//! the embedding table of its distinct texts, and the held-out metrics.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use vecstream_engine::tensor_io::{
    f32_le_bytes, invalid_data, read_if_exists, tensor_f32, write_atomic,
};

use super::PairTable;
use crate::errors::JobError;
use crate::eval::{Judged, judge};
use crate::types::DatasetSummary;

/// One labelled pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    pub query: String,
    pub positive: String,
    #[serde(default)]
    pub negatives: Vec<String>,
}

/// A validated pairs file.
#[derive(Debug, Clone)]
pub struct PairsFile {
    pub pairs: Vec<Pair>,
    /// First 12 hex digits of the file's SHA-256.
    pub sha: String,
}

/// Reads and validates a pairs file: every line a `{"query", "positive", "negatives"?}`
/// object with non-empty texts; errors name the line. A file that cannot be read is an I/O
/// error; a malformed one is [`JobError::Invalid`].
pub fn load_pairs(path: &str) -> Result<PairsFile, JobError> {
    let raw = std::fs::read(path).map_err(|e| JobError::io(format!("pairs {path}"), e))?;
    let text =
        std::str::from_utf8(&raw).map_err(|e| JobError::invalid(format!("pairs {path}: {e}")))?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("pairs {path} line {}", n + 1);
        let p: Pair =
            serde_json::from_str(line).map_err(|e| JobError::invalid(format!("{}: {e}", at())))?;
        if p.query.trim().is_empty() || p.positive.trim().is_empty() {
            return Err(JobError::invalid(format!(
                "{}: query and positive must not be empty",
                at()
            )));
        }
        if p.negatives.iter().any(|t| t.trim().is_empty()) {
            return Err(JobError::invalid(format!("{}: an empty negative", at())));
        }
        pairs.push(p);
    }
    Ok(PairsFile {
        pairs,
        sha: hex::encode(Sha256::digest(&raw))[..12].to_owned(),
    })
}

/// Whether a pair belongs to the held-out split: by a hash of its query, so the split is
/// the same on every run and does not depend on the order of the file.
pub fn is_held_out(query: &str, fraction: f64) -> bool {
    let h = Sha256::digest(query.as_bytes());
    let x = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    (x % 1_000_000) < (fraction.clamp(0.0, 1.0) * 1_000_000.0) as u64
}

/// `(train, held_out)` indexes of `pairs`.
pub fn split(pairs: &[Pair], fraction: f64) -> (Vec<usize>, Vec<usize>) {
    (0..pairs.len()).partition(|&i| !is_held_out(&pairs[i].query, fraction))
}

/// Distinct texts in order of first appearance, each with its row.
#[derive(Default)]
struct DistinctTexts {
    texts: Vec<String>,
    rows: HashMap<String, u32>,
}

impl DistinctTexts {
    fn row(&mut self, t: &str) -> u32 {
        if let Some(&r) = self.rows.get(t) {
            return r;
        }
        self.texts.push(t.to_owned());
        let r = (self.texts.len() - 1) as u32;
        self.rows.insert(t.to_owned(), r);
        r
    }
}

/// The dataset's distinct texts, and for each pair the rows of its query, positive and
/// negatives among them.
pub fn texts_and_rows(pairs: &[Pair]) -> (Vec<String>, Vec<u32>, Vec<u32>, Vec<Vec<u32>>) {
    let mut texts = DistinctTexts::default();
    let (mut q, mut p, mut n) = (Vec::new(), Vec::new(), Vec::new());
    for pair in pairs {
        q.push(texts.row(&pair.query));
        p.push(texts.row(&pair.positive));
        n.push(pair.negatives.iter().map(|t| texts.row(t)).collect());
    }
    (texts.texts, q, p, n)
}

/// What the validation reports; refuses a dataset too small to train or evaluate.
pub fn summarize(
    file: &PairsFile,
    fraction: f64,
    base_model_id: &str,
) -> Result<DatasetSummary, JobError> {
    let (train, held_out) = split(&file.pairs, fraction);
    if train.len() < 2 {
        return Err(JobError::invalid(format!(
            "{} training pairs: at least 2 are needed (in-batch negatives)",
            train.len()
        )));
    }
    if held_out.is_empty() {
        return Err(JobError::invalid(format!(
            "no pair falls in the held-out split (held_out_fraction {fraction}); the \
             evaluation needs at least one"
        )));
    }
    Ok(DatasetSummary {
        pairs: file.pairs.len(),
        train: train.len(),
        held_out: held_out.len(),
        negatives: file.pairs.iter().map(|p| p.negatives.len()).sum(),
        texts: texts_and_rows(&file.pairs).0.len(),
        sha: file.sha.clone(),
        base_model_id: base_model_id.to_owned(),
    })
}

fn bytes_u32(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes the embedding table (through a temporary file), tagged with the dataset's hash.
pub fn save_table(path: &Path, table: &PairTable, sha: &str) -> std::io::Result<()> {
    let mut offsets = vec![0u32];
    let mut negatives = Vec::new();
    for n in &table.negatives {
        negatives.extend_from_slice(n);
        offsets.push(negatives.len() as u32);
    }
    let rows = table.vectors.len() / table.dim;
    let data = [
        (
            "vectors",
            Dtype::F32,
            vec![rows, table.dim],
            f32_le_bytes(&table.vectors),
        ),
        (
            "query",
            Dtype::U32,
            vec![table.query.len()],
            bytes_u32(&table.query),
        ),
        (
            "positive",
            Dtype::U32,
            vec![table.positive.len()],
            bytes_u32(&table.positive),
        ),
        (
            "neg_offsets",
            Dtype::U32,
            vec![offsets.len()],
            bytes_u32(&offsets),
        ),
        (
            "negatives",
            Dtype::U32,
            vec![negatives.len()],
            bytes_u32(&negatives),
        ),
    ];
    let views = data
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (*name, v))
                .map_err(std::io::Error::other)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let meta = HashMap::from([("sha".to_string(), sha.to_string())]);
    let out = safetensors::serialize(views, Some(meta)).map_err(std::io::Error::other)?;
    write_atomic(path, &out)
}

/// Reads the embedding table if it exists and belongs to dataset `sha`.
pub fn load_table(path: &Path, sha: &str) -> std::io::Result<Option<PairTable>> {
    let Some(bytes) = read_if_exists(path)? else {
        return Ok(None);
    };
    let bad = |m: String| invalid_data(m);
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    if header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("sha"))
        .map(String::as_str)
        != Some(sha)
    {
        return Ok(None);
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let tensor = |name: &str| st.tensor(name).map_err(|e| bad(format!("{name}: {e}")));
    let u32s = |name: &str| -> std::io::Result<Vec<u32>> {
        Ok(tensor(name)?
            .data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let vectors = tensor("vectors")?;
    let offsets = u32s("neg_offsets")?;
    let all_negatives = u32s("negatives")?;
    Ok(Some(PairTable {
        dim: *vectors
            .shape()
            .get(1)
            .ok_or_else(|| bad("vectors: not 2-D".into()))?,
        vectors: tensor_f32(&vectors).ok_or_else(|| bad("vectors: not F32".into()))?,
        query: u32s("query")?,
        positive: u32s("positive")?,
        negatives: offsets
            .windows(2)
            .map(|w| all_negatives[w[0] as usize..w[1] as usize].to_vec())
            .collect(),
    }))
}

/// Recall@k, MRR and nDCG@10 of the held-out split given the vectors of each held-out
/// query and of every held-out text it is ranked against (positives and hard negatives).
pub fn held_out_metrics(
    queries: &[Vec<f32>],
    corpus: &[Vec<f32>],
    relevant: &[usize],
    k: usize,
) -> crate::eval::Metrics {
    let dot = |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    let judged: Vec<Judged> = queries
        .iter()
        .zip(relevant)
        .map(|(q, &rel)| {
            let mut scored: Vec<(f32, usize)> = corpus
                .iter()
                .enumerate()
                .map(|(i, d)| (dot(q, d), i))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            Judged {
                ranked: scored
                    .iter()
                    .take(100)
                    .map(|(_, i)| i.to_string())
                    .collect(),
                relevant: vec![rel.to_string()],
            }
        })
        .collect();
    judge(&judged, k)
}

/// The held-out queries, the texts they are ranked against, and each query's relevant
/// text (an index into those).
pub fn held_out_corpus(pairs: &[Pair], fraction: f64) -> (Vec<String>, Vec<String>, Vec<usize>) {
    let (_, held) = split(pairs, fraction);
    let mut corpus = DistinctTexts::default();
    let mut queries = Vec::new();
    let mut relevant = Vec::new();
    for &i in &held {
        queries.push(pairs[i].query.clone());
        relevant.push(corpus.row(&pairs[i].positive) as usize);
        for n in &pairs[i].negatives {
            corpus.row(n);
        }
    }
    (queries, corpus.texts, relevant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, body: &str) -> String {
        let p = std::env::temp_dir().join(format!("vecstream-{name}-{}.jsonl", std::process::id()));
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    #[test]
    fn a_pairs_file_is_validated_line_by_line() {
        let ok = write(
            "pairs-ok",
            "{\"query\": \"q1\", \"positive\": \"p1\"}\n\n{\"query\": \"q2\", \"positive\": \"p2\", \"negatives\": [\"p1\"]}\n",
        );
        let f = load_pairs(&ok).unwrap();
        assert_eq!(f.pairs.len(), 2);
        assert_eq!(f.sha.len(), 12);
        let (texts, q, p, n) = texts_and_rows(&f.pairs);
        assert_eq!(texts, vec!["q1", "p1", "q2", "p2"]);
        assert_eq!((q, p), (vec![0, 2], vec![1, 3]));
        assert_eq!(n, vec![vec![], vec![1]], "a repeated text is one row");
        let bad = write(
            "pairs-bad",
            "{\"query\": \"q\", \"positive\": \"p\"}\n{\"query\": \"q\"}\n",
        );
        let e = load_pairs(&bad).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("positive"), "{e}");
        let empty = write("pairs-empty", "{\"query\": \" \", \"positive\": \"p\"}\n");
        assert!(
            load_pairs(&empty)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        let unknown = write(
            "pairs-unknown",
            "{\"query\": \"q\", \"positive\": \"p\", \"x\": 1}\n",
        );
        assert!(
            load_pairs(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        for p in [ok, bad, empty, unknown] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn the_split_is_stable_and_about_the_asked_fraction() {
        let pairs: Vec<Pair> = (0..2000)
            .map(|i| Pair {
                query: format!("query {i}"),
                positive: format!("doc {i}"),
                negatives: vec![],
            })
            .collect();
        let (train, held) = split(&pairs, 0.2);
        assert_eq!(train.len() + held.len(), 2000);
        assert!((300..500).contains(&held.len()), "{}", held.len());
        let mut reversed = pairs.clone();
        reversed.reverse();
        let (_, held_rev) = split(&reversed, 0.2);
        assert_eq!(held_rev.len(), held.len(), "order does not matter");
        assert!(held.iter().all(|&i| is_held_out(&pairs[i].query, 0.2)));
        let file = PairsFile {
            pairs: pairs[..3].to_vec(),
            sha: "x".into(),
        };
        assert!(
            summarize(&file, 0.0, "m")
                .unwrap_err()
                .to_string()
                .contains("held-out")
        );
    }

    #[test]
    fn held_out_metrics_rank_by_similarity() {
        let corpus = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.7, 0.7]];
        let queries = vec![vec![0.9, 0.1], vec![0.1, 0.9]];
        // The first query's relevant text ranks first; the second's ranks second.
        let m = held_out_metrics(&queries, &corpus, &[0, 2], 1);
        assert!((m.recall_at_k - 0.5).abs() < 1e-9);
        assert!((m.mrr - 0.75).abs() < 1e-9);
    }

    #[test]
    fn the_embedding_table_round_trips_for_its_dataset_only() {
        let table = PairTable {
            dim: 2,
            vectors: vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
            query: vec![0],
            positive: vec![1],
            negatives: vec![vec![2]],
        };
        let path = std::env::temp_dir().join(format!(
            "vecstream-table-{}.safetensors",
            std::process::id()
        ));
        save_table(&path, &table, "abc").unwrap();
        assert_eq!(load_table(&path, "abc").unwrap(), Some(table));
        assert_eq!(load_table(&path, "other").unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }
}
