use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::task::JoinHandle;

use crate::{Metrics, TelemetryError};

/// Readiness of a process: each component registers itself and reports whether it can do
/// its work now (connected, partitions assigned, model loaded...). `/readyz` is 200 only
/// when every registered component is ready.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// Sets one component's readiness, registering it on first use.
    pub fn set(&self, component: &str, ready: bool) {
        self.lock().insert(component.to_owned(), ready);
    }

    /// True when at least one component is registered and all are ready.
    pub fn is_ready(&self) -> bool {
        let map = self.lock();
        !map.is_empty() && map.values().all(|r| *r)
    }

    fn report(&self) -> String {
        self.lock()
            .iter()
            .map(|(k, v)| format!("{k}: {}\n", if *v { "ready" } else { "not ready" }))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A poisoned map still holds valid booleans.
        self.components.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    readiness: Readiness,
}

/// The `/metrics`, `/healthz`, `/readyz` HTTP server of a long-running command.
#[derive(Debug)]
pub struct HealthServer {
    /// Address actually bound (port 0 resolves to a real port).
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// Binds `addr` and serves in the background until dropped.
    pub async fn start(
        addr: &str,
        metrics: Metrics,
        readiness: Readiness,
    ) -> Result<Self, TelemetryError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| TelemetryError::Bind(addr.to_owned(), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| TelemetryError::Bind(addr.to_owned(), e))?;
        let app = health_routes(metrics, readiness);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics/health server stopped");
            }
        });
        tracing::info!(%local_addr, "serving /metrics, /healthz, /readyz");
        Ok(Self { local_addr, task })
    }
}

/// The `/metrics`, `/healthz` and `/readyz` routes, to serve beside others.
pub fn health_routes(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, readiness })
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics_handler(State(state): State<AppState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn ready_handler(State(state): State<AppState>) -> impl IntoResponse {
    let code = if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, state.readiness.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_answer_and_readiness_follows_components() {
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let server = HealthServer::start("127.0.0.1:0", metrics, readiness.clone())
            .await
            .unwrap();
        let base = format!("http://{}", server.local_addr);
        let http = reqwest::Client::new();

        let get = |path: &'static str| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move { http.get(url).send().await.unwrap() }
        };
        assert_eq!(get("/healthz").await.status(), 200);
        assert_eq!(
            get("/readyz").await.status(),
            503,
            "nothing registered is not ready"
        );
        readiness.set("kafka", true);
        readiness.set("weaviate", false);
        let resp = get("/readyz").await;
        assert_eq!(resp.status(), 503);
        assert!(resp.text().await.unwrap().contains("weaviate: not ready"));
        readiness.set("weaviate", true);
        assert_eq!(get("/readyz").await.status(), 200);
        let body = get("/metrics").await.text().await.unwrap();
        assert!(body.contains("vecstream_build_info"));
    }
}
