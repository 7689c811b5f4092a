//! `vecstream serve`: the engine behind the OpenAI and TEI APIs, until SIGTERM or Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vecstream_config::Config;
use vecstream_engine::Engine;
use vecstream_serve::Server;
use vecstream_telemetry::{Metrics, Readiness};

pub async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let mut engine_cfg = super::embed::engine_config(&config.engine)?;
    // The dispatcher batches across requests by lane; the engine takes its batches as
    // they come instead of waiting for more.
    let max_wait = engine_cfg.max_wait;
    engine_cfg.max_wait = Duration::ZERO;
    engine_cfg.queue_depth = 1;
    let engine = tokio::task::spawn_blocking(move || Engine::start(engine_cfg))
        .await?
        .context("starting the embedding engine")?;
    let info = engine.info().clone();
    tracing::info!(model_id = %info.model_id, backend = info.backend.as_str(), precision = info.precision.as_str(), threads = info.threads, "engine ready");
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let server = Server::start(
        &config.serve,
        Arc::new(engine),
        config.serve.batch_tokens,
        max_wait,
        &metrics,
        readiness,
    )
    .await?;
    eprintln!(
        "vecstream serve: {} on http://{} (POST /v1/embeddings, /embed; lanes {})",
        info.model_id,
        server.local_addr,
        if config.serve.lanes { "on" } else { "off" }
    );
    super::run::shutdown_signal().await;
    tracing::info!("serve stopping: answering the requests in flight");
    server.stop(Duration::from_secs(30)).await;
    Ok(ExitCode::SUCCESS)
}
