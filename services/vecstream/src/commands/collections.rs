//! Document counts of a migration's collections, side by side: what `vecstream status` and
//! `vecstream reindex status` show to say whether the live and the other collection agree.

use serde::Serialize;
use vecstream_weaviate::WeaviateClient;

/// One collection of a migration and its documents.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionCount {
    /// `live`, `new` (being built), `previous` (kept for a rollback), `retiring`.
    pub role: &'static str,
    pub collection: String,
    /// `None` when it could not be counted (dropped, Weaviate down): `error` says why.
    pub documents: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts the documents (of `tenant`, or all) of each `(role, collection)`.
pub async fn count(
    weaviate: &WeaviateClient,
    collections: Vec<(&'static str, String)>,
    tenant: Option<&str>,
) -> Vec<CollectionCount> {
    let mut out = Vec::with_capacity(collections.len());
    for (role, collection) in collections {
        let counted = weaviate.count_documents(&collection, tenant).await;
        out.push(CollectionCount {
            role,
            documents: counted.as_ref().ok().copied(),
            error: counted.err().map(|e| e.to_string()),
            collection,
        });
    }
    out
}

/// True when every collection was counted and all hold as many documents; `None` with
/// fewer than two collections.
pub fn agree(counts: &[CollectionCount]) -> Option<bool> {
    if counts.len() < 2 {
        return None;
    }
    let first = counts[0].documents;
    Some(first.is_some() && counts.iter().all(|c| c.documents == first))
}

/// `live Chunk_a: 1020 documents, new Chunk_b: 1020 documents (agree)`.
pub fn describe(counts: &[CollectionCount]) -> String {
    let mut parts: Vec<String> = counts
        .iter()
        .map(|c| match (c.documents, &c.error) {
            (Some(n), _) => format!("{} {}: {n} documents", c.role, c.collection),
            (None, Some(e)) => format!("{} {}: not counted ({e})", c.role, c.collection),
            (None, None) => format!("{} {}: not counted", c.role, c.collection),
        })
        .collect();
    let mut line = parts.join(", ");
    match agree(counts) {
        Some(true) => line.push_str(" (agree)"),
        Some(false) => line.push_str(" (DIFFER)"),
        None => {}
    }
    if line.is_empty() {
        parts.push("no collection".into());
        line = parts.join("");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(role: &'static str, documents: Option<u64>) -> CollectionCount {
        CollectionCount {
            role,
            collection: format!("Chunk_{role}"),
            documents,
            error: None,
        }
    }

    #[test]
    fn collections_agree_only_when_all_are_counted_and_equal() {
        assert_eq!(agree(&[c("live", Some(3))]), None);
        assert_eq!(agree(&[c("live", Some(3)), c("new", Some(3))]), Some(true));
        assert_eq!(agree(&[c("live", Some(3)), c("new", Some(2))]), Some(false));
        assert_eq!(agree(&[c("live", None), c("new", None)]), Some(false));
        let line = describe(&[c("live", Some(3)), c("new", Some(2))]);
        assert_eq!(
            line,
            "live Chunk_live: 3 documents, new Chunk_new: 2 documents (DIFFER)"
        );
    }
}
