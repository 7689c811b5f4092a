//! The chain against scripted providers (behind the crate's own trait) and a remote
//! provider against a small in-process HTTP server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use vecstream_engine::EngineConfig;

use super::*;

fn model_dir() -> PathBuf {
    let cache = std::env::var("VECSTREAM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/vecstream"));
    cache.join("models/all-MiniLM-L6-v2")
}

fn engine() -> Arc<Engine> {
    static ENGINE: std::sync::OnceLock<Arc<Engine>> = std::sync::OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut cfg = EngineConfig::new(model_dir());
            cfg.threads = 1;
            Arc::new(Engine::start(cfg).expect("the default model (scripts/setup installs it)"))
        })
        .clone()
}

/// Answers from a script; `None` = a transient failure.
#[derive(Debug)]
struct Scripted {
    name: &'static str,
    space: String,
    answers: Mutex<VecDeque<Option<f32>>>,
    calls: AtomicU32,
}

impl Scripted {
    fn new(name: &'static str, space: &str, answers: &[Option<f32>]) -> Arc<Self> {
        Arc::new(Self {
            name,
            space: space.into(),
            answers: Mutex::new(answers.iter().copied().collect()),
            calls: AtomicU32::new(0),
        })
    }
}

impl Provider for Scripted {
    fn name(&self) -> &str {
        self.name
    }
    fn backend(&self) -> &str {
        "test"
    }
    fn vector_space(&self) -> &str {
        &self.space
    }
    fn embed<'a>(
        &'a self,
        inputs: &'a [EmbedInput],
        _lane: Lane,
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, ProviderError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let next = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Some(1.0));
        async move {
            match next {
                Some(x) => Ok(inputs.iter().map(|_| vec![x, 0.0]).collect()),
                None => Err(ProviderError::Transient {
                    provider: self.name.into(),
                    message: "down".into(),
                    retry_after: None,
                }),
            }
        }
        .boxed()
    }
}

fn metrics() -> ProviderMetrics {
    ProviderMetrics::unregistered().unwrap()
}

#[tokio::test]
async fn a_failing_provider_falls_back_then_its_circuit_opens_and_closes() {
    let remote = Scripted::new("remote", "space", &[None, None, Some(2.0)]);
    let backup = Scripted::new("backup", "space", &[]);
    let m = metrics();
    let chain = ProviderChain::from_members(
        vec![
            (
                remote.clone(),
                Some(Breaker::new(2, Duration::from_millis(200))),
            ),
            (backup.clone(), None),
        ],
        engine(),
        Lane::Stream,
        m.clone(),
    )
    .unwrap();
    let input = [EmbedInput::text("a")];
    let first = chain.embed(&input).await.unwrap();
    assert_eq!(
        first.provider, "backup",
        "the remote failed: the fallback embedded"
    );
    let second = chain.embed(&input).await.unwrap();
    assert_eq!(second.provider, "backup");
    assert_eq!(
        m.breaker_open.with_label_values(&["remote"]).get(),
        1,
        "two failures open it"
    );
    chain.embed(&input).await.unwrap();
    assert_eq!(
        remote.calls.load(Ordering::Relaxed),
        2,
        "skipped while open"
    );
    assert_eq!(
        m.calls.with_label_values(&["remote", "circuit_open"]).get(),
        1
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let back = chain.embed(&input).await.unwrap();
    assert_eq!(
        back.provider, "remote",
        "the trial call succeeded: back on the provider"
    );
    assert_eq!(back.vectors, vec![vec![2.0, 0.0]]);
    assert_eq!(m.breaker_open.with_label_values(&["remote"]).get(), 0);
    assert_eq!(
        m.fallbacks.with_label_values(&["remote", "backup"]).get(),
        3
    );
}

#[tokio::test]
async fn every_member_down_is_a_transient_error_naming_each() {
    let a = Scripted::new("a", "s", &[None]);
    let b = Scripted::new("b", "s", &[None]);
    let chain = ProviderChain::from_members(
        vec![
            (a, Some(Breaker::new(5, Duration::from_secs(1)))),
            (b, None),
        ],
        engine(),
        Lane::Bulk,
        metrics(),
    )
    .unwrap();
    let err = chain.embed(&[EmbedInput::text("x")]).await.unwrap_err();
    assert!(vecstream_core::Classify::class(&err).is_retryable());
    let text = err.to_string();
    assert!(text.contains("`a`") && text.contains("`b`"), "{text}");
}

#[test]
fn members_of_different_vector_spaces_are_refused() {
    let a = Scripted::new("openai", "openai-text-embedding-3-small-1536", &[]);
    let err = ProviderChain::from_members(
        vec![(a, None), (Arc::new(LocalProvider::new(engine())), None)],
        engine(),
        Lane::Stream,
        metrics(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("same vectors"), "{err}");
}

/// A provider that answers `status` (with `Retry-After: 1`) `failures` times, then vectors
/// from the local engine (or `wrong` ones).
async fn server(failures: u32, status: u16, wrong: bool) -> (SocketAddr, Arc<AtomicU32>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/v1/embeddings",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n < failures {
                    return (
                        StatusCode::from_u16(status).unwrap(),
                        [("retry-after", "1")],
                        "slow down",
                    )
                        .into_response();
                }
                let texts: Vec<String> = body["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect();
                let vectors = engine().embed(texts).await.unwrap();
                let data: Vec<serde_json::Value> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let mut v = e.vector.clone();
                        if wrong {
                            v.reverse();
                        }
                        // Not unit length: the client normalises.
                        v.iter_mut().for_each(|x| *x *= 3.0);
                        serde_json::json!({"index": i, "embedding": v, "object": "embedding"})
                    })
                    .rev()
                    .collect();
                axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

fn remote_cfg(addr: SocketAddr) -> vecstream_config::RemoteProvider {
    vecstream_config::RemoteProvider {
        name: "remote".into(),
        kind: "openai".into(),
        url: format!("http://{addr}/v1"),
        model: engine().info().model_id.clone(),
        backoff_initial_ms: 10,
        backoff_max_ms: 2_000,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_vectors_match_the_engine() {
    let (addr, hits) = server(2, 429, false).await;
    let m = metrics();
    let remote = RemoteProvider::new(
        &remote_cfg(addr),
        Some(&engine().info().model_id),
        m.clone(),
    )
    .unwrap();
    assert!(remote.claims_local_space());
    let chain = ProviderChain::from_members(
        vec![(
            Arc::new(remote),
            Some(Breaker::new(5, Duration::from_secs(30))),
        )],
        engine(),
        Lane::Stream,
        m.clone(),
    )
    .unwrap();
    let texts = ["first text", "a second, longer text about vectors"];
    let inputs: Vec<EmbedInput> = texts.iter().map(|t| EmbedInput::text(*t)).collect();
    let got = chain.embed(&inputs).await.unwrap();
    assert_eq!(got.provider, "remote");
    let ours = engine()
        .embed(texts.iter().map(|t| t.to_string()).collect())
        .await
        .unwrap();
    for (g, o) in got.vectors.iter().zip(&ours) {
        assert!(
            cosine(g, &o.vector) > 0.99999,
            "answers back in input order"
        );
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
    }
    // Two 429s, then the probe, then the call.
    assert_eq!(hits.load(Ordering::Relaxed), 4);
    assert_eq!(m.retries.with_label_values(&["remote", "429"]).get(), 2);
    assert!(
        m.throttled_ms.with_label_values(&["remote"]).get() >= 2_000,
        "each Retry-After: 1 was honoured over the 10 ms backoff"
    );
}

#[tokio::test]
async fn a_provider_claiming_the_local_space_with_other_vectors_is_refused() {
    let (addr, _) = server(0, 200, true).await;
    let m = metrics();
    let remote = RemoteProvider::new(
        &remote_cfg(addr),
        Some(&engine().info().model_id),
        m.clone(),
    )
    .unwrap();
    let chain = ProviderChain::from_members(
        vec![
            (
                Arc::new(remote),
                Some(Breaker::new(5, Duration::from_secs(30))),
            ),
            (Arc::new(LocalProvider::new(engine())), None),
        ],
        engine(),
        Lane::Stream,
        m.clone(),
    )
    .unwrap();
    let got = chain.embed(&[EmbedInput::text("hello")]).await.unwrap();
    assert_eq!(
        got.provider, "local",
        "the wrong vectors never reach the caller"
    );
    assert_eq!(
        m.calls.with_label_values(&["remote", "wrong_space"]).get(),
        1
    );
    chain.embed(&[EmbedInput::text("again")]).await.unwrap();
    assert_eq!(
        m.calls.with_label_values(&["remote", "wrong_space"]).get(),
        2,
        "refused for good"
    );
}

#[tokio::test]
async fn retry_after_longer_than_the_backoff_goes_to_the_fallback_at_once() {
    let (addr, hits) = server(100, 503, false).await;
    let m = metrics();
    let mut cfg = remote_cfg(addr);
    cfg.backoff_max_ms = 500;
    let remote = RemoteProvider::new(&cfg, Some(&engine().info().model_id), m.clone()).unwrap();
    let chain = ProviderChain::from_members(
        vec![
            (
                Arc::new(remote),
                Some(Breaker::new(5, Duration::from_secs(30))),
            ),
            (Arc::new(LocalProvider::new(engine())), None),
        ],
        engine(),
        Lane::Stream,
        m,
    )
    .unwrap();
    let got = chain.embed(&[EmbedInput::text("hello")]).await.unwrap();
    assert_eq!(got.provider, "local");
    assert_eq!(
        hits.load(Ordering::Relaxed),
        1,
        "no retry against a 1 s Retry-After over a 0.5 s cap"
    );
}
