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
    /// The Weaviate tenant it belongs to (multi-tenant collections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
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
#[derive(Clone)]
pub struct WeaviateClient {
    base: String,
    http: reqwest::Client,
    api_key: Option<String>,
}

/// Names the URL and whether an API key is set, never the key.
impl std::fmt::Debug for WeaviateClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeaviateClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl WeaviateClient {
    /// A client for `cfg.url`.
    pub fn new(cfg: &WeaviateConfig) -> Result<Self, WeaviateError> {
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_millis(cfg.request_timeout_ms));
        if !cfg.tls_ca_cert.is_empty() {
            // The CA of a private deployment, on top of the system's.
            let ca = std::fs::read(&cfg.tls_ca_cert)
                .map_err(|e| e.to_string())
                .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
                .map_err(|message| WeaviateError::Unreachable {
                    url: cfg.url.clone(),
                    message: format!("weaviate.tls_ca_cert {}: {message}", cfg.tls_ca_cert),
                })?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().map_err(|e| WeaviateError::Unreachable {
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

    /// A component's first contact: an authenticated request (`/v1/meta`). A refused API
    /// key or an untrusted certificate is [`WeaviateError::Access`] (a configuration
    /// problem: said at start, not retried); Weaviate down or answering otherwise is not an
    /// error here (the caller's writes retry until it is back).
    pub async fn check_access(&self) -> Result<(), WeaviateError> {
        let access = |reason: String| WeaviateError::Access {
            url: self.base.clone(),
            reason,
        };
        match self
            .call(reqwest::Method::GET, "/v1/meta", None, "meta")
            .await
        {
            Err(WeaviateError::Status {
                status: status @ (401 | 403),
                body,
                ..
            }) => Err(access(format!(
                "refused {} ({status}: {}); check weaviate.api_key",
                if self.api_key.is_some() {
                    "the API key"
                } else {
                    "anonymous access"
                },
                body.trim()
            ))),
            Err(WeaviateError::Unreachable { message, .. }) if message.contains("certificate") => {
                Err(access(format!(
                    "TLS failed ({message}); check weaviate.tls_ca_cert (the CA that signs \
                     Weaviate's certificate)"
                )))
            }
            Err(e) => {
                tracing::warn!(url = %self.base, error = %e, "weaviate not answering yet");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// Creates the collection unless it exists. Returns true when it was created.
    pub async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<bool, WeaviateError> {
        if self.collection_exists(&spec.name).await? {
            return Ok(false);
        }
        let multi_tenant = spec.tenancy == crate::Tenancy::MultiTenant;
        let body = json!({
            "class": spec.name,
            "vectorizer": "none",
            "vectorIndexConfig": { "distance": spec.distance },
            "properties": spec.properties,
            // Tenants appear with their first object and stay active.
            "multiTenancyConfig": {
                "enabled": multi_tenant,
                "autoTenantCreation": multi_tenant,
                "autoTenantActivation": multi_tenant,
            },
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
                // Properties a later release added go into the collection in place; what
                // is written before has none (a reindex fills them).
                for p in spec.missing_added(&class) {
                    match self
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/schema/{}/properties", spec.name),
                            Some(serde_json::to_value(p).unwrap_or_default()),
                            "add property",
                        )
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(collection = %spec.name, property = %p.name, "property added")
                        }
                        // Another process added it meanwhile.
                        Err(WeaviateError::Status {
                            status: 422, body, ..
                        }) if body.contains("already exists") => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Some(spec.differences(&class)))
            }
            Err(WeaviateError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Documents in a collection: its objects with `chunk_index` 0 (every document has
    /// one), optionally of one tenant. In a multi-tenant collection (as Weaviate describes
    /// it: a migration may move between tenancies) a tenant's own objects are counted, and
    /// without a tenant every tenant's.
    pub async fn count_documents(
        &self,
        collection: &str,
        tenant: Option<&str>,
    ) -> Result<u64, WeaviateError> {
        if self.tenancy_of(collection).await? == crate::Tenancy::MultiTenant {
            let tenants = match tenant {
                Some(t) => vec![t.to_owned()],
                None => self.tenants(collection).await?,
            };
            let mut total = 0;
            for t in &tenants {
                total += self
                    .count_documents_where(collection, Some(t), None)
                    .await?;
            }
            return Ok(total);
        }
        self.count_documents_where(collection, None, tenant).await
    }

    /// Documents of a collection (of one Weaviate tenant `scope`), optionally filtered on
    /// the `tenant` property.
    async fn count_documents_where(
        &self,
        collection: &str,
        scope: Option<&str>,
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
            "{{ Aggregate {{ {collection}({}where: {{operator: And, operands: [{}]}}) {{ meta {{ count }} }} }} }}",
            tenant_argument(scope),
            operands.join(", ")
        );
        let data = match self.graphql(&query, "count documents").await {
            Err(e) if is_tenant_not_found(&e) => return Ok(0),
            other => other?,
        };
        data.pointer(&format!("/Aggregate/{collection}/0/meta/count"))
            .and_then(Value::as_u64)
            .ok_or_else(|| unexpected("count documents", &data.to_string()))
    }

    /// An existing collection's definition (`GET /v1/schema/{collection}`).
    async fn get_collection(&self, collection: &str) -> Result<Value, WeaviateError> {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/schema/{collection}"),
            None,
            "get collection",
        )
        .await
    }

    /// How an existing collection keeps tenants apart (multi-tenancy on or off).
    pub async fn tenancy_of(&self, collection: &str) -> Result<crate::Tenancy, WeaviateError> {
        let class = self.get_collection(collection).await?;
        let enabled = class
            .pointer("/multiTenancyConfig/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(crate::Tenancy::from_config(enabled))
    }

    /// The names of an existing collection's properties.
    pub async fn property_names(
        &self,
        collection: &str,
    ) -> Result<std::collections::BTreeSet<String>, WeaviateError> {
        let class = self.get_collection(collection).await?;
        Ok(class
            .get("properties")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("name")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The Weaviate tenants of a multi-tenant collection.
    pub async fn tenants(&self, collection: &str) -> Result<Vec<String>, WeaviateError> {
        let what = "list tenants";
        let listed = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/schema/{collection}/tenants"),
                None,
                what,
            )
            .await?;
        Ok(listed
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| t.get("name")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
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
        self.near_vector_where(collection, vector, k, properties, None, None)
            .await
    }

    /// [`Self::near_vector`] among the objects whose text property `equal.0` equals
    /// `equal.1`, in the Weaviate tenant `scope` (multi-tenant collections; a tenant with no
    /// objects yet answers no hits). Filters need the collection's own name: Weaviate
    /// rejects them on aliases.
    pub async fn near_vector_where(
        &self,
        collection: &str,
        vector: &[f32],
        k: usize,
        properties: &[&str],
        equal: Option<(&str, &str)>,
        scope: Option<&str>,
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
            "{{ Get {{ {collection}({}nearVector: {{vector: {vector}}}, limit: {k}{filter}) {{ {} _additional {{ id distance }} }} }} }}",
            tenant_argument(scope),
            properties.join(" ")
        );
        let data = match self.graphql(&query, "nearVector search").await {
            Err(e) if scope.is_some() && is_tenant_not_found(&e) => return Ok(Vec::new()),
            other => other?,
        };
        let rows = data
            .pointer(&format!("/Get/{collection}"))
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("nearVector search", &data.to_string()))?;
        rows.iter()
            .map(|row| {
                let (id, extra, props) = split_hit(row);
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

    /// The stored chunks of one document (by its exact key, `vecstream_core::doc_key`) in
    /// `collection` (Weaviate tenant `scope`): id, `chunk_index`, `doc_version`. What
    /// version fencing and stale-chunk deletion decide from.
    pub async fn doc_chunks(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_key: &str,
    ) -> Result<Vec<StoredChunk>, WeaviateError> {
        Ok(self
            .docs_chunks(collection, scope, &[doc_key])
            .await?
            .remove(doc_key)
            .unwrap_or_default())
    }

    /// [`Self::doc_chunks`] of several documents in one query, keyed by `doc_key`
    /// (documents without chunks are absent from the map). An answer that fills the
    /// query's limit may be cut short, so it is asked again document by document.
    pub async fn docs_chunks(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_keys: &[&str],
    ) -> Result<HashMap<String, Vec<StoredChunk>>, WeaviateError> {
        let what = "read documents' chunks";
        let mut out: HashMap<String, Vec<StoredChunk>> = HashMap::new();
        if doc_keys.is_empty() {
            return Ok(out);
        }
        let keys = serde_json::to_string(doc_keys).map_err(|e| unexpected(what, &e.to_string()))?;
        let query = format!(
            "{{ Get {{ {collection}({}where: {{path: [\"doc_key\"], operator: ContainsAny, valueText: {keys}}}, limit: {MAX_CHUNKS_PER_DOC}) {{ doc_key chunk_index doc_version _additional {{ id }} }} }} }}",
            tenant_argument(scope)
        );
        let data = match self.graphql(&query, what).await {
            // A tenant made on first write holds nothing before it.
            Err(e) if scope.is_some() && is_tenant_not_found(&e) => return Ok(out),
            other => other?,
        };
        let rows = data
            .pointer(&format!("/Get/{collection}"))
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected(what, &data.to_string()))?;
        if rows.len() >= MAX_CHUNKS_PER_DOC && doc_keys.len() > 1 {
            for key in doc_keys {
                let one = Box::pin(self.docs_chunks(collection, scope, &[key])).await?;
                out.extend(one);
            }
            return Ok(out);
        }
        for row in rows {
            let id = row
                .pointer("/_additional/id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok());
            let doc_key = row.get("doc_key").and_then(Value::as_str);
            let index = row.get("chunk_index").and_then(Value::as_i64);
            let version = row
                .get("doc_version")
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<i64>().ok());
            let (Some(id), Some(doc_key), Some(chunk_index), Some(doc_version)) =
                (id, doc_key, index, version)
            else {
                return Err(unexpected(what, &row.to_string()));
            };
            out.entry(doc_key.to_owned())
                .or_default()
                .push(StoredChunk {
                    id,
                    chunk_index,
                    doc_version,
                });
        }
        Ok(out)
    }

    /// Deletes the chunks of the document `doc_key` (exact key) whose `chunk_index >=
    /// from_index` (0 = all of them), in Weaviate tenant `scope`; returns how many were
    /// deleted.
    pub async fn delete_doc_chunks_from(
        &self,
        collection: &str,
        scope: Option<&str>,
        doc_key: &str,
        from_index: i64,
    ) -> Result<u64, WeaviateError> {
        let body = json!({
            "match": {
                "class": collection,
                "where": {
                    "operator": "And",
                    "operands": [
                        { "path": ["doc_key"], "operator": "Equal", "valueText": doc_key },
                        { "path": ["chunk_index"], "operator": "GreaterThanEqual", "valueInt": from_index },
                    ],
                },
            },
            "output": "minimal",
        });
        let path = match scope {
            Some(t) => format!("/v1/batch/objects?tenant={}", urlencode(t)),
            None => "/v1/batch/objects".to_owned(),
        };
        // One call deletes at most Weaviate's query limit (`results.limit`): call again
        // while a call reached it. Any object that failed fails the whole delete, which the
        // caller retries (the call is idempotent: what is gone no longer matches).
        let mut total = 0;
        loop {
            let resp = match self
                .call(
                    reqwest::Method::DELETE,
                    &path,
                    Some(body.clone()),
                    "delete stale chunks",
                )
                .await
            {
                Err(e) if scope.is_some() && is_tenant_not_found(&e) => return Ok(total),
                other => other?,
            };
            let count = |name: &str| {
                resp.pointer(&format!("/results/{name}"))
                    .and_then(Value::as_u64)
            };
            let matched = count("matches").unwrap_or(0);
            let deleted = count("successful").unwrap_or(0);
            let failed = count("failed").unwrap_or(0);
            total += deleted;
            if failed > 0 || deleted < matched {
                return Err(WeaviateError::PartialDelete {
                    what: format!("deleting chunks of {doc_key} from {collection}"),
                    matched,
                    deleted,
                    failed,
                });
            }
            match count("limit") {
                Some(limit) if matched >= limit && matched > 0 => continue,
                _ => return Ok(total),
            }
        }
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

    pub(crate) async fn graphql(&self, query: &str, what: &str) -> Result<Value, WeaviateError> {
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
            message: vecstream_core::error_chain(&e),
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

/// The GraphQL `tenant:` argument for a Weaviate tenant, or nothing.
fn tenant_argument(scope: Option<&str>) -> String {
    match scope {
        Some(t) => format!("tenant: {}, ", serde_json::to_string(t).unwrap_or_default()),
        None => String::new(),
    }
}

/// Percent-encodes a query parameter (Weaviate tenant names are `[A-Za-z0-9_-]`; anything
/// else is escaped rather than trusted).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// True when Weaviate says a tenant does not exist: a multi-tenant collection makes its
/// tenants on their first write, so before it the tenant holds nothing.
pub fn is_tenant_not_found(e: &WeaviateError) -> bool {
    let text = match e {
        WeaviateError::Status { body, .. } => body.as_str(),
        WeaviateError::GraphQl { message, .. } => message.as_str(),
        _ => return false,
    };
    text.contains("tenant not found")
}

fn unexpected(what: &str, message: &str) -> WeaviateError {
    WeaviateError::Unexpected {
        what: what.to_owned(),
        message: message.to_owned(),
    }
}

/// A GraphQL `Get` row: its object id, its `_additional` and its properties.
pub(crate) fn split_hit(row: &Value) -> (Option<Uuid>, Value, serde_json::Map<String, Value>) {
    let mut props = row.as_object().cloned().unwrap_or_default();
    let extra = props.remove("_additional").unwrap_or(Value::Null);
    let id = extra
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    (id, extra, props)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Property, Tenancy, collection_name};

    #[test]
    fn debug_output_never_shows_the_api_key() {
        let cfg = vecstream_config::WeaviateConfig {
            api_key: vecstream_config::Secret::new("wv-key-123456"),
            ..Default::default()
        };
        let shown = format!("{:?}", WeaviateClient::new(&cfg).unwrap());
        assert!(!shown.contains("wv-key-123456"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn collection_names_are_valid_class_names_and_distinct() {
        let f = Tenancy::Filter;
        let a = collection_name("all-MiniLM-L6-v2@3f2a9c1b", f);
        assert!(a.starts_with("Chunk_all_minilm_l6_v2_3f2a9c1b_"), "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_eq!(a.len(), "Chunk_all_minilm_l6_v2_3f2a9c1b_".len() + 8);
        // Names that slug alike still differ by the hash.
        assert_ne!(collection_name("a-b", f), collection_name("a_b", f));
        assert_eq!(collection_name("m", f), collection_name("m", f));
    }

    #[test]
    fn batch_objects_serialise_as_weaviate_expects() {
        let obj = BatchObject {
            collection: "C".into(),
            tenant: None,
            id: Uuid::nil(),
            properties: json!({"text": "t"}),
            vector: vec![0.25],
        };
        let v = serde_json::to_value(&obj).unwrap();
        assert_eq!(v["class"], "C");
        assert_eq!(v["vector"][0], 0.25);
        assert!(v.get("tenant").is_none(), "no tenant outside multi-tenancy");
        assert_eq!(tenant_argument(Some("a")), "tenant: \"a\", ");
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
        assert_eq!(
            Property::keyword("doc_id").tokenization.as_deref(),
            Some("field")
        );
    }
}
