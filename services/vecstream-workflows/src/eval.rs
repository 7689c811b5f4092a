//! Retrieval metrics of a labelled query set: recall@k, MRR and nDCG@10 over document
//! rankings (chunk hits folded to their documents, first occurrence wins).

use serde::Deserialize;

/// One labelled query of a suite (JSONL line).
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledQuery {
    pub query: String,
    pub relevant_doc_ids: Vec<String>,
    /// The tenant of the relevant documents, when the run names none (`--tenant` wins).
    /// Without either, a relevant id is that id in any tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// Reads a suite; every line must be a labelled query with at least one relevant id.
pub fn load_suite(path: &str) -> Result<Vec<LabelledQuery>, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("suite {path}: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in raw
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let q: LabelledQuery =
            serde_json::from_str(line).map_err(|e| format!("suite {path} line {}: {e}", n + 1))?;
        if q.relevant_doc_ids.is_empty() {
            return Err(format!(
                "suite {path} line {}: relevant_doc_ids is empty",
                n + 1
            ));
        }
        out.push(q);
    }
    if out.is_empty() {
        return Err(format!("suite {path} has no queries"));
    }
    Ok(out)
}

/// A query's ranking (document ids, best first, may repeat) and its relevant documents.
#[derive(Debug, Clone)]
pub struct Judged {
    pub ranked: Vec<String>,
    pub relevant: Vec<String>,
}

/// Mean metrics over queries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub recall_at_k: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
}

/// Averages recall@k, MRR and nDCG@10 (binary relevance) over `judged`.
pub fn judge(judged: &[Judged], k: usize) -> Metrics {
    if judged.is_empty() {
        return Metrics {
            recall_at_k: 0.0,
            mrr: 0.0,
            ndcg_at_10: 0.0,
        };
    }
    let (mut recall, mut mrr, mut ndcg) = (0.0, 0.0, 0.0);
    for j in judged {
        let mut docs: Vec<&str> = Vec::new();
        for d in &j.ranked {
            if !docs.contains(&d.as_str()) {
                docs.push(d);
            }
        }
        let is_relevant = |d: &str| j.relevant.iter().any(|r| r == d);
        let found = docs.iter().take(k).filter(|d| is_relevant(d)).count();
        recall += found as f64 / j.relevant.len() as f64;
        if let Some(rank) = docs.iter().position(|d| is_relevant(d)) {
            mrr += 1.0 / (rank as f64 + 1.0);
        }
        let dcg: f64 = docs
            .iter()
            .take(10)
            .enumerate()
            .filter(|(_, d)| is_relevant(d))
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..j.relevant.len().min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        ndcg += dcg / ideal;
    }
    let n = judged.len() as f64;
    Metrics {
        recall_at_k: recall / n,
        mrr: mrr / n,
        ndcg_at_10: ndcg / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(ranked: &[&str], relevant: &[&str]) -> Judged {
        Judged {
            ranked: ranked.iter().map(|s| s.to_string()).collect(),
            relevant: relevant.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn metrics_of_hand_computed_rankings() {
        // Hit at rank 1: everything is 1.
        let m = judge(&[j(&["a", "b"], &["a"])], 10);
        assert_eq!((m.recall_at_k, m.mrr, m.ndcg_at_10), (1.0, 1.0, 1.0));
        // Repeated chunks of one document count once: "b" is the second document.
        let m = judge(&[j(&["a", "a", "b"], &["b"])], 1);
        assert_eq!(m.recall_at_k, 0.0);
        assert_eq!(m.mrr, 0.5);
        assert!((m.ndcg_at_10 - 1.0 / 3f64.log2()).abs() < 1e-12);
        // Two relevant, one found in the top 2; averaged with a miss.
        let m = judge(&[j(&["x", "r1", "y"], &["r1", "r2"]), j(&["x"], &["z"])], 2);
        assert_eq!(m.recall_at_k, 0.25);
        assert_eq!(m.mrr, 0.25);
    }

    #[test]
    fn suites_must_label_every_query() {
        let dir = std::env::temp_dir().join(format!("vecstream-suite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        std::fs::write(
            &good,
            "{\"query\": \"q\", \"relevant_doc_ids\": [\"d1\"]}\n\n",
        )
        .unwrap();
        assert_eq!(load_suite(good.to_str().unwrap()).unwrap().len(), 1);
        let tenanted = dir.join("tenanted.jsonl");
        std::fs::write(
            &tenanted,
            "{\"query\": \"q\", \"relevant_doc_ids\": [\"d1\"], \"tenant\": \"acme\"}\n",
        )
        .unwrap();
        let suite = load_suite(tenanted.to_str().unwrap()).unwrap();
        assert_eq!(suite[0].tenant.as_deref(), Some("acme"));
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, "{\"query\": \"q\", \"relevant_doc_ids\": []}\n").unwrap();
        assert!(
            load_suite(bad.to_str().unwrap())
                .unwrap_err()
                .contains("line 1")
        );
    }
}
