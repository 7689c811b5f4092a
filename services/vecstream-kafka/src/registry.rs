//! A typed client of the Confluent schema-registry REST API.
//!
//! Only what vecstream needs: register a subject's schema, set its compatibility, fetch a
//! writer schema by id (cached forever: ids are immutable), and a health probe.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use serde::Deserialize;
use serde_json::json;
use vecstream_config::RegistryConfig;

use crate::{KafkaEdgeError, schemas};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Schema registry client; cheap to clone (shares its connection pool and cache).
#[derive(Clone)]
pub struct SchemaRegistry {
    base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
    by_id: Arc<RwLock<HashMap<u32, Arc<Schema>>>>,
    /// Per subject: the versions read so far and the schema ids they have (held while the
    /// registry is asked, so one listing serves every record that waits for it).
    subjects: Arc<tokio::sync::Mutex<HashMap<String, SubjectIds>>>,
    /// Per subject: the schema ids known to be its own, read without waiting on
    /// `subjects` (every record's lookup; a listing only for an id not seen yet).
    accepted: Arc<RwLock<HashMap<String, BTreeSet<u32>>>>,
}

#[derive(Debug, Default)]
struct SubjectIds {
    versions: BTreeSet<i64>,
    ids: BTreeSet<u32>,
}

#[derive(Deserialize)]
struct VersionResponse {
    id: u32,
    schema: String,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

/// Names the URL and the user, never the password.
impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("base", &self.base)
            .field("user", &self.auth.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl SchemaRegistry {
    /// A client for `cfg.url` (e.g. `http://127.0.0.1:8081/apis/ccompat/v7`).
    pub fn new(cfg: &RegistryConfig) -> Result<Self, KafkaEdgeError> {
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_millis(cfg.request_timeout_ms));
        if !cfg.tls_ca_cert.is_empty() {
            // The CA of a private deployment, on top of the system's.
            let ca = std::fs::read(&cfg.tls_ca_cert)
                .map_err(|e| e.to_string())
                .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
                .map_err(|message| KafkaEdgeError::RegistryUnreachable {
                    url: cfg.url.clone(),
                    message: format!("registry.tls_ca_cert {}: {message}", cfg.tls_ca_cert),
                })?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| KafkaEdgeError::RegistryUnreachable {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
        let auth = (!cfg.username.is_empty())
            .then(|| (cfg.username.clone(), cfg.password.expose().to_owned()));
        Ok(Self {
            base: cfg.url.trim_end_matches('/').to_owned(),
            http,
            auth,
            by_id: Default::default(),
            subjects: Default::default(),
            accepted: Default::default(),
        })
    }

    /// Base URL of the API.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Registers `schema` under `subject` (idempotent: the same schema gets the same id).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, KafkaEdgeError> {
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        let resp: IdResponse = self
            .send(
                reqwest::Method::POST,
                &format!("/subjects/{subject}/versions"),
                Some(body),
                &format!("register {subject}"),
            )
            .await?;
        if let Ok(parsed) = schemas::parse(schema) {
            self.cache().insert(resp.id, Arc::new(parsed));
        }
        Ok(resp.id)
    }

    /// Sets the compatibility level of `subject` (vecstream uses `BACKWARD`).
    pub async fn set_compatibility(
        &self,
        subject: &str,
        level: &str,
    ) -> Result<(), KafkaEdgeError> {
        let body = json!({ "compatibility": level });
        let _: serde_json::Value = self
            .send(
                reqwest::Method::PUT,
                &format!("/config/{subject}"),
                Some(body),
                &format!("compatibility of {subject}"),
            )
            .await?;
        Ok(())
    }

    /// Registers the subject's schema with BACKWARD compatibility: what producers call once.
    pub async fn ensure_subject(&self, subject: &str, schema: &str) -> Result<u32, KafkaEdgeError> {
        let id = self.register(subject, schema).await?;
        self.set_compatibility(subject, "BACKWARD").await?;
        Ok(id)
    }

    /// The writer schema of `id`, from the cache or the registry.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>, KafkaEdgeError> {
        if let Some(s) = self.cache_read().get(&id) {
            return Ok(s.clone());
        }
        let resp: Result<SchemaResponse, _> = self
            .send(
                reqwest::Method::GET,
                &format!("/schemas/ids/{id}"),
                None,
                &format!("schema id {id}"),
            )
            .await;
        let resp = match resp {
            Err(KafkaEdgeError::NotFound { .. }) => {
                return Err(KafkaEdgeError::UnknownSchemaId(id));
            }
            other => other?,
        };
        let schema = Arc::new(schemas::parse(&resp.schema)?);
        self.cache().insert(id, schema.clone());
        Ok(schema)
    }

    /// The writer schema of `id` if some version of `subject` has it: a consumer of a topic
    /// accepts only its subject's schemas (any version), so a record framed with another
    /// topic's schema id is [`KafkaEdgeError::NotInSubject`], never decoded. The subject's
    /// versions are listed again whenever an id is not among those already seen (a producer
    /// registers before it produces).
    pub async fn writer_schema(
        &self,
        subject: &str,
        id: u32,
    ) -> Result<Arc<Schema>, KafkaEdgeError> {
        let known_here = self
            .accepted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .is_some_and(|ids| ids.contains(&id));
        if known_here {
            return self.schema_by_id(id).await;
        }
        let mut subjects = self.subjects.lock().await;
        let known = subjects.entry(subject.to_owned()).or_default();
        if !known.ids.contains(&id) {
            let listed: Result<Vec<i64>, _> = self
                .send(
                    reqwest::Method::GET,
                    &format!("/subjects/{subject}/versions"),
                    None,
                    &format!("versions of {subject}"),
                )
                .await;
            let versions = match listed {
                Err(KafkaEdgeError::NotFound { .. }) => Vec::new(),
                other => other?,
            };
            for version in versions {
                if known.versions.contains(&version) {
                    continue;
                }
                let v: VersionResponse = self
                    .send(
                        reqwest::Method::GET,
                        &format!("/subjects/{subject}/versions/{version}"),
                        None,
                        &format!("{subject} version {version}"),
                    )
                    .await?;
                if let Ok(parsed) = schemas::parse(&v.schema) {
                    self.cache().insert(v.id, Arc::new(parsed));
                }
                known.versions.insert(version);
                known.ids.insert(v.id);
            }
        }
        self.accepted
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subject.to_owned(), known.ids.clone());
        if !known.ids.contains(&id) {
            return Err(KafkaEdgeError::NotInSubject {
                id,
                subject: subject.to_owned(),
            });
        }
        drop(subjects);
        self.schema_by_id(id).await
    }

    /// Subjects known to the registry; doubles as the health probe.
    pub async fn subjects(&self) -> Result<Vec<String>, KafkaEdgeError> {
        self.send(reqwest::Method::GET, "/subjects", None, "list subjects")
            .await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        what: &str,
    ) -> Result<T, KafkaEdgeError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .header("accept", CONTENT_TYPE);
        if let Some((user, pass)) = &self.auth {
            req = req.basic_auth(user, Some(pass));
        }
        if let Some(body) = body {
            req = req
                .header("content-type", CONTENT_TYPE)
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| KafkaEdgeError::RegistryUnreachable {
            url: url.clone(),
            message: vecstream_core::error_chain(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        if status == reqwest::StatusCode::NOT_FOUND && is_registry_error(&text) {
            // The registry's own "not found" (error_code 404xx). A 404 page of something
            // else (a wrong URL, a proxy) is not an answer about the schema.
            return Err(KafkaEdgeError::NotFound {
                what: what.to_owned(),
                body: text,
            });
        }
        if matches!(status.as_u16(), 401 | 403) {
            return Err(KafkaEdgeError::RegistryAccess {
                url: self.base.clone(),
                status: status.as_u16(),
                what: what.to_owned(),
                user: self.auth.as_ref().map(|(user, _)| user.clone()),
            });
        }
        if !status.is_success() {
            return Err(KafkaEdgeError::Registry {
                status: status.as_u16(),
                what: what.to_owned(),
                body: abbreviated(&text),
            });
        }
        serde_json::from_str(&text).map_err(|e| KafkaEdgeError::RegistryAnswer {
            url: url.clone(),
            what: what.to_owned(),
            message: format!("{e}: {}", abbreviated(&text)),
        })
    }

    fn cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Arc<Schema>>> {
        self.by_id.write().unwrap_or_else(|p| p.into_inner())
    }

    fn cache_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Arc<Schema>>> {
        self.by_id.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A JSON error of the registry's API: `{"error_code": 40403, "message": ...}`.
fn is_registry_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error_code")?.as_i64())
        .is_some()
}

/// At most 300 characters of an answer (an HTML error page can be long).
fn abbreviated(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use vecstream_config::{RegistryConfig, Secret};

    use super::SchemaRegistry;

    #[test]
    fn debug_output_names_the_user_never_the_password() {
        let cfg = RegistryConfig {
            username: "svc-vecstream".into(),
            password: Secret::new("s3cr3t-pa55"),
            ..Default::default()
        };
        let shown = format!("{:?}", SchemaRegistry::new(&cfg).unwrap());
        assert!(shown.contains("svc-vecstream"), "{shown}");
        assert!(!shown.contains("s3cr3t-pa55"), "{shown}");
    }
}
