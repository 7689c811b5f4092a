//! `vecstream run embedder` under the alias's model migration: the embedder embeds with
//! the model the migration state says ([`MigrationState::stream_model`]) and switches, in
//! the same process, when the state changes (a reject, a rollback, the end of a rollback
//! window): it finishes and commits its batch, then starts again on the other model.
//!
//! - A fresh alias: the embedder's model becomes live (it writes the first state).
//! - Its model is live, or kept for a rollback: it embeds with it.
//! - Its model is being built (the migration's target): it embeds with the live model until
//!   the cutover (the reindex's scan and catch-ups fill the target), then with its own.
//! - Its model is not part of the migration: it embeds with the live model (so the live
//!   collection stays current) and, with `embedder.reindex_on_model_change`, starts the
//!   reindex to its model.
//! - Its model is live in another collection (one of an earlier schema generation, or of the
//!   other `weaviate.multi_tenancy`): it embeds with it into its own collection and, with
//!   `embedder.reindex_on_model_change`, starts the reindex that builds that collection.
//! - Its model was rejected, rolled back or superseded: it embeds with the live model, says
//!   so in an error log line, in `vecstream_embedder_model_rejected` and in `vecstream
//!   status`, and starts no reindex.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use vecstream_config::Config;
use vecstream_engine::Engine;
use vecstream_pipeline::{Embedder, Escalator, PipelineMetrics};
use vecstream_providers::{ChainBuilder, Lane};
use vecstream_telemetry::Readiness;
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};
use vecstream_workflows::migration::{
    ControlTopic, MigrationEvent, MigrationState, ModelCollection, StreamModel,
};
use vecstream_workflows::{ModelTarget, TemporalEscalator};

use super::job_common::model_id_of;

/// The model an embedder runs with, and why.
#[derive(Debug, Clone, PartialEq)]
struct Chosen {
    target: ModelTarget,
    model_id: String,
    /// The migration retired the configured model (so this is the live one).
    retired: bool,
}

/// Runs the embedder until `stop`, switching models as the migration state says.
pub async fn run(
    config: &Config,
    metrics: PipelineMetrics,
    readiness: Readiness,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    vecstream_kafka::topics::ensure_topics(&config.kafka)
        .await
        .context("creating the topics")?;
    let control = ControlTopic::new(&config.kafka)?;
    let configured = configured_model(config)?;
    let providers = ChainBuilder::new(&config.engine, metrics.providers.clone());
    providers.check_serves(&configured.model_id)?;
    let alias = config.weaviate.alias.clone();
    // The reindex to the configured model, when the embedder starts one.
    let starter = TemporalEscalator::new(config.clone());
    loop {
        let state = read_state(&control, &alias, &stop).await?;
        let chosen = choose(config, &control, &starter, state.as_ref(), &configured).await?;
        metrics
            .embedder_model_rejected
            .set(i64::from(chosen.retired));
        let effective = with_model(config, &chosen.target);
        let engine_cfg = super::embed::engine_config(&effective.engine)?;
        let engine = tokio::task::spawn_blocking(move || Engine::start(engine_cfg))
            .await?
            .context("starting the embedding engine")?;
        let escalator: Arc<dyn Escalator> = Arc::new(TemporalEscalator::new(effective.clone()));
        let provider = providers.build_for(Arc::new(engine), Lane::Stream)?;
        let embedder = Embedder::connect(
            &effective,
            Arc::new(provider),
            metrics.clone(),
            Some(escalator),
        )
        .await
        .context("starting the embedder")?;
        readiness.set("embedder", true);
        let (switch_tx, switch_rx) = watch::channel(false);
        let watcher = tokio::spawn(watch_state(
            control.clone(),
            alias.clone(),
            configured.model_id.clone(),
            (chosen.model_id.clone(), chosen.retired),
            Duration::from_millis(config.embedder.control_poll_ms.max(100)),
            stop.clone(),
            switch_tx,
        ));
        let ran = embedder.run(switch_rx).await;
        watcher.abort();
        ran.context("embedder stopped")?;
        if *stop.borrow() {
            return Ok(());
        }
        readiness.set("embedder", false);
        tracing::warn!(%alias, from = %chosen.model_id, "the migration state changed: the embedder switches model");
    }
}

/// How long the embedder keeps trying to read the migration state before it gives up (a
/// topic just created has no leader for a moment; a broker restarting takes longer).
const STATE_READ_PATIENCE: Duration = Duration::from_secs(120);

/// The alias's migration state, read again (with a pause) while Kafka cannot answer yet.
async fn read_state(
    control: &ControlTopic,
    alias: &str,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<Option<MigrationState>> {
    let started = std::time::Instant::now();
    loop {
        match control.read(alias).await {
            Ok(state) => return Ok(state),
            Err(e) if started.elapsed() < STATE_READ_PATIENCE && !*stop.borrow() => {
                tracing::warn!(%alias, error = %e, "cannot read the migration state yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context("reading the migration state (docs.control.v1)")
                );
            }
        }
    }
}

/// The configured model (`engine.*`) and its id.
fn configured_model(config: &Config) -> anyhow::Result<ModelCollection> {
    let mut target = ModelTarget::configured(&config.engine).map_err(anyhow::Error::msg)?;
    target.model_dir =
        vecstream_workflows::activities::resolve_model(&config.engine, &target.model_dir)?;
    let model_id = model_id_of(&target)?;
    Ok(ModelCollection {
        collection: collection_name(
            &model_id,
            Tenancy::from_config(config.weaviate.multi_tenancy),
        ),
        model_id,
        target,
    })
}

/// `config` with its engine set to `target`'s model.
fn with_model(config: &Config, target: &ModelTarget) -> Config {
    let mut c = config.clone();
    c.engine.model_dir = target.model_dir.clone();
    c.engine.max_seq_length = target.max_seq_length.unwrap_or(0);
    c.engine.precision = target.precision.as_str().to_owned();
    c
}

/// Decides the model to embed with (and writes the first state of a fresh alias, or starts
/// the reindex to the configured model).
async fn choose(
    config: &Config,
    control: &ControlTopic,
    starter: &TemporalEscalator,
    state: Option<&MigrationState>,
    mine: &ModelCollection,
) -> anyhow::Result<Chosen> {
    let alias = &config.weaviate.alias;
    let configured = Chosen {
        target: mine.target.clone(),
        model_id: mine.model_id.clone(),
        retired: false,
    };
    let Some(state) = state else {
        // The embedder never needs Weaviate to start: without an answer, it embeds with its
        // configured model and leaves the first state to a later start.
        let live = match WeaviateClient::new(&config.weaviate)?
            .resolve_alias(alias)
            .await
        {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(%alias, error = %e, "could not read the alias: embedding with the configured model; the alias's first migration state is written at a later start");
                return Ok(configured);
            }
        };
        if live.is_none() || live.as_deref() == Some(mine.collection.as_str()) {
            let first = MigrationEvent::Bootstrapped { live: mine.clone() };
            match control.apply(alias, &first, "").await {
                Ok(_) => {
                    tracing::info!(%alias, model_id = %mine.model_id, "the alias's live model is this embedder's")
                }
                // Its own model either way; the state is written at a later start.
                Err(e) => {
                    tracing::warn!(%alias, error = %e, "could not write the alias's first migration state")
                }
            }
        } else {
            // An alias from before the migration state: its live model is unknown here.
            tracing::warn!(%alias, live = ?live, model_id = %mine.model_id, "the alias serves another model and has no migration state: embedding with the configured model; the live collection is kept current only once a reindex records its model");
            start_reindex(config, starter, mine).await;
        }
        return Ok(configured);
    };
    match state.stream_model(&mine.model_id) {
        StreamModel::Configured => {
            // The same model in another collection: one written by an earlier schema
            // generation, or in the other tenancy (`weaviate.multi_tenancy`). This
            // embedder's records go to its own collection, which only a reindex makes.
            if let Some(live) = state.live.as_ref().filter(|l| {
                l.model_id == mine.model_id
                    && l.collection != mine.collection
                    && state.target.as_ref().map(|t| &t.collection) != Some(&mine.collection)
            }) {
                tracing::warn!(%alias, live = %live.collection, mine = %mine.collection, model_id = %mine.model_id, "the live collection has another schema generation or tenancy than this release writes: a reindex with the same model moves the alias to a current collection (see the README's upgrade notes)");
                start_reindex(config, starter, mine).await;
            }
            Ok(configured)
        }
        StreamModel::Live {
            live,
            retired: Some(r),
        } => {
            tracing::error!(
                %alias,
                configured = %mine.model_id,
                live = %live.model_id,
                because = ?r.because,
                reason = %r.reason,
                workflow_id = %r.workflow_id,
                "the configured model was retired by the alias's migration: embedding with the live model instead (change engine.* or start a reindex to use it)"
            );
            Ok(Chosen {
                target: live.target,
                model_id: live.model_id,
                retired: true,
            })
        }
        StreamModel::Live {
            live,
            retired: None,
        } => {
            let building = state
                .target
                .as_ref()
                .is_some_and(|t| t.model_id == mine.model_id);
            if building {
                tracing::info!(%alias, configured = %mine.model_id, live = %live.model_id, "the configured model is being built by the alias's migration: embedding with the live model until the cutover");
            } else {
                tracing::warn!(%alias, configured = %mine.model_id, live = %live.model_id, "the alias serves another model: embedding with the live model");
                start_reindex(config, starter, mine).await;
            }
            Ok(Chosen {
                target: live.target,
                model_id: live.model_id,
                retired: false,
            })
        }
    }
}

/// Starts the reindex to the configured model (`embedder.reindex_on_model_change`); never
/// fails the embedder: it logs what it did or why it could not.
async fn start_reindex(config: &Config, starter: &TemporalEscalator, mine: &ModelCollection) {
    if !config.embedder.reindex_on_model_change {
        return;
    }
    let alias = &config.weaviate.alias;
    match starter.reindex(alias.clone(), mine.model_id.clone()).await {
        Ok(id) => {
            tracing::info!(%alias, model_id = %mine.model_id, workflow_id = %id, "reindex to this embedder's model started (approve it with `vecstream review approve`)")
        }
        Err(e) => {
            tracing::warn!(%alias, model_id = %mine.model_id, error = %e, "the reindex to this embedder's model could not be started")
        }
    }
}

/// Reads the state every `poll`; sets `switch` when the model to embed with is no longer
/// `current` (or when `stop` is set).
async fn watch_state(
    control: ControlTopic,
    alias: String,
    mine: String,
    current: (String, bool),
    poll: Duration,
    mut stop: watch::Receiver<bool>,
    switch: watch::Sender<bool>,
) {
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    let _ = switch.send(true);
                    return;
                }
            }
            _ = tokio::time::sleep(poll) => {
                match control.read(&alias).await {
                    Ok(Some(state)) => {
                        let wanted = match state.stream_model(&mine) {
                            StreamModel::Configured => (mine.clone(), false),
                            StreamModel::Live { live, retired } => (live.model_id, retired.is_some()),
                        };
                        // Another model, or the same one now for another reason (the
                        // configured model was just retired: say so).
                        if wanted != current {
                            tracing::info!(%alias, state = %state.summary(), "migration state changed");
                            let _ = switch.send(true);
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(%alias, error = %e, "could not read the migration state; keeping the model"),
                }
            }
        }
    }
}
