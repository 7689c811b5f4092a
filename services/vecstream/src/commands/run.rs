//! `vecstream run`: long-lived components with the metrics/health server.

use std::process::ExitCode;

use anyhow::Context;
use temporalio_sdk::{Runtime, Worker};
use vecstream_config::Config;
use vecstream_telemetry::{HealthServer, Metrics, Readiness};

use crate::cli::{Component, Queue, RunArgs};

pub async fn run(config: &Config, args: &RunArgs) -> anyhow::Result<ExitCode> {
    match args.component {
        Component::Worker => run_worker(config, args.queue).await,
        Component::Embedder => Ok(super::pending("run embedder", 4, "Streaming pipeline")),
        Component::Sink => Ok(super::pending("run sink", 4, "Streaming pipeline")),
        Component::All => Ok(super::pending("run all", 4, "Streaming pipeline")),
    }
}

async fn run_worker(config: &Config, queue: Queue) -> anyhow::Result<ExitCode> {
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let _server =
        HealthServer::start(&config.telemetry.metrics_addr, metrics, readiness.clone()).await?;

    let client = vecstream_workflows::connect(&config.temporal).await?;
    vecstream_workflows::describe_namespace(&client, &config.temporal.namespace).await?;
    let runtime =
        Runtime::from_current_tokio(Default::default()).context("starting the Temporal runtime")?;
    let queues: Vec<&str> = match queue {
        Queue::Cpu => vec![&config.temporal.cpu_task_queue],
        Queue::Gpu => vec![&config.temporal.gpu_task_queue],
        Queue::Both => vec![
            &config.temporal.cpu_task_queue,
            &config.temporal.gpu_task_queue,
        ],
    };
    let mut workers = Vec::new();
    for q in &queues {
        let options = vecstream_workflows::worker_options(q)?;
        workers.push(
            Worker::new(&runtime, client.clone(), options)
                .with_context(|| format!("creating the worker of {q}"))?,
        );
        readiness.set(&format!("worker:{q}"), true);
    }
    let shutdowns: Vec<_> = workers.iter().map(|w| w.shutdown_handle()).collect();
    tracing::info!(queues = ?queues, namespace = %config.temporal.namespace, "worker polling");

    let run_all = futures::future::join_all(workers.iter_mut().map(|w| w.run()));
    tokio::pin!(run_all);
    let results = tokio::select! {
        results = &mut run_all => results,
        _ = shutdown_signal() => {
            tracing::info!("shutting down: finishing in-flight tasks");
            for (q, _) in queues.iter().zip(&shutdowns) {
                readiness.set(&format!("worker:{q}"), false);
            }
            shutdowns.iter().for_each(|s| s());
            run_all.await
        }
    };
    for r in results {
        r.context("worker stopped with an error")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
