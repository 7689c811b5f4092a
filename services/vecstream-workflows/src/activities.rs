//! Activities of the reindex and evaluation workflows: all their I/O (Kafka, Weaviate, the
//! engine). Each one is idempotent; long ones heartbeat their progress and resume from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use vecstream_config::Config;
use vecstream_core::{Dataset, Job, LineageEvent, Run, VecstreamFacet, topics};
use vecstream_engine::{Engine, EngineConfig};
use vecstream_pipeline::{PipelineMetrics, Reindexer, SliceReport};
use vecstream_weaviate::{CollectionSpec, Tenancy, WeaviateClient, is_collection_of};

use crate::errors::{ActivityResultExt, JobError, activity_error};
use crate::eval::{Judged, judge};
use crate::migration::{ControlTopic, MigrationPhase, ModelCollection};
use crate::types::{EvalRow, LargeDocumentInput, LargeDocumentResult, ModelTarget};

mod inputs;
mod large;
pub use inputs::*;

/// The activities, with what they share across calls: the configuration, loaded engines
/// (one per model configuration), metrics.
pub struct JobActivities {
    config: Config,
    engines: Mutex<EngineCache>,
    metrics: PipelineMetrics,
    control: std::sync::OnceLock<ControlTopic>,
}

type ModelKey = (String, Option<usize>, crate::types::Precision);

/// Loaded engines, at most `max` of them unless activities are using more: each entry
/// remembers when it was last handed out, and the least recently used one that nobody
/// holds is unloaded first.
struct EngineCache<E = Engine> {
    engines: HashMap<ModelKey, (Arc<E>, u64)>,
    uses: u64,
}

impl<E> Default for EngineCache<E> {
    fn default() -> Self {
        Self {
            engines: HashMap::new(),
            uses: 0,
        }
    }
}

impl<E> EngineCache<E> {
    fn get(&mut self, key: &ModelKey) -> Option<Arc<E>> {
        self.uses += 1;
        let uses = self.uses;
        self.engines.get_mut(key).map(|(engine, last)| {
            *last = uses;
            engine.clone()
        })
    }

    /// Inserts `engine` (or keeps the one another activity loaded meanwhile) and returns
    /// it, with the engines unloaded to stay within `max`.
    fn insert(&mut self, key: ModelKey, engine: Arc<E>, max: usize) -> (Arc<E>, Vec<Arc<E>>) {
        self.uses += 1;
        let uses = self.uses;
        let kept = self
            .engines
            .entry(key.clone())
            .or_insert((engine, uses))
            .0
            .clone();
        let mut unloaded = Vec::new();
        while self.engines.len() > max.max(1) {
            // Only the cache holds it (and not the one just handed out).
            let idle = self
                .engines
                .iter()
                .filter(|(k, (e, _))| **k != key && Arc::strong_count(e) == 1)
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone());
            let Some(idle) = idle else { break };
            unloaded.extend(self.engines.remove(&idle).map(|(e, _)| e));
        }
        (kept, unloaded)
    }
}

impl std::fmt::Debug for JobActivities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobActivities").finish_non_exhaustive()
    }
}

/// The model directory of `model`: a directory as it is, or a version name or model id of
/// the model store (`engine.model_store`).
pub fn resolve_model(
    s: &vecstream_config::EngineSettings,
    model: &str,
) -> Result<String, vecstream_engine::EngineError> {
    vecstream_train::ModelStore::new(&s.model_store)
        .resolve(model)
        .map(|p| p.display().to_string())
}

/// The engine settings `s` (backend, threads, batching) with the target's model, length and
/// precision: how every vecstream process builds its engine.
pub fn engine_config(
    s: &vecstream_config::EngineSettings,
    target: &ModelTarget,
) -> Result<EngineConfig, JobError> {
    let dir = resolve_model(s, &target.model_dir)
        .map_err(|e| JobError::engine(format!("model {}", target.model_dir), e))?;
    let mut cfg = EngineConfig::new(dir);
    cfg.backend = s
        .backend
        .parse()
        .map_err(|e| JobError::invalid(format!("engine.backend: {e}")))?;
    cfg.precision = target.precision.into();
    if s.threads > 0 {
        cfg.threads = s.threads;
    }
    cfg.batch_tokens = s.batch_tokens;
    cfg.max_wait = Duration::from_millis(s.max_wait_ms);
    cfg.max_seq_length = target.max_seq_length;
    Ok(cfg)
}

/// How often a long step heartbeats that the activity is alive (the SDK throttles what it
/// sends to the heartbeat timeout).
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Runs `step` while heartbeating `done` (the position a retry resumes from, unchanged
/// until the step is complete) every [`KEEP_ALIVE`]: a slice that takes longer than the
/// heartbeat timeout on a busy machine is not mistaken for a dead worker.
async fn keep_alive<T>(
    ctx: &ActivityContext,
    done: SliceReport,
    step: impl std::future::Future<Output = T>,
) -> Result<T, ActivityError> {
    tokio::pin!(step);
    loop {
        tokio::select! {
            out = &mut step => return Ok(out),
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                if ctx.is_cancelled() {
                    return Err(ActivityError::cancelled());
                }
                ctx.record_heartbeat(done).await?;
            }
        }
    }
}

/// Runs an activity body, counting its outcome and timing it
/// (`vecstream_activity_executions_total`, `vecstream_activity_seconds`).
pub(crate) async fn timed<T>(
    metrics: &PipelineMetrics,
    activity: &str,
    body: impl std::future::Future<Output = Result<T, ActivityError>>,
) -> Result<T, ActivityError> {
    let started = std::time::Instant::now();
    let result = body.await;
    let outcome = match &result {
        Ok(_) => "completed",
        Err(ActivityError::Cancelled { .. }) => "cancelled",
        Err(_) => "failed",
    };
    metrics
        .activity_executions
        .with_label_values(&[activity, outcome])
        .inc();
    metrics
        .activity_seconds
        .with_label_values(&[activity])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The body of `review.check` (see [`JobActivities::check_review`]).
fn review_check(
    settings: &vecstream_config::ReviewSettings,
    input: &ReviewCheckInput,
) -> ReviewCheck {
    use crate::signing::{Keyring, Refusal, ReviewContext, check_review};
    let keyring = if settings.authorized_keys.is_empty() {
        Err(Refusal::NoKeyring(
            "review.authorized_keys is not set on this worker".into(),
        ))
    } else {
        Keyring::load(std::path::Path::new(&settings.authorized_keys))
            .map_err(|e| Refusal::NoKeyring(e.to_string()))
    };
    let checked = keyring.and_then(|keys| {
        check_review(
            &keys,
            &input.request,
            ReviewContext {
                workflow_id: &input.workflow_id,
                review_id: &input.review_id,
                purpose: input.purpose,
                starter: input.started_by.as_ref(),
                started_at_ms: input.started_at_ms,
                four_eyes: settings.four_eyes,
            },
        )
    });
    match checked {
        Ok(v) => {
            tracing::info!(
                workflow_id = %input.workflow_id,
                reviewer = %v.reviewer,
                key = %v.key_fingerprint,
                approve = v.approve,
                "review signature verified"
            );
            ReviewCheck::Accepted(crate::types::ReviewDecision {
                approve: v.approve,
                reviewer: v.reviewer,
                comment: v.comment,
                key_fingerprint: v.key_fingerprint,
            })
        }
        Err(refusal) => {
            tracing::warn!(
                workflow_id = %input.workflow_id,
                code = refusal.code(),
                reason = %refusal,
                "review refused"
            );
            ReviewCheck::Refused {
                code: refusal.code().to_owned(),
                reason: refusal.to_string(),
            }
        }
    }
}

impl JobActivities {
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn metrics(&self) -> &PipelineMetrics {
        &self.metrics
    }

    pub fn new(config: Config, metrics: PipelineMetrics) -> Self {
        Self {
            config,
            engines: Mutex::default(),
            metrics,
            control: std::sync::OnceLock::new(),
        }
    }

    /// The engine of `target`, kept loaded between activities within
    /// `temporal.max_engines` (see [`EngineCache`]).
    pub(crate) async fn engine(&self, target: &ModelTarget) -> Result<Arc<Engine>, ActivityError> {
        let cfg = engine_config(&self.config.engine, target).activity_err()?;
        // Keyed by the resolved directory: a version name and its path are one model.
        let key = (
            cfg.model_dir.display().to_string(),
            target.max_seq_length,
            target.precision,
        );
        if let Some(e) = self.lock_engines().get(&key) {
            return Ok(e);
        }
        let engine = tokio::task::spawn_blocking(move || Engine::start(cfg))
            .await
            .map_err(|e| activity_error(JobError::from(e)))?
            .map_err(|e| JobError::engine(format!("loading {}", target.model_dir), e))
            .activity_err()?;
        let (engine, unloaded) =
            self.lock_engines()
                .insert(key, Arc::new(engine), self.config.temporal.max_engines);
        if !unloaded.is_empty() {
            tracing::info!(
                unloaded = unloaded.len(),
                max_engines = self.config.temporal.max_engines,
                "unloaded the least recently used models"
            );
            // Dropping an engine joins its thread: not on the async runtime.
            tokio::task::spawn_blocking(move || drop(unloaded));
        }
        Ok(engine)
    }

    /// What embeds for `target`: the configured providers (`engine.provider`, in the
    /// `bulk` lane) when they embed its model's vector space, else its engine alone.
    pub(crate) async fn provider(
        &self,
        target: &ModelTarget,
    ) -> Result<Arc<vecstream_providers::ProviderChain>, ActivityError> {
        let engine = self.engine(target).await?;
        vecstream_providers::ChainBuilder::new(&self.config.engine, self.metrics.providers.clone())
            .build_for(engine, vecstream_providers::Lane::Bulk)
            .map(Arc::new)
            .map_err(|e| activity_error(JobError::from(e)))
    }

    fn lock_engines(&self) -> std::sync::MutexGuard<'_, EngineCache> {
        self.engines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The alias migration states' topic (one producer per worker).
    fn control(&self) -> Result<&ControlTopic, ActivityError> {
        if let Some(c) = self.control.get() {
            return Ok(c);
        }
        let made =
            ControlTopic::new(&self.config.kafka).map_err(|e| activity_error(JobError::from(e)))?;
        Ok(self.control.get_or_init(|| made))
    }

    fn weaviate(&self) -> Result<WeaviateClient, ActivityError> {
        WeaviateClient::new(&self.config.weaviate).activity_err()
    }

    /// The model id of a configuration, without loading the engine.
    pub(crate) fn model_id_of(&self, target: &ModelTarget) -> Result<String, ActivityError> {
        let what = || format!("model {}", target.model_dir);
        let dir = resolve_model(&self.config.engine, &target.model_dir)
            .map_err(|e| JobError::engine(what(), e))
            .activity_err()?;
        vecstream_engine::model::ModelSpec::load(std::path::Path::new(&dir), target.max_seq_length)
            .map(|(spec, _)| spec.model_id)
            .map_err(|e| JobError::engine(what(), e))
            .activity_err()
    }
}

#[activities]
impl JobActivities {
    /// Checks the target model, creates its collection, finds the live collection and the
    /// documents topic's offsets.
    #[activity(name = "reindex.prepare")]
    pub async fn prepare(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PrepareInput,
    ) -> Result<Prepared, ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.prepare", async move {
            let model_id = self.model_id_of(&input.target)?;
            if model_id != input.target_model_id {
                return Err(activity_error(JobError::invalid(format!(
                    "{} is model {model_id} on this worker, not {} as requested",
                    input.target.model_dir, input.target_model_id
                ))));
            }
            let state = self
                .control()?
                .read(&input.alias)
                .await
                .map_err(|e| activity_error(JobError::from(e)))?;
            if let Some(other) = state.as_ref().filter(|s| {
                !matches!(s.phase, MigrationPhase::Steady)
                    && !input.workflow_id.is_empty()
                    && s.workflow_id.as_deref() != Some(input.workflow_id.as_str())
            }) {
                return Err(activity_error(JobError::invalid(format!(
                    "alias {} is in another migration ({}); finish it first",
                    input.alias,
                    other.summary()
                ))));
            }
            let weaviate = self.weaviate()?;
            // The configured tenancy: a reindex is also how a deployment changes it.
            let spec = CollectionSpec::chunks(
                &model_id,
                Tenancy::from_config(self.config.weaviate.multi_tenancy),
            );
            weaviate.ensure_collection(&spec).await.activity_err()?;
            let live = weaviate.resolve_alias(&input.alias).await.activity_err()?;
            if live.as_deref() == Some(spec.name.as_str()) {
                return Err(activity_error(JobError::invalid(format!(
                    "alias {} already points at {}: nothing to reindex",
                    input.alias, spec.name
                ))));
            }
            // The live model: as the migration state records it, else the worker's
            // configured model when the live collection is that model's.
            let configured = ModelTarget::configured(&self.config.engine)
                .map_err(JobError::Invalid)
                .activity_err()?;
            // An alias not made yet (its sink has written nothing) serves the recorded one.
            let recorded = state
                .and_then(|s| s.live)
                .filter(|m| live.is_none() || live.as_deref() == Some(m.collection.as_str()));
            let live = live.or_else(|| recorded.as_ref().map(|m| m.collection.clone()));
            let live_model = match (recorded, &live) {
                (Some(m), _) => Some(m),
                (None, Some(l)) => match self.model_id_of(&configured) {
                    Ok(id) if is_collection_of(&id, l) => Some(ModelCollection {
                        model_id: id,
                        collection: l.clone(),
                        target: configured.clone(),
                    }),
                    _ => None,
                },
                (None, None) => None,
            };
            let bounds = self.topic_bounds().await?;
            Ok(Prepared {
                target_collection: spec.name,
                live_collection: live,
                live_target: live_model.as_ref().map(|m| m.target.clone()),
                bounds,
                live_model,
            })
        })
        .await
    }

    /// Moves the alias's migration state one step (`docs.control.v1`); idempotent.
    #[activity(name = "reindex.migration")]
    pub async fn migration(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: MigrationStep,
    ) -> Result<(), ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.migration", async move {
            let state = self
                .control()?
                .apply(&input.alias, &input.event, &input.workflow_id)
                .await
                .map_err(|e| activity_error(JobError::from(e)))?;
            tracing::info!(state = %state.summary(), "migration state");
            Ok(())
        })
        .await
    }

    /// Current `(partition, low, high)` of the documents topic (for catch-ups).
    #[activity(name = "reindex.bounds")]
    pub async fn bounds(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<Vec<(i32, i64, i64)>, ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.bounds", async move {
            self.topic_bounds().await
        })
        .await
    }

    /// Re-embeds `[from, to)` of one partition into the target's collection, slice by
    /// slice, heartbeating the offset reached; a retry resumes from the last heartbeat.
    #[activity(name = "reindex.scan_range")]
    pub async fn scan_range(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ScanRange,
    ) -> Result<SliceReport, ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.scan_range", async move {
            let mut reindexer = Reindexer::new(
                &self.config,
                self.provider(&input.target).await?,
                self.metrics.clone(),
            )
            .activity_err()?;
            if !input.lineage_run_id.is_empty() {
                let workflow_id = ctx.info().workflow_id.clone().unwrap_or_default();
                reindexer =
                    reindexer.with_lineage(&self.config, &workflow_id, &input.lineage_run_id);
            }
            let mut kept_current = Vec::with_capacity(input.also.len());
            for target in &input.also {
                kept_current.push(
                    Reindexer::new(
                        &self.config,
                        self.provider(target).await?,
                        self.metrics.clone(),
                    )
                    .activity_err()?,
                );
            }
            let resumed: Option<SliceReport> = ctx.heartbeat_details().deserialize()?;
            let mut total = resumed.unwrap_or(SliceReport {
                next_offset: input.from,
                ..Default::default()
            });
            if resumed.is_some() {
                tracing::info!(
                    partition = input.partition,
                    offset = total.next_offset,
                    "reindex scan resumes from its last heartbeat"
                );
            }
            let tenant = input.tenant.as_deref();
            while total.next_offset < input.to {
                if ctx.is_cancelled() {
                    return Err(ActivityError::cancelled());
                }
                let from = total.next_offset;
                let slice = keep_alive(
                    &ctx,
                    total,
                    reindexer.scan_slice(input.partition, from, input.to, tenant),
                )
                .await?
                .activity_err()?;
                // The same offsets into every collection kept current, before the heartbeat
                // moves past them.
                for other in &kept_current {
                    let mut at = from;
                    while at < slice.next_offset {
                        let done = keep_alive(
                            &ctx,
                            total,
                            other.scan_slice(input.partition, at, slice.next_offset, tenant),
                        )
                        .await?
                        .activity_err()?;
                        total.kept_current += done.embedded;
                        at = done.next_offset.max(at + 1);
                    }
                }
                total = SliceReport {
                    next_offset: slice.next_offset,
                    records: total.records + slice.records,
                    embedded: total.embedded + slice.embedded,
                    chunks: total.chunks + slice.chunks,
                    deleted: total.deleted + slice.deleted,
                    skipped: total.skipped + slice.skipped,
                    kept_current: total.kept_current,
                };
                ctx.record_heartbeat(total).await?;
            }
            Ok(total)
        })
        .await
    }

    /// Points the alias at the new collection; returns what it pointed at before.
    #[activity(name = "reindex.swap_alias")]
    pub async fn swap_alias(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SwapAlias,
    ) -> Result<Option<String>, ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.swap_alias", async move {
            let weaviate = self.weaviate()?;
            let before = weaviate.resolve_alias(&input.alias).await.activity_err()?;
            weaviate
                .set_alias(&input.alias, &input.collection)
                .await
                .activity_err()?;
            tracing::info!(alias = %input.alias, collection = %input.collection, previous = ?before, "alias swapped");
            Ok(before.filter(|b| *b != input.collection))
        })
        .await
    }

    /// Drops a retired collection. Refused (an error) while its own alias points at it or
    /// its own migration state still uses it: the workflow retires it first. Kept (not an
    /// error, a warning) while another alias points at it or another alias's migration uses
    /// it: collections are per model, and aliases can share one.
    #[activity(name = "reindex.drop_collection")]
    pub async fn drop_collection(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: DropCollection,
    ) -> Result<(), ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.drop_collection", async move {
            let weaviate = self.weaviate()?;
            let aliases = weaviate
                .aliases_of(&input.collection)
                .await
                .activity_err()?;
            if aliases.contains(&input.alias) {
                return Err(activity_error(JobError::invalid(format!(
                    "alias {} points at {}: not dropping the live collection",
                    input.alias, input.collection
                ))));
            }
            let states = self
                .control()?
                .read_all()
                .await
                .map_err(|e| activity_error(JobError::from(e)))?;
            if let Some(own) = states
                .get(&input.alias)
                .filter(|s| s.uses(&input.collection))
            {
                return Err(activity_error(JobError::invalid(format!(
                    "{} is still in use ({}): not dropping it",
                    input.collection,
                    own.summary()
                ))));
            }
            let others: Vec<String> = aliases
                .into_iter()
                .chain(
                    states
                        .values()
                        .filter(|s| s.alias != input.alias && s.uses(&input.collection))
                        .map(|s| s.summary()),
                )
                .collect();
            if !others.is_empty() {
                tracing::warn!(collection = %input.collection, used_by = ?others, "retired for this alias but used by another: kept");
                return Ok(());
            }
            if weaviate
                .collection_exists(&input.collection)
                .await
                .activity_err()?
            {
                weaviate
                    .delete_collection(&input.collection)
                    .await
                    .activity_err()?;
                tracing::info!(collection = %input.collection, alias = %input.alias, "collection dropped");
            }
            Ok(())
        })
        .await
    }

    /// Publishes one phase event of a workflow run to `docs.lineage.v1`.
    #[activity(name = "reindex.lineage")]
    pub async fn lineage(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: PhaseEvent,
    ) -> Result<(), ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "reindex.lineage", async move {
            self.metrics
                .workflow_events
                .with_label_values(&[input.job.as_str(), input.phase.as_str()])
                .inc();
            let event = LineageEvent {
                event_type: input.event_type,
                event_time: input.time_ms,
                run: Run {
                    run_id: input.run_id.clone(),
                    parent_run_id: None,
                },
                job: Job {
                    namespace: vecstream_pipeline::lineage::JOB_NAMESPACE.into(),
                    name: input.job.clone(),
                },
                inputs: vec![Dataset {
                    namespace: format!("kafka://{}", self.config.kafka.brokers),
                    name: topics::DOCUMENTS.into(),
                }],
                outputs: input
                    .collection
                    .iter()
                    .map(|c| Dataset {
                        namespace: self.config.weaviate.url.clone(),
                        name: c.clone(),
                    })
                    .collect(),
                producer: vecstream_pipeline::lineage::PRODUCER.into(),
                vecstream: VecstreamFacet {
                    stage: format!("{}:{}", input.job, input.phase),
                    model_id: Some(input.model_id.clone()),
                    target_collection: input.collection.clone(),
                    workflow_id: Some(input.workflow_id.clone()),
                    error: input.error.clone(),
                    reviewer: input.review.as_ref().map(|r| r.reviewer.clone()),
                    reviewer_key: input
                        .review
                        .as_ref()
                        .map(|r| r.key_fingerprint.clone())
                        .filter(|k| !k.is_empty()),
                    ..Default::default()
                },
            };
            vecstream_pipeline::lineage::publish_one(&self.config, &input.workflow_id, &event)
                .await
                .activity_err()
        })
        .await
    }

    /// Checks a `review` payload against the keys this worker trusts
    /// (`review.authorized_keys`, read again at every review so a key change needs no
    /// restart) and its four-eyes rule. Never fails: a review it cannot check is refused,
    /// with the reason.
    #[activity(name = "review.check")]
    pub async fn check_review(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ReviewCheckInput,
    ) -> Result<ReviewCheck, ActivityError> {
        let settings = self.config.review.clone();
        let checked = tokio::task::spawn_blocking(move || review_check(&settings, &input))
            .await
            .map_err(|e| activity_error(JobError::from(e)))?;
        Ok(checked)
    }

    /// Embeds one large document (read again from its offset) in slices, heartbeating the
    /// chunks done, and publishes its vector record and lineage as the stream would. A
    /// retried attempt starts the document over (its vectors are not kept in between).
    #[activity(name = "large.embed")]
    pub async fn embed_large(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LargeDocumentInput,
    ) -> Result<LargeDocumentResult, ActivityError> {
        let metrics = self.metrics.clone();
        timed(
            &metrics,
            "large.embed",
            self.embed_large_document(ctx, input),
        )
        .await
    }

    /// Retrieval quality of one collection on a labelled suite.
    #[activity(name = "eval.collection")]
    pub async fn evaluate_collection(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: EvalCollection,
    ) -> Result<EvalRow, ActivityError> {
        let metrics = self.metrics.clone();
        timed(&metrics, "eval.collection", async move {
            let suite = crate::eval::load_suite(&input.spec.suite)
                .map_err(JobError::Invalid)
                .activity_err()?;
            let engine = self.engine(&input.target).await?;
            let model_id = engine.info().model_id.clone();
            if !is_collection_of(&model_id, &input.collection) {
                return Err(activity_error(JobError::invalid(format!(
                    "{} holds vectors of another model than {} ({model_id})",
                    input.collection, input.target.model_dir
                ))));
            }
            let weaviate = self.weaviate()?;
            // Each collection as it is: a migration may move between tenancies.
            let tenancy = weaviate
                .tenancy_of(&input.collection)
                .await
                .activity_err()?;
            let tenant = input.spec.tenant.as_deref();
            // Multi-tenancy: the named tenant, or (none named) every tenant's hits merged.
            let scopes: Vec<Option<String>> = match (tenancy, tenant) {
                (Tenancy::Filter, _) => vec![None],
                (Tenancy::MultiTenant, Some(t)) => vec![Some(t.to_owned())],
                (Tenancy::MultiTenant, None) => weaviate
                    .tenants(&input.collection)
                    .await
                    .activity_err()?
                    .into_iter()
                    .map(Some)
                    .collect(),
            };
            let queries: Vec<String> = suite.iter().map(|q| q.query.clone()).collect();
            let vectors = engine
                .embed(queries)
                .await
                .map_err(JobError::from)
                .activity_err()?;
            let mut judged = Vec::with_capacity(suite.len());
            // Chunk hits are folded into a document ranking: enough chunks to fill k documents.
            let chunk_k = input.spec.k.max(10).saturating_mul(5).min(200);
            for (q, v) in suite.iter().zip(&vectors) {
                let mode = input.mode.unwrap_or(vecstream_weaviate::SearchMode::Vector);
                let mut hits = Vec::new();
                for scope in &scopes {
                    let query = vecstream_weaviate::SearchQuery {
                        mode,
                        text: &q.query,
                        vector: Some(&v.vector),
                        alpha: 0.5,
                        fusion: vecstream_weaviate::Fusion::RelativeScore,
                        limit: chunk_k,
                        properties: &["doc_id", "tenant"],
                        keyword_properties: &vecstream_weaviate::KEYWORD_PROPERTIES,
                        filters: tenant
                            .filter(|_| tenancy == Tenancy::Filter)
                            .map(|t| vecstream_weaviate::Condition::TextEqual {
                                path: "tenant".into(),
                                value: t.to_owned(),
                            })
                            .into_iter()
                            .collect(),
                        scope: scope.as_deref(),
                    };
                    hits.extend(
                        weaviate
                            .search(&input.collection, &query)
                            .await
                            .activity_err()?,
                    );
                }
                hits.sort_by(|a, b| b.score.total_cmp(&a.score));
                hits.truncate(chunk_k);
                // A document is (tenant, id): with a tenant named (the run's, or the query's
                // own), ranks and relevance compare record keys; without one, a relevant id
                // is that id in any tenant.
                let relevant_tenant = tenant.or(q.tenant.as_deref());
                let identity = |h: &vecstream_weaviate::ScoredHit| -> Option<String> {
                    let id = h.properties.get("doc_id")?.as_str()?;
                    Some(match relevant_tenant {
                        Some(_) => {
                            let of = h.properties.get("tenant")?.as_str()?;
                            vecstream_core::record_key(of, id)
                        }
                        None => id.to_owned(),
                    })
                };
                let ranked: Vec<String> = hits.iter().filter_map(identity).collect();
                let relevant = q
                    .relevant_doc_ids
                    .iter()
                    .map(|id| match relevant_tenant {
                        Some(t) => vecstream_core::record_key(t, id),
                        None => id.clone(),
                    })
                    .collect();
                judged.push(Judged { ranked, relevant });
            }
            let m = judge(&judged, input.spec.k);
            Ok(EvalRow {
                collection: input.collection,
                mode: input
                    .mode
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default(),
                model_id,
                queries: suite.len(),
                recall_at_k: m.recall_at_k,
                mrr: m.mrr,
                ndcg_at_10: m.ndcg_at_10,
            })
        })
        .await
    }
}

impl JobActivities {
    /// `(partition, low, high)` of the documents topic now.
    async fn topic_bounds(&self) -> Result<Vec<(i32, i64, i64)>, ActivityError> {
        let kafka = self.config.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let consumer = vecstream_kafka::scan::scan_consumer(&kafka, "vecstream-reindex")?;
            vecstream_kafka::scan::partition_bounds(
                &consumer,
                topics::DOCUMENTS,
                Duration::from_secs(30),
            )
        })
        .await
        .map_err(JobError::from)
        .activity_err()?
        .activity_err()
    }
}

#[cfg(test)]
mod engine_cache_tests {
    use std::sync::Arc;

    use super::{EngineCache, ModelKey};
    use crate::types::Precision;

    fn key(name: &str) -> ModelKey {
        (name.to_owned(), None, Precision::Fp32)
    }

    #[test]
    fn the_least_recently_used_idle_engine_is_unloaded_and_one_in_use_never() {
        let mut cache: EngineCache<&str> = EngineCache::default();
        let (a, unloaded) = cache.insert(key("a"), Arc::new("a"), 2);
        assert!(unloaded.is_empty());
        drop(a);
        let (b, _) = cache.insert(key("b"), Arc::new("b"), 2);
        drop(b);
        // `a` used again: `b` is now the least recently used.
        drop(cache.get(&key("a")));
        let (c, unloaded) = cache.insert(key("c"), Arc::new("c"), 2);
        assert_eq!(unloaded.iter().map(|e| **e).collect::<Vec<_>>(), ["b"]);
        assert!(cache.get(&key("b")).is_none());
        // Both left are in use: a fourth model goes over the bound rather than unload them.
        let a = cache.get(&key("a")).unwrap();
        let (d, unloaded) = cache.insert(key("d"), Arc::new("d"), 2);
        assert!(unloaded.is_empty());
        assert_eq!(cache.engines.len(), 3);
        // Once released, the next load brings it back within the bound.
        drop((a, c, d));
        let (_e, unloaded) = cache.insert(key("e"), Arc::new("e"), 2);
        assert_eq!(unloaded.len(), 2);
        assert_eq!(cache.engines.len(), 2);
    }
}
