//! Search requests: nearest vectors, BM25 keywords, or both fused (Weaviate `hybrid`), with
//! property filters.

use serde_json::Value;
use uuid::Uuid;

use crate::{WeaviateClient, WeaviateError};

/// How a query finds chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest vectors only.
    Vector,
    /// BM25 keyword scores and vector similarity fused (`alpha` weighs the vector side).
    #[default]
    Hybrid,
    /// BM25 only.
    Keyword,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Vector => "vector",
            SearchMode::Hybrid => "hybrid",
            SearchMode::Keyword => "keyword",
        }
    }
}

/// How `hybrid` fuses its two rankings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fusion {
    /// Each side's scores normalised to [0, 1], then weighted (Weaviate's default).
    #[default]
    RelativeScore,
    /// Reciprocal ranks, weighted.
    Ranked,
}

/// One filter on a chunk's properties; filters of one request all apply (AND).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A text property equals the value (whole-value properties: ids, `source`).
    TextEqual { path: String, value: String },
    /// A text-array property holds the value (`metadata` holds `key=value` entries).
    Contains { path: String, value: String },
    /// A date property is at or after the RFC 3339 time.
    DateAtLeast { path: String, rfc3339: String },
}

impl Condition {
    /// The property the condition reads.
    pub fn path(&self) -> &str {
        match self {
            Condition::TextEqual { path, .. }
            | Condition::Contains { path, .. }
            | Condition::DateAtLeast { path, .. } => path,
        }
    }
}

/// One search.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub mode: SearchMode,
    /// The query's text (keyword side).
    pub text: &'a str,
    /// The query's vector (vector side); needed unless `mode` is keyword.
    pub vector: Option<&'a [f32]>,
    /// Hybrid: 1 = vector only, 0 = keywords only.
    pub alpha: f32,
    pub fusion: Fusion,
    pub limit: usize,
    /// Properties returned with each hit.
    pub properties: &'a [&'a str],
    /// Properties BM25 scores (boost with `name^2`).
    pub keyword_properties: &'a [&'a str],
    pub filters: Vec<Condition>,
    /// Weaviate tenant of a multi-tenant collection.
    pub scope: Option<&'a str>,
}

/// A hit with its score (higher is better: `1 - distance` for vectors, the BM25 or fused
/// score otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredHit {
    pub id: Uuid,
    pub score: f32,
    pub properties: serde_json::Map<String, Value>,
}

/// Properties BM25 scores: the chunk's text, the document's title and metadata.
pub const KEYWORD_PROPERTIES: [&str; 3] = ["text", "title", "metadata_text"];

/// A `--where` filter: `source=VALUE` or `metadata.KEY=VALUE`.
pub fn parse_filter(expr: &str) -> Result<Condition, String> {
    let (field, value) = expr.split_once('=').ok_or_else(|| {
        format!("{expr:?}: a filter is FIELD=VALUE (source=..., metadata.KEY=...)")
    })?;
    match field.trim() {
        "source" => Ok(Condition::TextEqual {
            path: "source".into(),
            value: value.to_owned(),
        }),
        f => match f.strip_prefix("metadata.") {
            Some(key) if !key.is_empty() => Ok(Condition::Contains {
                path: "metadata".into(),
                value: format!("{key}={value}"),
            }),
            _ => Err(format!(
                "{expr:?}: unknown field {f:?} (filters take source=... or metadata.KEY=...)"
            )),
        },
    }
}

/// The best hit of each document (by `doc_key`, else tenant and `doc_id`), in rank order,
/// at most `k`.
pub fn best_per_document(hits: Vec<ScoredHit>, k: usize) -> Vec<ScoredHit> {
    let mut seen = std::collections::HashSet::new();
    hits.into_iter()
        .filter(|h| {
            let p = &h.properties;
            let key = match p.get("doc_key").and_then(Value::as_str) {
                Some(key) => key.to_owned(),
                None => format!(
                    "{}\u{0}{}",
                    p.get("tenant").and_then(Value::as_str).unwrap_or(""),
                    p.get("doc_id").and_then(Value::as_str).unwrap_or("")
                ),
            };
            seen.insert(key)
        })
        .take(k)
        .collect()
}

/// A GraphQL string literal.
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn condition(c: &Condition) -> String {
    match c {
        Condition::TextEqual { path, value } => format!(
            "{{path: [{}], operator: Equal, valueText: {}}}",
            lit(path),
            lit(value)
        ),
        Condition::Contains { path, value } => format!(
            "{{path: [{}], operator: ContainsAny, valueText: [{}]}}",
            lit(path),
            lit(value)
        ),
        Condition::DateAtLeast { path, rfc3339 } => format!(
            "{{path: [{}], operator: GreaterThanEqual, valueDate: {}}}",
            lit(path),
            lit(rfc3339)
        ),
    }
}

/// The `where` argument of `filters` (empty when there are none).
pub fn where_argument(filters: &[Condition]) -> String {
    match filters {
        [] => String::new(),
        [one] => format!(", where: {}", condition(one)),
        many => format!(
            ", where: {{operator: And, operands: [{}]}}",
            many.iter().map(condition).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl SearchQuery<'_> {
    /// The GraphQL `Get` of this search on `collection`.
    pub fn graphql(&self, collection: &str) -> Result<String, WeaviateError> {
        let vector = || -> Result<String, WeaviateError> {
            let v = self.vector.ok_or_else(|| WeaviateError::Unexpected {
                what: "search".into(),
                message: format!("a {} search needs the query's vector", self.mode.as_str()),
            })?;
            serde_json::to_string(v).map_err(|e| WeaviateError::Unexpected {
                what: "search".into(),
                message: e.to_string(),
            })
        };
        // No list means every text property.
        let keyword_properties = match self.keyword_properties {
            [] => String::new(),
            ps => format!(
                ", properties: [{}]",
                ps.iter().map(|p| lit(p)).collect::<Vec<_>>().join(", ")
            ),
        };
        let (search, extra) = match self.mode {
            SearchMode::Vector => (format!("nearVector: {{vector: {}}}", vector()?), "distance"),
            SearchMode::Keyword => (
                format!("bm25: {{query: {}{keyword_properties}}}", lit(self.text)),
                "score",
            ),
            SearchMode::Hybrid => (
                format!(
                    "hybrid: {{query: {}, vector: {}, alpha: {}, fusionType: {}{keyword_properties}}}",
                    lit(self.text),
                    vector()?,
                    self.alpha.clamp(0.0, 1.0),
                    match self.fusion {
                        Fusion::RelativeScore => "relativeScoreFusion",
                        Fusion::Ranked => "rankedFusion",
                    }
                ),
                "score",
            ),
        };
        let tenant = match self.scope {
            Some(t) => format!("tenant: {}, ", lit(t)),
            None => String::new(),
        };
        Ok(format!(
            "{{ Get {{ {collection}({tenant}{search}, limit: {}{}) {{ {} _additional {{ id {extra} }} }} }} }}",
            self.limit.max(1),
            where_argument(&self.filters),
            self.properties.join(" ")
        ))
    }
}

impl WeaviateClient {
    /// Runs `query` on `collection` (its own name: Weaviate refuses filters on aliases).
    /// A multi-tenant collection's tenant that has no objects yet answers no hits.
    pub async fn search(
        &self,
        collection: &str,
        query: &SearchQuery<'_>,
    ) -> Result<Vec<ScoredHit>, WeaviateError> {
        // Collections written by earlier releases lack the newer properties until a sink
        // adds them: ask only for what this one has, and refuse a filter it cannot answer.
        let present = self.property_names(collection).await?;
        let has = |p: &&str| present.contains(p.split('^').next().unwrap_or(p));
        if let Some(missing) = query.filters.iter().map(Condition::path).find(|p| !has(p)) {
            return Err(WeaviateError::Unexpected {
                what: "search".into(),
                message: format!(
                    "collection {collection} has no property `{missing}` to filter on: it was \
                     written by an earlier release; a running sink adds the property and fills \
                     it for documents written from then on (a reindex fills it for all)"
                ),
            });
        }
        let properties: Vec<&str> = query.properties.iter().copied().filter(has).collect();
        let keyword_properties: Vec<&str> = query
            .keyword_properties
            .iter()
            .copied()
            .filter(has)
            .collect();
        let query = &SearchQuery {
            properties: &properties,
            keyword_properties: &keyword_properties,
            filters: query.filters.clone(),
            ..*query
        };
        let gql = query.graphql(collection)?;
        let data = match self.graphql(&gql, "search").await {
            Err(e) if query.scope.is_some() && crate::is_tenant_not_found(&e) => {
                return Ok(Vec::new());
            }
            other => other?,
        };
        let rows = data
            .pointer(&format!("/Get/{collection}"))
            .and_then(Value::as_array)
            .ok_or_else(|| WeaviateError::Unexpected {
                what: "search".into(),
                message: data.to_string(),
            })?;
        rows.iter()
            .map(|row| {
                let (id, extra, props) = crate::client::split_hit(row);
                // GraphQL answers `score` as a string, `distance` as a number.
                let number = |v: &Value| match v {
                    Value::String(s) => s.parse::<f64>().ok(),
                    other => other.as_f64(),
                };
                let score = match query.mode {
                    SearchMode::Vector => extra.get("distance").and_then(number).map(|d| 1.0 - d),
                    _ => extra.get("score").and_then(number),
                };
                match (id, score) {
                    (Some(id), Some(score)) => Ok(ScoredHit {
                        id,
                        score: score as f32,
                        properties: props,
                    }),
                    _ => Err(WeaviateError::Unexpected {
                        what: "search".into(),
                        message: format!("hit without id or score: {row}"),
                    }),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_with_filters_renders_graphql_with_escaped_values() {
        let q = SearchQuery {
            mode: SearchMode::Hybrid,
            text: "error \"E4021\"",
            vector: Some(&[0.5, -0.25]),
            alpha: 0.4,
            fusion: Fusion::Ranked,
            limit: 20,
            properties: &["doc_id", "text"],
            keyword_properties: &["text", "title^2"],
            filters: vec![
                Condition::TextEqual {
                    path: "source".into(),
                    value: "crm".into(),
                },
                Condition::Contains {
                    path: "metadata".into(),
                    value: "team=billing".into(),
                },
            ],
            scope: Some("acme"),
        };
        let g = q.graphql("Chunk_m_1").unwrap();
        assert!(g.contains("Chunk_m_1(tenant: \"acme\", hybrid: {query: \"error \\\"E4021\\\"\", vector: [0.5,-0.25], alpha: 0.4, fusionType: rankedFusion, properties: [\"text\", \"title^2\"]}, limit: 20"), "{g}");
        assert!(g.contains("where: {operator: And, operands: [{path: [\"source\"], operator: Equal, valueText: \"crm\"}, {path: [\"metadata\"], operator: ContainsAny, valueText: [\"team=billing\"]}]}"), "{g}");
        assert!(g.contains("_additional { id score }"), "{g}");
        let vector = SearchQuery {
            mode: SearchMode::Vector,
            filters: vec![],
            scope: None,
            ..q.clone()
        };
        let g = vector.graphql("C").unwrap();
        assert!(
            g.contains("nearVector: {vector: [0.5,-0.25]}, limit: 20)"),
            "{g}"
        );
        assert!(g.contains("_additional { id distance }"), "{g}");
        let keyword = SearchQuery {
            mode: SearchMode::Keyword,
            vector: None,
            ..q
        };
        assert!(keyword.graphql("C").unwrap().contains("bm25: {query:"));
    }
}
