//! The provider named by `engine.provider` and its ordered fallback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vecstream_config::EngineSettings;
use vecstream_engine::Engine;
use vecstream_engine::tokenize::TextTokenizer;

use crate::limits::Breaker;
use crate::{
    EmbedInput, Lane, LocalProvider, Provider, ProviderError, ProviderMetrics, RemoteProvider,
    cosine,
};

/// What the chain's probe embeds to check that a remote provider claiming the local model's
/// vector space really computes it.
const PROBE_TEXT: &str =
    "vecstream vector space probe: the quick brown fox jumps over the lazy dog.";

/// Least cosine between the remote's and the local engine's probe vectors (int8 against
/// fp32 of one model stays above it; two different models fall far below).
const PROBE_MIN_COSINE: f32 = 0.99;

/// Vectors, and who embedded them.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// The member's name (`local` or a provider's).
    pub provider: String,
    /// `cpu`, `cuda`, `openai` or `tei`.
    pub backend: String,
}

#[derive(Debug, Clone)]
enum Probe {
    NotNeeded,
    Pending,
    Passed,
    Failed(ProviderError),
}

#[derive(Debug)]
struct Member {
    provider: Arc<dyn Provider>,
    /// Remote members only: the engine's own errors are not the provider being down.
    breaker: Option<Breaker>,
    probe: Mutex<Probe>,
}

/// Builds chains from `engine.*` settings.
#[derive(Debug, Clone)]
pub struct ChainBuilder {
    settings: EngineSettings,
    metrics: ProviderMetrics,
}

impl ChainBuilder {
    pub fn new(settings: &EngineSettings, metrics: ProviderMetrics) -> Self {
        Self {
            settings: settings.clone(),
            metrics,
        }
    }

    /// True when `engine.provider` is the local engine with no fallback.
    pub fn is_local_only(&self) -> bool {
        self.settings.provider == "local"
    }

    /// Checks that every remote member of the configured chain serves the vector space of
    /// `local_model_id` (the model of `engine.model_dir`): collections, chunk ids and
    /// migrations are keyed by local models, so a remote model of its own space is refused
    /// at start rather than filling a collection with vectors of another space.
    pub fn check_serves(&self, local_model_id: &str) -> Result<(), ProviderError> {
        let names = std::iter::once(&self.settings.provider).chain(&self.settings.fallback);
        for name in names.filter(|n| *n != "local") {
            let Some(cfg) = self.settings.providers.iter().find(|p| &p.name == name) else {
                return Err(ProviderError::Config(format!("no provider named `{name}`")));
            };
            let space = crate::vector_space_of(cfg, Some(local_model_id))?;
            if space != local_model_id {
                return Err(ProviderError::Config(format!(
                    "provider `{name}` embeds with its own model ({space}) but engine.model_dir                      is {local_model_id}: the pipeline embeds in a local model's vector space                      (its collections, chunk ids and migrations are keyed by it). Run that model                      behind the provider (`vecstream serve`, TEI) and set the provider's                      `model` to {local_model_id}"
                )));
            }
        }
        Ok(())
    }

    /// The configured chain around `local` (the engine of `engine.model_dir`: the
    /// tokenizer, the reference of the vector-space probe, and a member where listed),
    /// calling remote members in `lane` unless they name their own.
    pub fn build(&self, local: Arc<Engine>, lane: Lane) -> Result<ProviderChain, ProviderError> {
        let local_id = local.info().model_id.clone();
        let names = std::iter::once(&self.settings.provider).chain(&self.settings.fallback);
        let mut members: Vec<(Arc<dyn Provider>, Option<Breaker>)> = Vec::new();
        for name in names {
            if name == "local" {
                members.push((Arc::new(LocalProvider::new(local.clone())), None));
                continue;
            }
            let cfg = self
                .settings
                .providers
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| ProviderError::Config(format!("no provider named `{name}`")))?;
            let breaker = Breaker::new(
                cfg.breaker_failures,
                std::time::Duration::from_millis(cfg.breaker_open_ms),
            );
            members.push((
                Arc::new(RemoteProvider::new(
                    cfg,
                    Some(&local_id),
                    self.metrics.clone(),
                )?),
                Some(breaker),
            ));
        }
        ProviderChain::from_members(members, local, lane, self.metrics.clone())
    }

    /// The chain when it embeds in `model_id`'s space, else the local engine alone (a job
    /// or a migration on another model than the one the providers serve).
    pub fn build_for(
        &self,
        local: Arc<Engine>,
        lane: Lane,
    ) -> Result<ProviderChain, ProviderError> {
        if self.is_local_only() && self.settings.fallback.is_empty() {
            return ProviderChain::local(local, lane, self.metrics.clone());
        }
        let chain = self.build(local.clone(), lane)?;
        if chain.model_id() == local.info().model_id {
            Ok(chain)
        } else {
            tracing::warn!(
                model_id = %local.info().model_id,
                providers_space = %chain.model_id(),
                providers = ?chain.names(),
                "the configured providers serve another model: the local engine embeds this one"
            );
            ProviderChain::local(local, lane, self.metrics.clone())
        }
    }
}

/// The members in order; see the crate docs.
#[derive(Debug)]
pub struct ProviderChain {
    members: Vec<Member>,
    local: LocalProvider,
    lane: Lane,
    space: String,
    metrics: ProviderMetrics,
    /// Member that embedded last (to log a switch once).
    last: AtomicUsize,
}

impl ProviderChain {
    /// The local engine alone.
    pub fn local(
        local: Arc<Engine>,
        lane: Lane,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        let member: Arc<dyn Provider> = Arc::new(LocalProvider::new(local.clone()));
        Self::from_members(vec![(member, None)], local, lane, metrics)
    }

    /// A chain of `members` (each with its breaker); every member must share the first
    /// one's vector space.
    pub fn from_members(
        members: Vec<(Arc<dyn Provider>, Option<Breaker>)>,
        local: Arc<Engine>,
        lane: Lane,
        metrics: ProviderMetrics,
    ) -> Result<Self, ProviderError> {
        let first = members
            .first()
            .ok_or_else(|| ProviderError::Config("an empty provider chain".into()))?;
        let space = first.0.vector_space().to_owned();
        let local_id = local.info().model_id.clone();
        for (m, _) in &members[1..] {
            if m.vector_space() != space {
                return Err(ProviderError::Config(format!(
                    "`{}` embeds in the vector space {} but `{}` in {}: a fallback must \
                     compute the same vectors (name the local model's id as the remote's \
                     `model` when it runs that model)",
                    m.name(),
                    m.vector_space(),
                    first.0.name(),
                    space
                )));
            }
        }
        let members = members
            .into_iter()
            .map(|(provider, breaker)| {
                let probe = if provider.name() != "local" && provider.vector_space() == local_id {
                    Probe::Pending
                } else {
                    Probe::NotNeeded
                };
                Member {
                    provider,
                    breaker,
                    probe: Mutex::new(probe),
                }
            })
            .collect();
        Ok(Self {
            members,
            local: LocalProvider::new(local),
            lane,
            space,
            metrics,
            last: AtomicUsize::new(0),
        })
    }

    /// The vector space (model id) of every vector this chain returns.
    pub fn model_id(&self) -> &str {
        &self.space
    }

    /// The local model's tokenizer, for chunking.
    pub fn tokenizer(&self) -> &TextTokenizer {
        self.local.engine().tokenizer()
    }

    /// The local engine (its info: width, length limit).
    pub fn engine(&self) -> &Arc<Engine> {
        self.local.engine()
    }

    /// Names of the members, in order.
    pub fn names(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.provider.name().to_owned())
            .collect()
    }

    /// The lane remote calls are made in.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// Embeds `inputs` on the first member that can; see the crate docs.
    pub async fn embed(&self, inputs: &[EmbedInput]) -> Result<Embedded, ProviderError> {
        // Bare texts (queries) get the local tokenizer's ids, so every member (a remote
        // sent token ids among them) embeds exactly the text.
        let tokenised;
        let inputs = if inputs.iter().any(|i| i.token_ids.is_empty()) {
            let texts: Vec<&str> = inputs.iter().map(|i| i.text.as_str()).collect();
            let encoded = self.tokenizer().encode_batch(&texts)?;
            tokenised = inputs
                .iter()
                .zip(encoded)
                .map(|(i, e)| EmbedInput {
                    text: i.text.clone(),
                    token_ids: e.ids,
                })
                .collect::<Vec<_>>();
            tokenised.as_slice()
        } else {
            inputs
        };
        let mut errors = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let name = m.provider.name();
            if let Some(b) = &m.breaker
                && let Err(wait) = b.admit(Instant::now())
            {
                self.metrics
                    .calls
                    .with_label_values(&[name, "circuit_open"])
                    .inc();
                errors.push(ProviderError::Transient {
                    provider: name.to_owned(),
                    message: "circuit open after repeated failures".into(),
                    retry_after: Some(wait),
                });
                continue;
            }
            let started = Instant::now();
            let result = match self.verify(m).await {
                Ok(()) => m.provider.embed(inputs, self.lane).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(vectors) => {
                    if let Some(b) = &m.breaker {
                        b.success();
                        self.metrics.breaker_open.with_label_values(&[name]).set(0);
                    }
                    self.metrics.calls.with_label_values(&[name, "ok"]).inc();
                    self.metrics
                        .inputs
                        .with_label_values(&[name])
                        .inc_by(inputs.len() as u64);
                    self.metrics
                        .call_seconds
                        .with_label_values(&[name])
                        .observe(started.elapsed().as_secs_f64());
                    if i > 0 {
                        self.metrics
                            .fallbacks
                            .with_label_values(&[self.members[0].provider.name(), name])
                            .inc();
                    }
                    let before = self.last.swap(i, Ordering::Relaxed);
                    if before != i {
                        let from = self.members[before].provider.name();
                        if i > before {
                            tracing::warn!(from, to = name, errors = %ProviderError::AllFailed(errors.clone()), "embedding moved to the fallback provider");
                        } else {
                            tracing::info!(from, to = name, "embedding moved back to the provider");
                        }
                    }
                    return Ok(Embedded {
                        vectors,
                        provider: name.to_owned(),
                        backend: m.provider.backend().to_owned(),
                    });
                }
                Err(e) => {
                    let outcome = match &e {
                        ProviderError::Transient { .. } => "transient",
                        ProviderError::Throttled { .. } => "throttled",
                        ProviderError::WrongSpace { .. } => "wrong_space",
                        _ => "permanent",
                    };
                    self.metrics.calls.with_label_values(&[name, outcome]).inc();
                    if let Some(b) = &m.breaker {
                        let now = Instant::now();
                        let opened = match &e {
                            ProviderError::Transient { .. } => b.failure(now),
                            // Refused (a key, a model, a limit): the same refusal comes
                            // back on every call, so the member rests for `breaker_open_ms`.
                            ProviderError::Permanent { .. } => b.trip(now),
                            _ => {
                                b.settle_trial(now);
                                false
                            }
                        };
                        if opened {
                            self.metrics.breaker_open.with_label_values(&[name]).set(1);
                            tracing::warn!(provider = name, error = %e, "circuit breaker opened: calls go to the fallback");
                        }
                    }
                    errors.push(e);
                }
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            ProviderError::AllFailed(errors)
        })
    }

    /// Checks once that a remote member claiming the local model's space computes it.
    async fn verify(&self, m: &Member) -> Result<(), ProviderError> {
        match &*m.probe.lock().unwrap_or_else(|p| p.into_inner()) {
            Probe::NotNeeded | Probe::Passed => return Ok(()),
            Probe::Failed(e) => return Err(e.clone()),
            Probe::Pending => {}
        }
        let ids = self
            .tokenizer()
            .encode_batch(&[PROBE_TEXT])
            .map_err(ProviderError::from)?
            .remove(0)
            .ids;
        let probe = [EmbedInput {
            text: PROBE_TEXT.into(),
            token_ids: ids,
        }];
        let theirs = m.provider.embed(&probe, self.lane).await?;
        let ours = self.local.embed(&probe, self.lane).await?;
        let cos = match (theirs.first(), ours.first()) {
            (Some(a), Some(b)) if a.len() == b.len() => cosine(a, b),
            _ => 0.0,
        };
        let verdict = if cos >= PROBE_MIN_COSINE {
            tracing::info!(
                provider = m.provider.name(),
                cosine = cos,
                "provider's vectors match the local model's"
            );
            Probe::Passed
        } else {
            let e = ProviderError::WrongSpace {
                provider: m.provider.name().to_owned(),
                space: self.space.clone(),
                cosine: cos,
            };
            tracing::error!(error = %e, "provider refused");
            Probe::Failed(e)
        };
        let out = match &verdict {
            Probe::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        };
        *m.probe.lock().unwrap_or_else(|p| p.into_inner()) = verdict;
        out
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
