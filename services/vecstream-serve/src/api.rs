//! The HTTP API: OpenAI's `POST /v1/embeddings`, text-embeddings-inference's `POST /embed`
//! (each also under `/{lane}/…`), `GET /v1/models`, `GET /info`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use vecstream_core::{LANE_HEADER, Lane};
use vecstream_engine::Engine;

use crate::dispatch::Dispatcher;
use crate::metrics::ServeMetrics;

/// Which API a request came in on: it decides the error format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Tei,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Tei => "tei",
        }
    }
}

/// An API key's holder and lane.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub name: String,
    pub lane: Lane,
}

/// `serve.api_keys`: keys by their SHA-256 (the file's secrets are not kept in memory
/// as such, and a lookup compares digests).
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Option<HashMap<[u8; 32], KeyEntry>>);

impl ApiKeys {
    /// Reads `<lane> <name> <key>` lines; an empty path means no authentication.
    pub fn load(path: &str) -> Result<Self, String> {
        if path.is_empty() {
            return Ok(Self(None));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [lane, name, key] = parts[..] else {
                return Err(format!("{path}:{}: expected `<lane> <name> <key>`", n + 1));
            };
            let lane: Lane = lane.parse().map_err(|e| format!("{path}:{}: {e}", n + 1))?;
            if keys
                .insert(
                    digest(key),
                    KeyEntry {
                        name: name.to_owned(),
                        lane,
                    },
                )
                .is_some()
            {
                return Err(format!("{path}:{}: a key listed twice", n + 1));
            }
        }
        if keys.is_empty() {
            return Err(format!(
                "{path} lists no key: every request would be refused"
            ));
        }
        Ok(Self(Some(keys)))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    fn check(&self, headers: &HeaderMap) -> Result<Option<&KeyEntry>, ()> {
        let Some(keys) = &self.0 else { return Ok(None) };
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(())?;
        keys.get(&digest(token.trim())).map(Some).ok_or(())
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// What every handler shares.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub dispatcher: Arc<Dispatcher>,
    pub keys: ApiKeys,
    pub default_lane: Lane,
    pub max_inputs: usize,
    pub metrics: ServeMetrics,
    cls: u32,
    vocab: usize,
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        dispatcher: Arc<Dispatcher>,
        keys: ApiKeys,
        default_lane: Lane,
        max_inputs: usize,
        metrics: ServeMetrics,
    ) -> Result<Self, String> {
        let inner = engine.tokenizer().inner();
        let cls = ["[CLS]", "<s>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .ok_or("the tokenizer has no [CLS] or <s> token")?;
        let vocab = inner.get_vocab_size(true);
        Ok(Self {
            engine,
            dispatcher,
            keys,
            default_lane,
            max_inputs,
            metrics,
            cls,
            vocab,
        })
    }

    /// The names a client may ask for: the model id, and its name without the hash.
    fn knows_model(&self, model: &str) -> bool {
        let id = &self.engine.info().model_id;
        model == id || id.rsplit_once('-').is_some_and(|(name, _)| name == model)
    }
}

/// An error in the format of the API it answers.
#[derive(Debug)]
struct ApiError {
    api: Api,
    status: StatusCode,
    /// OpenAI's `type` / TEI's `error_type`.
    kind: &'static str,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(api: Api, status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let kind = match (api, status.as_u16()) {
            (Api::OpenAi, 401) => "authentication_error",
            (Api::OpenAi, 429) => "rate_limit_error",
            (Api::OpenAi, 500..) => "server_error",
            (Api::OpenAi, _) => "invalid_request_error",
            (Api::Tei, 429) => "Overloaded",
            (Api::Tei, 401) => "Unauthorized",
            (Api::Tei, 500..) => "Backend",
            (Api::Tei, _) => "Validation",
        };
        Self {
            api,
            status,
            kind,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn outcome(&self) -> &'static str {
        match self.status.as_u16() {
            429 => "rejected",
            401 => "unauthorized",
            500.. => "failed",
            _ => "invalid",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.api {
            Api::OpenAi => serde_json::json!({"error": {
                "message": self.message, "type": self.kind, "param": null, "code": self.code,
            }}),
            Api::Tei => serde_json::json!({"error": self.message, "error_type": self.kind}),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

/// The lane of a request: the path's, else the header's, else the key's, else the
/// default; a key's lane is also the highest it may have.
fn lane_of(
    api: Api,
    path: Option<&str>,
    headers: &HeaderMap,
    key: Option<&KeyEntry>,
    default: Lane,
) -> Result<Lane, ApiError> {
    let asked = match path {
        Some(p) => Some(p),
        None => headers.get(LANE_HEADER).and_then(|v| v.to_str().ok()),
    };
    let asked = asked
        .map(|a| a.parse::<Lane>())
        .transpose()
        .map_err(|e| ApiError::new(api, StatusCode::BAD_REQUEST, "invalid_lane", e))?;
    Ok(match (asked, key) {
        (Some(a), Some(k)) => a.max(k.lane),
        (None, Some(k)) => k.lane,
        (Some(a), None) => a,
        (None, None) => default,
    })
}

/// Texts or token arrays, as both APIs take them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Inputs {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
struct OpenAiRequest {
    input: Inputs,
    model: String,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct TeiRequest {
    inputs: Inputs,
    #[serde(default)]
    truncate: bool,
    #[serde(default = "yes")]
    normalize: bool,
}

fn yes() -> bool {
    true
}

/// Tokenised inputs and whether any was cut to the model's limit.
struct Tokenised {
    sequences: Vec<Vec<u32>>,
    truncated: usize,
}

impl AppState {
    async fn tokenise(self: &Arc<Self>, api: Api, inputs: Inputs) -> Result<Tokenised, ApiError> {
        let bad = |m: String| ApiError::new(api, StatusCode::BAD_REQUEST, "invalid_input", m);
        let n = match &inputs {
            Inputs::One(_) | Inputs::Tokens(_) => 1,
            Inputs::Many(v) => v.len(),
            Inputs::ManyTokens(v) => v.len(),
        };
        if n == 0 {
            return Err(bad("the input is empty: send at least one text".into()));
        }
        if n > self.max_inputs {
            return Err(bad(format!(
                "{n} inputs in one request; at most {} (serve.max_inputs)",
                self.max_inputs
            )));
        }
        let max_len = self.engine.tokenizer().max_len();
        match inputs {
            Inputs::One(t) => self.encode(api, vec![t]).await,
            Inputs::Many(v) => self.encode(api, v).await,
            Inputs::Tokens(ids) => self.wrap(api, vec![ids], max_len),
            Inputs::ManyTokens(v) => self.wrap(api, v, max_len),
        }
    }

    async fn encode(self: &Arc<Self>, api: Api, texts: Vec<String>) -> Result<Tokenised, ApiError> {
        let state = self.clone();
        // Tokenising thousands of texts is CPU work: off the async workers.
        let encoded = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            state.engine.tokenizer().encode_batch(&refs)
        })
        .await
        .map_err(|e| {
            ApiError::new(
                api,
                StatusCode::INTERNAL_SERVER_ERROR,
                "tokenizer",
                e.to_string(),
            )
        })?
        .map_err(|e| {
            ApiError::new(
                api,
                StatusCode::UNPROCESSABLE_ENTITY,
                "tokenizer",
                e.to_string(),
            )
        })?;
        Ok(Tokenised {
            truncated: encoded.iter().filter(|e| e.truncated).count(),
            sequences: encoded.into_iter().map(|e| e.ids).collect(),
        })
    }

    /// Token arrays (content tokens, as OpenAI's API takes them) wrapped in the model's
    /// special tokens.
    fn wrap(&self, api: Api, seqs: Vec<Vec<u32>>, max_len: usize) -> Result<Tokenised, ApiError> {
        let sep = self.engine.tokenizer().sep_id();
        let mut truncated = 0;
        let mut out = Vec::with_capacity(seqs.len());
        for ids in seqs {
            if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(ApiError::new(
                    api,
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    format!(
                        "token id {bad} is outside the model's vocabulary of {}",
                        self.vocab
                    ),
                ));
            }
            let room = max_len.saturating_sub(2);
            truncated += usize::from(ids.len() > room);
            let mut seq = Vec::with_capacity(ids.len().min(room) + 2);
            seq.push(self.cls);
            seq.extend_from_slice(&ids[..ids.len().min(room)]);
            seq.push(sep);
            out.push(seq);
        }
        Ok(Tokenised {
            sequences: out,
            truncated,
        })
    }

    /// Queues the sequences in `lane` and waits for their vectors.
    async fn run(
        &self,
        api: Api,
        lane: Lane,
        sequences: Vec<Vec<u32>>,
    ) -> Result<Vec<Vec<f32>>, ApiError> {
        let rx = self
            .dispatcher
            .submit(lane, sequences)
            .map_err(|r| refused(api, &r))?;
        rx.await
            .map_err(|_| {
                ApiError::new(
                    api,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stopping",
                    "the engine is stopping",
                )
            })?
            .map_err(|e| ApiError::new(api, StatusCode::INTERNAL_SERVER_ERROR, "engine", e))
    }

    /// Before parsing and tokenising: a lane without room for this body refuses at once.
    /// Its tokens are estimated low (a token is 4 to 6 bytes of JSON text or ids; 8 are
    /// counted), so an early refusal is one the exact count would make too.
    fn precheck(&self, api: Api, lane: Lane, body_bytes: usize) -> Result<(), ApiError> {
        match self.dispatcher.check(lane, body_bytes / 8) {
            Err(r) if !r.too_large => Err(refused(api, &r)),
            _ => Ok(()),
        }
    }

    /// A request's way in: its key, its lane (recorded in `lane` for the metrics even when
    /// refused), and an early refusal when that lane is full.
    fn enter(
        &self,
        api: Api,
        path_lane: Option<&str>,
        headers: &HeaderMap,
        body_bytes: usize,
        lane: &mut Option<Lane>,
    ) -> Result<Lane, ApiError> {
        let key = self.authorise(api, headers)?;
        let l = lane_of(api, path_lane, headers, key.as_ref(), self.default_lane)?;
        *lane = Some(l);
        self.precheck(api, l, body_bytes)?;
        Ok(l)
    }

    fn authorise(&self, api: Api, headers: &HeaderMap) -> Result<Option<KeyEntry>, ApiError> {
        self.keys.check(headers).map(|k| k.cloned()).map_err(|()| {
            ApiError::new(
                api,
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "a valid `Authorization: Bearer <key>` is required (serve.api_keys)",
            )
        })
    }
}

/// 413 for a request that never fits its lane, 429 with `Retry-After` for a full lane.
fn refused(api: Api, r: &crate::lanes::Rejected) -> ApiError {
    if r.too_large {
        return ApiError::new(
            api,
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "this request holds {} tokens, over lane `{}`'s limit of {} \
                 (serve.max_queued_tokens_{}): split it, or send it in the bulk lane",
                r.cost, r.lane, r.limit, r.lane
            ),
        );
    }
    let mut e = ApiError::new(
        api,
        StatusCode::TOO_MANY_REQUESTS,
        "lane_full",
        format!(
            "lane `{}` is full: {} tokens queued (limit {}, serve.max_queued_tokens_{}); \
             retry after {} s",
            r.lane,
            r.queued_tokens,
            r.limit,
            r.lane,
            r.retry_after.as_secs()
        ),
    );
    e.retry_after = Some(r.retry_after.as_secs().max(1));
    e
}

fn parse<T: serde::de::DeserializeOwned>(api: Api, body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            api,
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the request body: {e}"),
        )
    })
}

/// Records the request's outcome and sets the lane header.
fn finish(
    state: &AppState,
    api: Api,
    lane: Option<Lane>,
    started: Instant,
    result: Result<Response, ApiError>,
) -> Response {
    let lane_name = lane.map_or("none", Lane::as_str);
    let (outcome, mut resp) = match result {
        Ok(r) => ("ok", r),
        Err(e) => (e.outcome(), e.into_response()),
    };
    state
        .metrics
        .requests
        .with_label_values(&[lane_name, api.as_str(), outcome])
        .inc();
    state
        .metrics
        .request_seconds
        .with_label_values(&[lane_name, api.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if let Some(l) = lane {
        resp.headers_mut()
            .insert(LANE_HEADER, HeaderValue::from_static(l.as_str()));
    }
    resp
}

pub async fn openai(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai_in(state, None, headers, body).await
}

pub async fn openai_lane(
    State(state): State<Arc<AppState>>,
    Path(lane): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    openai_in(state, Some(lane), headers, body).await
}

async fn openai_in(
    state: Arc<AppState>,
    path_lane: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let api = Api::OpenAi;
    let mut lane = None;
    let result = async {
        let l = state.enter(api, path_lane.as_deref(), &headers, body.len(), &mut lane)?;
        let req: OpenAiRequest = parse(api, &body)?;
        if !state.knows_model(&req.model) {
            return Err(ApiError::new(
                api,
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!(
                    "the model `{}` is not served here; this server runs `{}`",
                    req.model,
                    state.engine.info().model_id
                ),
            ));
        }
        let dim = state.engine.info().dim;
        if let Some(d) = req.dimensions
            && d != dim
        {
            return Err(ApiError::new(
                api,
                StatusCode::BAD_REQUEST,
                "dimensions_not_supported",
                format!(
                    "`dimensions` = {d} is not supported: `{}` has {dim}-dimensional vectors and \
                     is not trained for shortening (omit `dimensions`)",
                    state.engine.info().model_id
                ),
            ));
        }
        let base64 = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::new(
                    api,
                    StatusCode::BAD_REQUEST,
                    "invalid_encoding_format",
                    format!("encoding_format {other:?}: float or base64"),
                ));
            }
        };
        let tokenised = state.tokenise(api, req.input).await?;
        let tokens: usize = tokenised.sequences.iter().map(Vec::len).sum();
        let vectors = state.run(api, l, tokenised.sequences).await?;
        let data: Vec<serde_json::Value> = vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    serde_json::json!(v)
                };
                serde_json::json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        let body = serde_json::json!({
            "object": "list",
            "data": data,
            "model": state.engine.info().model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        });
        let mut resp = axum::Json(body).into_response();
        resp.headers_mut().insert(
            "x-vecstream-truncated",
            HeaderValue::from(tokenised.truncated),
        );
        Ok(resp)
    }
    .await;
    finish(&state, api, lane, started, result)
}

pub async fn tei(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    tei_in(state, None, headers, body).await
}

pub async fn tei_lane(
    State(state): State<Arc<AppState>>,
    Path(lane): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    tei_in(state, Some(lane), headers, body).await
}

async fn tei_in(
    state: Arc<AppState>,
    path_lane: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let api = Api::Tei;
    let mut lane = None;
    let result = async {
        let l = state.enter(api, path_lane.as_deref(), &headers, body.len(), &mut lane)?;
        let req: TeiRequest = parse(api, &body)?;
        if !req.normalize {
            return Err(ApiError::new(
                api,
                StatusCode::UNPROCESSABLE_ENTITY,
                "normalize",
                "`normalize: false` is not supported: the model's pipeline normalises its vectors",
            ));
        }
        let tokenised = state.tokenise(api, req.inputs).await?;
        if tokenised.truncated > 0 && !req.truncate {
            return Err(ApiError::new(
                api,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_long",
                format!(
                    "{} input(s) longer than the model's {} tokens; send `truncate: true` to cut them",
                    tokenised.truncated,
                    state.engine.tokenizer().max_len()
                ),
            ));
        }
        let mut vectors = state.run(api, l, tokenised.sequences).await?;
        vectors
            .iter_mut()
            .for_each(|v| vecstream_engine::cpu::ops::l2_normalize(v));
        Ok(axum::Json(vectors).into_response())
    }
    .await;
    finish(&state, api, lane, started, result)
}

pub async fn models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(serde_json::json!({
        "object": "list",
        "data": [{"id": state.engine.info().model_id, "object": "model", "owned_by": "vecstream"}],
    }))
    .into_response()
}

pub async fn info(State(state): State<Arc<AppState>>) -> Response {
    let i = state.engine.info();
    axum::Json(serde_json::json!({
        "model_id": i.model_id,
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_input_length": i.max_seq_length,
        "dimensions": i.dim,
        "backend": i.backend.as_str(),
        "precision": i.precision.as_str(),
        "max_client_batch_size": state.max_inputs,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lane: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(l) = lane {
            h.insert(LANE_HEADER, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn lane_comes_from_path_header_key_or_default_and_a_key_caps_it() {
        let bulk_key = KeyEntry {
            name: "reindex".into(),
            lane: Lane::Bulk,
        };
        let d = Lane::Query;
        let api = Api::OpenAi;
        assert_eq!(
            lane_of(api, None, &headers(None), None, d).unwrap(),
            Lane::Query
        );
        assert_eq!(
            lane_of(api, None, &headers(Some("bulk")), None, d).unwrap(),
            Lane::Bulk
        );
        assert_eq!(
            lane_of(api, Some("stream"), &headers(Some("bulk")), None, d).unwrap(),
            Lane::Stream
        );
        assert_eq!(
            lane_of(api, None, &headers(None), Some(&bulk_key), d).unwrap(),
            Lane::Bulk
        );
        assert_eq!(
            lane_of(api, None, &headers(Some("query")), Some(&bulk_key), d).unwrap(),
            Lane::Bulk,
            "a bulk key cannot jump the queue"
        );
        assert!(lane_of(api, None, &headers(Some("vip")), None, d).is_err());
    }

    #[test]
    fn api_keys_file_is_checked_and_keys_are_looked_up_by_digest() {
        let dir = std::env::temp_dir().join(format!("vecstream-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(
            &path,
            "# lane name key\nquery search s3cret\nbulk jobs j0bs\n",
        )
        .unwrap();
        let keys = ApiKeys::load(path.to_str().unwrap()).unwrap();
        let mut h = HeaderMap::new();
        assert!(keys.check(&h).is_err(), "no key");
        h.insert("authorization", HeaderValue::from_static("Bearer j0bs"));
        assert_eq!(keys.check(&h).unwrap().unwrap().lane, Lane::Bulk);
        h.insert("authorization", HeaderValue::from_static("Bearer nope"));
        assert!(keys.check(&h).is_err());
        std::fs::write(&path, "query a k\nbulk b k\n").unwrap();
        assert!(
            ApiKeys::load(path.to_str().unwrap())
                .unwrap_err()
                .contains("twice")
        );
        std::fs::write(&path, "vip a k\n").unwrap();
        assert!(
            ApiKeys::load(path.to_str().unwrap())
                .unwrap_err()
                .contains("unknown lane")
        );
        assert!(!ApiKeys::load("").unwrap().is_enabled());
    }
}
