use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;
use vecstream_config::WeaviateConfig;

use crate::WeaviateError;
use crate::error::ObjectError;
use crate::schema::CollectionSpec;

/// One object of a batch upsert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchObject {
    #[serde(rename = "class")]
    pub collection: String,
    pub id: Uuid,
    pub properties: Value,
    pub vector: Vec<f32>,
}

/// Result of a batch: which ids were written and which failed, with Weaviate's reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    pub written: Vec<Uuid>,
    pub failed: Vec<(Uuid, ObjectError)>,
}

/// Most chunks one document may have in a collection (the sink's limit is lower).
pub const MAX_CHUNKS_PER_DOC: usize = 10_000;

/// One stored chunk of a document, as the sink needs it for fencing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredChunk {
    pub id: Uuid,
    pub chunk_index: i64,
    pub doc_version: i64,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    /// Cosine distance (0 = identical direction).
    pub distance: f32,
    pub properties: serde_json::Map<String, Value>,
}

/// Weaviate REST client; cheap to clone.
#[derive(Debug, Clone)]
pub struct WeaviateClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

impl WeaviateClient {
    /// A client for `cfg.url`.
    pub fn new(cfg: &WeaviateConfig) -> Result<Self, WeaviateError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .build()
            .map_err(|e| WeaviateError::Unreachable {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
        let api_key = (!cfg.api_key.is_empty()).then(|| cfg.api_key.expose().to_owned());
        Ok(Self {
            base: cfg.url.trim_end_matches('/').to_owned(),
            http,
            api_key,
        })
    }

    /// Base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Readiness probe (`/v1/.well-known/ready`) and server version (`/v1/meta`).
    pub async fn version(&self) -> Result<String, WeaviateError> {
        self.call(
            reqwest::Method::GET,
            "/v1/.well-known/ready",
            None,
            "readiness",
        )
        .await?;
        let meta = self
            .call(reqwest::Method::GET, "/v1/meta", None, "meta")
            .await?;
        Ok(meta
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned())
    }

    /// Creates the collection unless it exists. Returns true when it was created.
    pub async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<bool, WeaviateError> {
        if self.collection_exists(&spec.name).await? {
            return Ok(false);
        }
        let body = json!({
            "class": spec.name,
            "vectorizer": "none",
            "vectorIndexConfig": { "distance": spec.distance },
            "properties": spec.properties,
        });
        match self
            .call(
                reqwest::Method::POST,
                "/v1/schema",
                Some(body),
                "create collection",
            )
            .await
        {
            Ok(_) => Ok(true),
            // Another process created it between our check and our create.
            Err(WeaviateError::Status {
                status: 422, body, ..
            }) if body.contains("already exists") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// True when the collection exists.
    pub async fn collection_exists(&self, name: &str) -> Result<bool, WeaviateError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("/v1/schema/{name}"),
                None,
                "get collection",
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(WeaviateError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The names of every collection (class) Weaviate holds.
    pub async fn list_collections(&self) -> Result<Vec<String>, WeaviateError> {
        let what = "list collections";
        let schema = self
            .call(reqwest::Method::GET, "/v1/schema", None, what)
            .await?;
        Ok(schema
            .get("classes")
            .and_then(Value::as_array)
            .map(|classes| {
                classes
                    .iter()
                    .filter_map(|c| c.get("class")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// How the stored schema of `spec.name` differs from `spec` (see
    /// [`CollectionSpec::differences`]); `None` when the collection does not exist.
    pub async fn schema_differences(
        &self,
        spec: &CollectionSpec,
    ) -> Result<Option<Vec<String>>, WeaviateError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("/v1/schema/{}", spec.name),
                None,
                "get collection",
            )
            .await
        {
            Ok(class) => {
                let properties = class
                    .get("properties")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Ok(Some(spec.differences(&properties)))
            }
            Err(WeaviateError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Documents in a collection: its objects with `chunk_index` 0 (every document has
    /// one), optionally of one tenant.
    pub async fn count_documents(
        &self,
        collection: &str,
        tenant: Option<&str>,
    ) -> Result<u64, WeaviateError> {
        let mut operands =
            vec![r#"{path: ["chunk_index"], operator: Equal, valueInt: 0}"#.to_owned()];
        if let Some(t) = tenant {
            operands.push(format!(
                r#"{{path: ["tenant"], operator: Equal, valueText: {}}}"#,
                serde_json::to_string(t).unwrap_or_default()
            ));
        }
        let query = format!(
            "{{ Aggregate {{ {collection}(where: {{operator: And, operands: [{}]}}) {{ meta {{ count }} }} }} }}",
            operands.join(", ")
        );
        let data = self.graphql(&query, "count documents").await?;
        data.pointer(&format!("/Aggregate/{collection}/0/meta/count"))
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("count documents", &data.to_string()))
    }

    /// Deletes the collection and its objects (absent is fine).
    pub async fn delete_collection(&self, name: &str) -> Result<(), WeaviateError> {
        match self
            .call(
                reqwest::Method::DELETE,
                &format!("/v1/schema/{name}"),
                None,
                "delete collection",
            )
            .await
        {
            Ok(_) | Err(WeaviateError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Writes objects by id (create or replace); each object's failure is reported apart.
    pub async fn upsert_batch(
        &self,
        objects: &[BatchObject],
    ) -> Result<BatchOutcome, WeaviateError> {
        let what = "batch upsert";
        let resp = self
            .call(
                reqwest::Method::POST,
                "/v1/batch/objects",
                Some(json!({ "objects": objects })),
                what,
            )
            .await?;
        let items = resp
            .as_array()
            .ok_or_else(|| unexpected(what, "not an array"))?;
        let mut outcome = BatchOutcome::default();
        for item in items {
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| unexpected(what, "object without id"))?;
            let errors: Vec<String> = item
                .pointer("/result/errors/error")
                .and_then(Value::as_array)
                .map(|errs| {
                    errs.iter()
                        .filter_map(|e| e.get("message")?.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if errors.is_empty() {
                outcome.written.push(id);
            } else {
                outcome
                    .failed
                    .push((id, ObjectError::new(errors.join("; "))));
            }
        }
        Ok(outcome)
    }

    /// Number of objects in a collection (or alias).
    pub async fn count(&self, collection: &str) -> Result<u64, WeaviateError> {
        let query = format!("{{ Aggregate {{ {collection} {{ meta {{ count }} }} }} }}");
        let data = self.graphql(&query, "count").await?;
        data.pointer(&format!("/Aggregate/{collection}/0/meta/count"))
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("count", &data.to_string()))
    }

    /// The `k` nearest objects to `vector` in `collection` (or alias), with `properties`.
    pub async fn near_vector(
        &self,
        collection: &str,
        vector: &[f32],
        k: usize,
        properties: &[&str],
    ) -> Result<Vec<Hit>, WeaviateError> {
        self.near_vector_where(collection, vector, k, properties, None)
            .await
    }

    /// [`Self::near_vector`] among the objects whose text property `equal.0` equals
    /// `equal.1`. Filters need the collection's own name: Weaviate rejects them on aliases.
    pub async fn near_vector_where(
        &self,
        collection: &str,
        vector: &[f32],
        k: usize,
        properties: &[&str],
        equal: Option<(&str, &str)>,
    ) -> Result<Vec<Hit>, WeaviateError> {
        let vector =
            serde_json::to_string(vector).map_err(|e| unexpected("near_vector", &e.to_string()))?;
        let filter = match equal {
            Some((path, value)) => {
                let value = serde_json::to_string(value)
                    .map_err(|e| unexpected("near_vector", &e.to_string()))?;
                format!(", where: {{path: [\"{path}\"], operator: Equal, valueText: {value}}}")
            }
            None => String::new(),
        };
        let query = format!(
            "{{ Get {{ {collection}(nearVector: {{vector: {vector}}}, limit: {k}{filter}) {{ {} _additional {{ id distance }} }} }} }}",
            properties.join(" ")
        );
        let data = self.graphql(&query, "nearVector search").await?;
        let rows = data
            .pointer(&format!("/Get/{collection}"))
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("nearVector search", &data.to_string()))?;
        rows.iter()
            .map(|row| {
                let mut props = row.as_object().cloned().unwrap_or_default();
                let extra = props.remove("_additional").unwrap_or(Value::Null);
                let id = extra
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok());
                let distance = extra.get("distance").and_then(Value::as_f64);
                match (id, distance) {
                    (Some(id), Some(d)) => Ok(Hit {
                        id,
                        distance: d as f32,
                        properties: props,
                    }),
                    _ => Err(unexpected(
                        "nearVector search",
                        "hit without id or distance",
                    )),
                }
            })
            .collect()
    }

    /// The stored chunks of one document in `collection`: id, `chunk_index`, `doc_version`.
    /// What version fencing and stale-chunk deletion decide from.
    pub async fn doc_chunks(
        &self,
        collection: &str,
        doc_id: &str,
    ) -> Result<Vec<StoredChunk>, WeaviateError> {
        Ok(self
            .docs_chunks(collection, &[doc_id])
            .await?
            .remove(doc_id)
            .unwrap_or_default())
    }

    /// [`Self::doc_chunks`] of several documents in one query (documents without chunks are
    /// absent from the map). An answer that fills the query's limit may be cut short, so it
    /// is asked again document by document.
    pub async fn docs_chunks(
        &self,
        collection: &str,
        doc_ids: &[&str],
    ) -> Result<HashMap<String, Vec<StoredChunk>>, WeaviateError> {
        let what = "read documents' chunks";
        let mut out: HashMap<String, Vec<StoredChunk>> = HashMap::new();
        if doc_ids.is_empty() {
            return Ok(out);
        }
        let ids = serde_json::to_string(doc_ids).map_err(|e| unexpected(what, &e.to_string()))?;
        let query = format!(
            "{{ Get {{ {collection}(where: {{path: [\"doc_id\"], operator: ContainsAny, valueText: {ids}}}, limit: {MAX_CHUNKS_PER_DOC}) {{ doc_id chunk_index doc_version _additional {{ id }} }} }} }}"
        );
        let data = self.graphql(&query, what).await?;
        let rows = data
            .pointer(&format!("/Get/{collection}"))
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected(what, &data.to_string()))?;
        if rows.len() >= MAX_CHUNKS_PER_DOC && doc_ids.len() > 1 {
            for id in doc_ids {
                let one = Box::pin(self.docs_chunks(collection, &[id])).await?;
                out.extend(one);
            }
            return Ok(out);
        }
        for row in rows {
            let id = row
                .pointer("/_additional/id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok());
            let doc_id = row.get("doc_id").and_then(Value::as_str);
            let index = row.get("chunk_index").and_then(Value::as_i64);
            // `number` property: JSON may render it with a fraction or an exponent.
            let version = row
                .get("doc_version")
                .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
            let (Some(id), Some(doc_id), Some(chunk_index), Some(doc_version)) =
                (id, doc_id, index, version)
            else {
                return Err(unexpected(what, &row.to_string()));
            };
            out.entry(doc_id.to_owned()).or_default().push(StoredChunk {
                id,
                chunk_index,
                doc_version,
            });
        }
        Ok(out)
    }

    /// Deletes the chunks of `doc_id` whose `chunk_index >= from_index` (0 = all of them);
    /// returns how many were deleted.
    pub async fn delete_doc_chunks_from(
        &self,
        collection: &str,
        doc_id: &str,
        from_index: i64,
    ) -> Result<u64, WeaviateError> {
        let body = json!({
            "match": {
                "class": collection,
                "where": {
                    "operator": "And",
                    "operands": [
                        { "path": ["doc_id"], "operator": "Equal", "valueText": doc_id },
                        { "path": ["chunk_index"], "operator": "GreaterThanEqual", "valueInt": from_index },
                    ],
                },
            },
            "output": "minimal",
        });
        let resp = self
            .call(
                reqwest::Method::DELETE,
                "/v1/batch/objects",
                Some(body),
                "delete stale chunks",
            )
            .await?;
        Ok(resp
            .pointer("/results/successful")
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// Points `alias` at `collection`, creating the alias if needed.
    pub async fn set_alias(&self, alias: &str, collection: &str) -> Result<(), WeaviateError> {
        let path = format!("/v1/aliases/{alias}");
        match self
            .call(
                reqwest::Method::PUT,
                &path,
                Some(json!({ "class": collection })),
                "repoint alias",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(WeaviateError::Status { status: 404, .. }) => {
                let body = json!({ "alias": alias, "class": collection });
                self.call(
                    reqwest::Method::POST,
                    "/v1/aliases",
                    Some(body),
                    "create alias",
                )
                .await
                .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// The collection `alias` points at, if the alias exists.
    pub async fn resolve_alias(&self, alias: &str) -> Result<Option<String>, WeaviateError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("/v1/aliases/{alias}"),
                None,
                "get alias",
            )
            .await
        {
            Ok(v) => Ok(v.get("class").and_then(Value::as_str).map(str::to_owned)),
            Err(WeaviateError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The aliases that point at `collection`.
    pub async fn aliases_of(&self, collection: &str) -> Result<Vec<String>, WeaviateError> {
        let all = self
            .call(reqwest::Method::GET, "/v1/aliases", None, "list aliases")
            .await?;
        Ok(all
            .get("aliases")
            .and_then(Value::as_array)
            .map(|aliases| {
                aliases
                    .iter()
                    .filter(|a| a.get("class").and_then(Value::as_str) == Some(collection))
                    .filter_map(|a| a.get("alias")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes `alias` (absent is fine).
    pub async fn delete_alias(&self, alias: &str) -> Result<(), WeaviateError> {
        match self
            .call(
                reqwest::Method::DELETE,
                &format!("/v1/aliases/{alias}"),
                None,
                "delete alias",
            )
            .await
        {
            Ok(_) | Err(WeaviateError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn graphql(&self, query: &str, what: &str) -> Result<Value, WeaviateError> {
        let resp = self
            .call(
                reqwest::Method::POST,
                "/v1/graphql",
                Some(json!({ "query": query })),
                what,
            )
            .await?;
        if let Some(errors) = resp
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let message = errors
                .iter()
                .filter_map(|e| e.get("message")?.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(WeaviateError::GraphQl {
                what: what.to_owned(),
                message,
            });
        }
        resp.get("data")
            .cloned()
            .ok_or_else(|| unexpected(what, "no data"))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, WeaviateError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let unreachable = |e: reqwest::Error| WeaviateError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(WeaviateError::Status {
                status: status.as_u16(),
                what: what.to_owned(),
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| unexpected(what, &format!("{e}: {text}")))
    }
}

fn unexpected(what: &str, message: &str) -> WeaviateError {
    WeaviateError::Unexpected {
        what: what.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Property, collection_name};

    #[test]
    fn collection_names_are_valid_class_names_and_distinct() {
        let a = collection_name("all-MiniLM-L6-v2@3f2a9c1b");
        assert!(a.starts_with("Chunk_all_minilm_l6_v2_3f2a9c1b_"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(a.len(), "Chunk_all_minilm_l6_v2_3f2a9c1b_".len() + 8);
        // Names that slug alike still differ by the hash.
        assert_ne!(collection_name("a-b"), collection_name("a_b"));
        assert_eq!(collection_name("m"), collection_name("m"));
    }

    #[test]
    fn batch_objects_serialise_as_weaviate_expects() {
        let obj = BatchObject {
            collection: "C".into(),
            id: Uuid::nil(),
            properties: json!({"text": "t"}),
            vector: vec![0.25],
        };
        let v = serde_json::to_value(&obj).unwrap();
        assert_eq!(v["class"], "C");
        assert_eq!(v["vector"][0], 0.25);
        assert_eq!(
            Property::keyword("doc_id").tokenization.as_deref(),
            Some("field")
        );
    }
}
