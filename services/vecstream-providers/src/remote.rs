//! A remote provider over HTTP: the OpenAI embeddings API (`kind = "openai"`) or
//! text-embeddings-inference's `/embed` (`kind = "tei"`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde::Deserialize;
use vecstream_core::LANE_HEADER;

use crate::limits::{Backoff, RateLimiter};
use crate::{EmbedInput, Lane, Provider, ProviderError, ProviderMetrics, l2_normalize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenAi,
    Tei,
}

/// A configured remote provider (`[[engine.providers]]`).
#[derive(Debug)]
pub struct RemoteProvider {
    cfg: vecstream_config::RemoteProvider,
    kind: Kind,
    endpoint: String,
    http: reqwest::Client,
    space: String,
    /// Its `model` is the local model: it shares the local vector space (to be probed).
    local_space: bool,
    requests: RateLimiter,
    tokens: RateLimiter,
    backoff: Backoff,
    /// Width of its vectors: configured, or learned from the first answer.
    dims: AtomicUsize,
    metrics: ProviderMetrics,
}

/// The vector space a provider's vectors live in: the local model's when `model` is its id
/// (`vecstream serve` runs it), else `<kind>-<model>-<dimensions>`, so that two models (or
/// two widths of one model) never share a collection.
pub fn vector_space_of(
    cfg: &vecstream_config::RemoteProvider,
    local_model_id: Option<&str>,
) -> Result<String, ProviderError> {
    if local_model_id == Some(cfg.model.as_str()) {
        return Ok(cfg.model.clone());
    }
    if cfg.dimensions == 0 {
        return Err(ProviderError::Config(format!(
            "provider `{}`: set `dimensions` (the width of {:?}'s vectors): with the model it \
             names the vector space, and so the collection",
            cfg.name, cfg.model
        )));
    }
    let model = if cfg.model.is_empty() {
        "default"
    } else {
        &cfg.model
    };
    let raw = format!("{}-{}-{}", cfg.kind, model, cfg.dimensions);
    Ok(raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect())
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl RemoteProvider {
    /// A client for `cfg`; `local_model_id` is the id of `engine.model_dir`'s model.
    pub fn new(
        cfg: &vecstream_config::RemoteProvider,
        local_model_id: Option<&str>,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        let kind = match cfg.kind.as_str() {
            "openai" => Kind::OpenAi,
            "tei" => Kind::Tei,
            other => {
                return Err(ProviderError::Config(format!(
                    "provider `{}`: kind {other:?} (openai or tei)",
                    cfg.name
                )));
            }
        };
        let space = vector_space_of(cfg, local_model_id)?;
        let local_space = local_model_id == Some(cfg.model.as_str());
        if cfg.send_token_ids && !(local_space && kind == Kind::OpenAi) {
            return Err(ProviderError::Config(format!(
                "provider `{}`: send_token_ids needs kind openai and `model` = the local \
                 model's id (token ids are the local tokenizer's)",
                cfg.name
            )));
        }
        let base = cfg.url.trim_end_matches('/');
        let endpoint = match kind {
            Kind::OpenAi => format!("{base}/embeddings"),
            Kind::Tei => format!("{base}/embed"),
        };
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.min(5_000)));
        if !cfg.tls_ca_cert.is_empty() {
            let pem = std::fs::read(&cfg.tls_ca_cert).map_err(|e| {
                ProviderError::Config(format!(
                    "provider `{}`: reading tls_ca_cert {}: {e}",
                    cfg.name, cfg.tls_ca_cert
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ProviderError::Config(format!("provider `{}`: tls_ca_cert: {e}", cfg.name))
            })?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| ProviderError::Config(format!("provider `{}`: {e}", cfg.name)))?;
        let now = Instant::now();
        Ok(Self {
            kind,
            endpoint,
            http,
            space,
            local_space,
            requests: RateLimiter::per_second(cfg.requests_per_second, now),
            tokens: RateLimiter::per_minute(cfg.tokens_per_minute, now),
            backoff: Backoff {
                initial: Duration::from_millis(cfg.backoff_initial_ms.max(1)),
                max: Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_initial_ms).max(1)),
            },
            dims: AtomicUsize::new(cfg.dimensions),
            cfg: cfg.clone(),
            metrics,
        })
    }

    /// True when it claims the local model's vector space (to be checked by a probe).
    pub fn claims_local_space(&self) -> bool {
        self.local_space
    }

    fn transient(&self, message: String, retry_after: Option<Duration>) -> ProviderError {
        ProviderError::Transient {
            provider: self.cfg.name.clone(),
            message,
            retry_after,
        }
    }

    fn permanent(&self, message: String) -> ProviderError {
        ProviderError::Permanent {
            provider: self.cfg.name.clone(),
            message,
        }
    }

    fn body(&self, inputs: &[EmbedInput]) -> serde_json::Value {
        let texts = || -> Vec<&str> { inputs.iter().map(|i| i.text.as_str()).collect() };
        match self.kind {
            Kind::OpenAi => {
                let input = if self.cfg.send_token_ids {
                    // The server adds `[CLS]`/`[SEP]` itself, as OpenAI's API expects bare
                    // tokens.
                    let ids: Vec<&[u32]> = inputs
                        .iter()
                        .map(|i| match i.token_ids.as_slice() {
                            [_, inner @ .., _] => inner,
                            other => other,
                        })
                        .collect();
                    serde_json::json!(ids)
                } else {
                    serde_json::json!(texts())
                };
                let mut body = serde_json::json!({
                    "model": self.cfg.model,
                    "input": input,
                    "encoding_format": "float",
                });
                if self.cfg.dimensions > 0 && !self.local_space {
                    body["dimensions"] = self.cfg.dimensions.into();
                }
                body
            }
            Kind::Tei => serde_json::json!({
                "inputs": texts(),
                "truncate": true,
                "normalize": true,
            }),
        }
    }

    /// One HTTP request for `inputs` (at most `max_batch`).
    async fn call_once(
        &self,
        inputs: &[EmbedInput],
        lane: Lane,
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let lane = if self.cfg.lane.is_empty() {
            lane.as_str()
        } else {
            self.cfg.lane.as_str()
        };
        let mut req = self
            .http
            .post(&self.endpoint)
            .header(LANE_HEADER, lane)
            .json(&self.body(inputs));
        if !self.cfg.api_key.is_empty() {
            req = req.bearer_auth(self.cfg.api_key.expose());
        }
        let resp = req.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "unreachable"
            };
            self.transient(
                format!(
                    "{} {what}: {}",
                    self.endpoint,
                    vecstream_core::error_chain(&e)
                ),
                None,
            )
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = resp.text().await.map_err(|e| {
            self.transient(
                format!("reading the answer of {}: {e}", self.endpoint),
                None,
            )
        })?;
        if !status.is_success() {
            let head: String = text.chars().take(300).collect();
            let said = vecstream_core::printable(&head);
            let message = format!("{} answered {status}: {said}", self.endpoint);
            return Err(match status {
                StatusCode::TOO_MANY_REQUESTS => ProviderError::Throttled {
                    provider: self.cfg.name.clone(),
                    message,
                    retry_after,
                },
                StatusCode::REQUEST_TIMEOUT
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::BAD_GATEWAY
                | StatusCode::GATEWAY_TIMEOUT
                | StatusCode::INTERNAL_SERVER_ERROR => self.transient(message, retry_after),
                _ => self.permanent(message),
            });
        }
        let mut vectors = self.parse(&text, inputs.len())?;
        let dim = vectors.first().map_or(0, Vec::len);
        let expected = self.dims.load(Ordering::Relaxed);
        if dim == 0 || vectors.iter().any(|v| v.len() != dim) || (expected != 0 && dim != expected)
        {
            return Err(self.permanent(format!(
                "{} answered vectors of width {dim} (expected {})",
                self.endpoint,
                if expected == 0 {
                    "one width".to_string()
                } else {
                    expected.to_string()
                }
            )));
        }
        self.dims.store(dim, Ordering::Relaxed);
        vectors.iter_mut().for_each(|v| l2_normalize(v));
        Ok(vectors)
    }

    fn parse(&self, text: &str, n: usize) -> Result<Vec<Vec<f32>>, ProviderError> {
        let bad = |e: String| {
            self.permanent(format!(
                "{} answered an unreadable body: {e}",
                self.endpoint
            ))
        };
        let vectors = match self.kind {
            Kind::Tei => {
                serde_json::from_str::<Vec<Vec<f32>>>(text).map_err(|e| bad(e.to_string()))?
            }
            Kind::OpenAi => {
                #[derive(Deserialize)]
                struct Item {
                    index: usize,
                    embedding: Encoded,
                }
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Encoded {
                    Float(Vec<f32>),
                    Base64(String),
                }
                #[derive(Deserialize)]
                struct Answer {
                    data: Vec<Item>,
                }
                let answer: Answer = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
                let mut out = vec![None; answer.data.len()];
                for item in answer.data {
                    let v = match item.embedding {
                        Encoded::Float(v) => v,
                        Encoded::Base64(b) => {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(b)
                                .map_err(|e| bad(e.to_string()))?;
                            bytes
                                .chunks_exact(4)
                                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                                .collect()
                        }
                    };
                    let slot = out
                        .get_mut(item.index)
                        .ok_or_else(|| bad(format!("index {} out of range", item.index)))?;
                    *slot = Some(v);
                }
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("an index is missing".into()))?
            }
        };
        if vectors.len() != n {
            return Err(bad(format!("{} vectors for {n} inputs", vectors.len())));
        }
        Ok(vectors)
    }

    /// One piece with the limits, retries and backoff.
    async fn call(
        &self,
        inputs: &[EmbedInput],
        lane: Lane,
    ) -> Result<Vec<Vec<f32>>, ProviderError> {
        let tokens: usize = inputs
            .iter()
            .map(|i| {
                if i.token_ids.is_empty() {
                    i.text.len() / 4 + 1
                } else {
                    i.token_ids.len()
                }
            })
            .sum();
        let name = self.cfg.name.as_str();
        let max_throttle = Duration::from_millis(self.cfg.max_throttle_ms);
        let (mut failures, mut throttles, mut throttled) = (0u32, 0u32, Duration::ZERO);
        loop {
            let now = Instant::now();
            let wait = self
                .requests
                .reserve(1.0, now)
                .max(self.tokens.reserve(tokens as f64, now));
            if !wait.is_zero() {
                self.metrics
                    .throttled_ms
                    .with_label_values(&[name])
                    .inc_by(wait.as_millis() as u64);
                tokio::time::sleep(wait).await;
            }
            let err = match self.call_once(inputs, lane).await {
                Ok(v) => return Ok(v),
                Err(e @ (ProviderError::Transient { .. } | ProviderError::Throttled { .. })) => e,
                Err(e) => return Err(e),
            };
            let asked = err.retry_after();
            let delay = if matches!(err, ProviderError::Throttled { .. }) {
                // Busy, not broken: wait as asked, within the call's throttle budget.
                let delay = self
                    .backoff
                    .delay(throttles, Backoff::jitter())
                    .max(asked.unwrap_or_default());
                throttles += 1;
                if throttled + delay > max_throttle {
                    return Err(err);
                }
                throttled += delay;
                self.metrics
                    .throttled_ms
                    .with_label_values(&[name])
                    .inc_by(delay.as_millis() as u64);
                delay
            } else {
                failures += 1;
                // Asked to wait longer than we ever back off: the fallback (or the caller's
                // own backoff) takes it from here.
                if failures >= self.cfg.max_attempts || asked.is_some_and(|a| a > self.backoff.max)
                {
                    return Err(err);
                }
                self.backoff
                    .delay(failures - 1, Backoff::jitter())
                    .max(asked.unwrap_or_default())
            };
            self.metrics
                .retries
                .with_label_values(&[name, retry_reason(&err)])
                .inc();
            tracing::debug!(provider = name, failures, throttles, ?delay, error = %err, "retrying the provider");
            tokio::time::sleep(delay).await;
        }
    }
}

fn retry_reason(e: &ProviderError) -> &'static str {
    let m = e.to_string();
    if matches!(e, ProviderError::Throttled { .. }) {
        "429"
    } else if m.contains("503") {
        "503"
    } else if m.contains("timed out") {
        "timeout"
    } else if m.contains("unreachable") {
        "connect"
    } else {
        "5xx"
    }
}

impl Provider for RemoteProvider {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn backend(&self) -> &str {
        match self.kind {
            Kind::OpenAi => "openai",
            Kind::Tei => "tei",
        }
    }

    fn vector_space(&self) -> &str {
        &self.space
    }

    fn embed<'a>(
        &'a self,
        inputs: &'a [EmbedInput],
        lane: Lane,
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, ProviderError>> {
        async move {
            let mut out = Vec::with_capacity(inputs.len());
            for piece in inputs.chunks(self.cfg.max_batch.max(1)) {
                out.extend(self.call(piece, lane).await?);
            }
            Ok(out)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: &str, model: &str, dims: usize) -> vecstream_config::RemoteProvider {
        vecstream_config::RemoteProvider {
            name: "r".into(),
            kind: kind.into(),
            url: "http://127.0.0.1:1".into(),
            model: model.into(),
            dimensions: dims,
            ..Default::default()
        }
    }

    #[test]
    fn vector_space_names_provider_model_and_width_unless_it_is_the_local_model() {
        assert_eq!(
            vector_space_of(
                &cfg("openai", "text-embedding-3-small", 512),
                Some("minilm-1234abcd")
            )
            .unwrap(),
            "openai-text-embedding-3-small-512"
        );
        assert_eq!(
            vector_space_of(
                &cfg("openai", "minilm-1234abcd", 0),
                Some("minilm-1234abcd")
            )
            .unwrap(),
            "minilm-1234abcd"
        );
        assert_eq!(
            vector_space_of(&cfg("tei", "BAAI/bge small", 384), None).unwrap(),
            "tei-BAAI-bge-small-384"
        );
        let err = vector_space_of(&cfg("openai", "other", 0), Some("minilm")).unwrap_err();
        assert!(err.to_string().contains("dimensions"), "{err}");
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after(" 2 ", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn token_ids_only_for_the_local_model_over_openai() {
        let m = ProviderMetrics::unregistered().unwrap();
        let mut c = cfg("tei", "minilm", 0);
        c.send_token_ids = true;
        assert!(RemoteProvider::new(&c, Some("minilm"), m.clone()).is_err());
        let mut c = cfg("openai", "minilm", 0);
        c.send_token_ids = true;
        let p = RemoteProvider::new(&c, Some("minilm"), m).unwrap();
        let body = p.body(&[EmbedInput {
            text: "hi".into(),
            token_ids: vec![101, 7, 8, 102],
        }]);
        assert_eq!(
            body["input"],
            serde_json::json!([[7, 8]]),
            "bare tokens, no [CLS]/[SEP]"
        );
        assert!(body.get("dimensions").is_none());
    }
}
