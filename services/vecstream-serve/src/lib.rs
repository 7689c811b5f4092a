//! `vecstream serve`: the embedding engine as an HTTP service.
//!
//! - `POST /v1/embeddings` speaks OpenAI's embeddings API (texts or token arrays, float or
//!   base64, usage in tokens); `POST /embed` speaks text-embeddings-inference's. Both also
//!   answer under `/{lane}/…` (`/bulk/v1/embeddings`), for clients that cannot set headers.
//! - Every text waits in a priority lane (`query`, `stream`, `bulk`; header
//!   `x-vecstream-lane`, the path, the API key's lane, or `serve.default_lane`). One
//!   dispatcher fills each engine batch from the highest lane first, up to the token budget
//!   (`serve.batch_tokens`), with a starvation guard for the lower lanes; each lane admits
//!   up to its queued-token limit and answers 429 with `Retry-After` past it (413 for a
//!   request over the limit by itself).
//! - `/healthz`, `/readyz`, `/metrics` on the same address.

mod api;
mod dispatch;
pub mod lanes;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use vecstream_config::ServeSettings;
use vecstream_core::Lane;
use vecstream_engine::Engine;
use vecstream_telemetry::{Metrics, Readiness};

pub use api::{ApiKeys, KeyEntry};
use dispatch::Dispatcher;
pub use metrics::ServeMetrics;

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("serve: {0}")]
    Config(String),
    #[error("serve: cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serve: registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running service; dropping it stops it.
#[derive(Debug)]
pub struct Server {
    /// The address bound (port 0 resolves to a real port).
    pub local_addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    dispatcher: JoinHandle<()>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Server {
    /// Serves `engine` on `settings.addr`. `batch_tokens` and `max_wait` are the dispatcher's
    /// batch budget and gathering window (the engine itself should not wait: it gets one
    /// batch at a time).
    pub async fn start(
        settings: &ServeSettings,
        engine: Arc<Engine>,
        batch_tokens: usize,
        max_wait: Duration,
        metrics: &Metrics,
        readiness: Readiness,
    ) -> Result<Self, ServeError> {
        let default_lane: Lane = settings.default_lane.parse().map_err(ServeError::Config)?;
        let keys = ApiKeys::load(&settings.api_keys).map_err(ServeError::Config)?;
        let serve_metrics = ServeMetrics::register(metrics.registry())?;
        let scheduler = lanes::Scheduler::new(
            [
                settings.max_queued_tokens_query,
                settings.max_queued_tokens_stream,
                settings.max_queued_tokens_bulk,
            ],
            settings.lanes,
            Duration::from_millis(settings.starvation_ms),
        );
        let dispatcher = Dispatcher::new(
            engine.clone(),
            scheduler,
            batch_tokens.max(engine.info().max_seq_length),
            max_wait,
            serve_metrics.clone(),
        );
        let state = Arc::new(
            api::AppState::new(
                engine,
                dispatcher.clone(),
                keys,
                default_lane,
                settings.max_inputs,
                serve_metrics,
            )
            .map_err(ServeError::Config)?,
        );
        let app = Router::new()
            .route("/v1/embeddings", post(api::openai))
            .route("/embeddings", post(api::openai))
            .route("/{lane}/v1/embeddings", post(api::openai_lane))
            .route("/embed", post(api::tei))
            .route("/{lane}/embed", post(api::tei_lane))
            .route("/v1/models", get(api::models))
            .route("/info", get(api::info))
            .with_state(state.clone())
            .layer(DefaultBodyLimit::max(settings.max_body_bytes))
            .merge(vecstream_telemetry::health_routes(
                metrics.clone(),
                readiness.clone(),
            ));
        let listener = tokio::net::TcpListener::bind(&settings.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: settings.addr.clone(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: settings.addr.clone(),
            source,
        })?;
        let dispatcher = tokio::spawn(dispatcher.run());
        let (shutdown, mut stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "serve stopped");
            }
        });
        readiness.set("serve", true);
        tracing::info!(
            %local_addr,
            model_id = %state.engine.info().model_id,
            lanes = settings.lanes,
            auth = state.keys.is_enabled(),
            "serving /v1/embeddings (OpenAI), /embed (TEI), /v1/models, /info, /healthz, /readyz, /metrics"
        );
        Ok(Self {
            local_addr,
            task: Some(task),
            dispatcher,
            shutdown,
        })
    }

    /// Stops taking connections and answers the requests in flight (up to `grace`).
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take()
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!(
                ?grace,
                "requests still in flight after the grace period: cut off"
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.dispatcher.abort();
    }
}
