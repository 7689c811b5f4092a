//! `vecstream run`: long-lived components with the metrics/health server.

use std::process::ExitCode;

use anyhow::Context;
use temporalio_sdk::{Runtime, Worker};
use tokio::sync::watch;
use vecstream_config::Config;
use vecstream_pipeline::{PipelineMetrics, Sink};
use vecstream_telemetry::{HealthServer, Metrics, Readiness};

use crate::Hooks;
use crate::cli::{Component, Queue, RunArgs};

pub async fn run(config: &Config, args: &RunArgs, hooks: &Hooks) -> anyhow::Result<ExitCode> {
    let (embedder, sink, worker) = match args.component {
        Component::Embedder => (true, false, None),
        Component::Sink => (false, true, None),
        Component::Worker => (false, false, Some(args.queue)),
        Component::All => (true, true, Some(args.queue)),
        Component::Openlineage => (false, false, None),
    };
    let openlineage = match args.component {
        Component::Openlineage if !config.openlineage.enabled() => anyhow::bail!(
            "`run openlineage` needs a transport: set openlineage.http_url \
             (VECSTREAM_OPENLINEAGE_HTTP_URL), openlineage.kafka_topic, or both"
        ),
        Component::Openlineage => true,
        Component::All => config.openlineage.enabled(),
        _ => false,
    };
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let _server = HealthServer::start(
        &config.telemetry.metrics_addr,
        metrics.clone(),
        readiness.clone(),
    )
    .await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight work");
        let _ = on_signal.send(true);
    });

    // Embedder and sink run on the runtime's workers; the Temporal worker's futures are not
    // `Send`, so every component is awaited here as a local future.
    type Running<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;
    let spawned = |handle: tokio::task::JoinHandle<anyhow::Result<()>>| -> Running<'static> {
        Box::pin(async move {
            handle
                .await
                .map_err(|e| anyhow::anyhow!("component panicked: {e}"))?
        })
    };
    let mut tasks: Vec<Running<'_>> = Vec::new();
    let pipeline_metrics = (embedder || sink || worker.is_some())
        .then(|| PipelineMetrics::register(metrics.registry()))
        .transpose()
        .context("registering pipeline metrics")?;
    if let (true, Some(pm)) = (embedder, &pipeline_metrics) {
        readiness.set("embedder", false);
        tasks.push(Box::pin(super::run_embedder::run(
            config,
            pm.clone(),
            readiness.clone(),
            stop_rx.clone(),
        )));
    }
    if let (true, Some(pm)) = (sink, &pipeline_metrics) {
        readiness.set("sink", false);
        let sink = Sink::connect(config, pm.clone())
            .await
            .context("starting the sink")?;
        readiness.set("sink", true);
        let stop = stop_rx.clone();
        let commit = hooks.sink_commit.clone();
        tasks.push(spawned(tokio::spawn(async move {
            sink.run_with(stop, commit.as_ref())
                .await
                .context("sink stopped")
        })));
    }
    if let (Some(queue), Some(pm)) = (worker, &pipeline_metrics) {
        tasks.push(Box::pin(run_worker(
            config,
            queue,
            pm.clone(),
            readiness.clone(),
            stop_rx.clone(),
        )));
    }

    if openlineage {
        // Lineage export never stops the stream: it reads the lineage topic in its own
        // group, drops (and counts) what an unreachable endpoint cannot take, and a failure
        // of its own is logged, not propagated to the other components.
        let exporter = vecstream_openlineage::Exporter::new(
            config,
            vecstream_openlineage::OpenLineageMetrics::register(metrics.registry())
                .context("registering openlineage metrics")?,
        )?;
        readiness.set("openlineage", true);
        let stop = stop_rx.clone();
        let only = matches!(args.component, Component::Openlineage);
        tasks.push(spawned(tokio::spawn(async move {
            let outcome = exporter
                .run(vecstream_openlineage::Mode::Follow, stop, &|_, _| {})
                .await;
            match outcome {
                Ok(_) => Ok(()),
                Err(e) if only => Err(anyhow::Error::new(e).context("openlineage export stopped")),
                Err(e) => {
                    tracing::error!(error = %e, "openlineage export stopped; the pipeline goes on");
                    Ok(())
                }
            }
        })));
    }

    // The first component to fail stops the others (they finish and commit what they hold),
    // and the process exits non-zero so a supervisor restarts it; nothing uncommitted is lost.
    let mut failure = None;
    let mut pending = tasks;
    while !pending.is_empty() {
        let (result, _, rest) = futures::future::select_all(pending).await;
        pending = rest;
        if let Err(e) = result {
            tracing::error!(error = %format!("{e:#}"), "component failed; stopping the others");
            readiness.set("process", false);
            let _ = stop_tx.send(true);
            failure.get_or_insert(e);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The cpu worker checks reviews (`review.check`): a broken key file stops it at start;
/// no key file at all is said once, since then every review is refused.
fn check_reviewer_keys(config: &Config) -> anyhow::Result<()> {
    let path = &config.review.authorized_keys;
    if path.is_empty() {
        tracing::warn!(
            "review.authorized_keys is not set: every review will be refused; add reviewers' \
             public keys (vecstream review keygen) to a file and point it there"
        );
        return Ok(());
    }
    let keys = vecstream_workflows::signing::Keyring::load(std::path::Path::new(path))
        .context("review.authorized_keys")?;
    if keys.is_empty() {
        tracing::warn!(path = %path, "review.authorized_keys lists no key: every review will be refused");
    } else {
        tracing::info!(path = %path, keys = keys.len(), four_eyes = config.review.four_eyes, "reviewer keys loaded");
    }
    Ok(())
}

async fn run_worker(
    config: &Config,
    queue: Queue,
    metrics: PipelineMetrics,
    readiness: Readiness,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if !matches!(queue, Queue::Gpu) {
        check_reviewer_keys(config)?;
    }
    if !matches!(queue, Queue::Cpu) && config.engine.provider != "local" {
        // The gpu queue's activities embed through the providers: a provider of another
        // model stops the worker now, not a reindex halfway.
        let mut target = vecstream_workflows::ModelTarget::configured(&config.engine)
            .map_err(anyhow::Error::msg)?;
        target.model_dir =
            vecstream_workflows::activities::resolve_model(&config.engine, &target.model_dir)?;
        vecstream_providers::ChainBuilder::new(&config.engine, metrics.providers.clone())
            .check_serves(&super::job_common::model_id_of(&target)?)?;
    }
    // Activities publish lineage and read the documents topic: wrong Kafka credentials
    // stop the worker at start, not its first activity. Kafka merely down does not (the
    // activities retry), as for Weaviate below.
    match vecstream_kafka::topics::cluster_info(&config.kafka).await {
        Err(e @ vecstream_kafka::KafkaEdgeError::Access { .. }) => return Err(e.into()),
        Err(e) => tracing::warn!(error = %e, "kafka not answering yet"),
        Ok(_) => {}
    }
    vecstream_weaviate::WeaviateClient::new(&config.weaviate)?
        .check_access()
        .await?;
    let client = vecstream_workflows::connect(&config.temporal).await?;
    vecstream_workflows::describe_namespace(&client, &config.temporal.namespace).await?;
    let runtime =
        Runtime::from_current_tokio(Default::default()).context("starting the Temporal runtime")?;
    use vecstream_workflows::registry::{QueueRole, job_worker_options};
    let roles: Vec<QueueRole> = match queue {
        Queue::Cpu => vec![QueueRole::Cpu],
        Queue::Gpu => vec![QueueRole::Gpu],
        Queue::Both => vec![QueueRole::Cpu, QueueRole::Gpu],
    };
    let queues: Vec<&str> = roles
        .iter()
        .map(|r| match r {
            QueueRole::Cpu => config.temporal.cpu_task_queue.as_str(),
            QueueRole::Gpu => config.temporal.gpu_task_queue.as_str(),
        })
        .collect();
    let mut workers = Vec::new();
    for (role, q) in roles.iter().zip(&queues) {
        let options = job_worker_options(config, *role, metrics.clone())?;
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
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            for q in &queues {
                readiness.set(&format!("worker:{q}"), false);
            }
            shutdowns.iter().for_each(|s| s());
            run_all.await
        }
    };
    for r in results {
        r.context("worker stopped with an error")?;
    }
    Ok(())
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
