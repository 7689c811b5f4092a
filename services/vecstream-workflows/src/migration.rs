//! The model migration of an alias as one state every component reads: which model and
//! collection serve searches (live), which one is being built (target), which one is kept
//! current for a rollback (previous), which one is being retired, and the phase.
//!
//! It lives in the compacted topic `docs.control.v1` (key = alias, JSON value). The reindex
//! workflow moves it through [`MigrationEvent`]s (each one an activity, each one idempotent:
//! it sets fields to the values it carries); the first embedder of a fresh alias writes its
//! first state. Embedders read it to choose the model they embed with ([`StreamModel`]);
//! `vecstream status` and `reindex status` show it. See the README, "Model migration".

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use vecstream_config::KafkaConfig;
use vecstream_core::topics;
use vecstream_kafka::KafkaEdgeError;

use crate::types::ModelTarget;

/// A model and the collection of its chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCollection {
    pub model_id: String,
    pub collection: String,
    /// How to load the model (so that a component configured with another model can embed
    /// with this one).
    pub target: ModelTarget,
}

/// Where the alias's migration is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// One model serves; nothing is being built or kept.
    #[default]
    Steady,
    /// The target collection is being filled (scan, evaluation).
    Building,
    AwaitingReview,
    /// Approved: the alias serves the new collection; the previous one is kept current
    /// until the window closes or a rollback.
    RollbackWindow,
    /// The migration ended; embedders leave the retiring collection, which is then dropped.
    Ending,
}

impl MigrationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Steady => "steady",
            MigrationPhase::Building => "building",
            MigrationPhase::AwaitingReview => "awaiting_review",
            MigrationPhase::RollbackWindow => "rollback_window",
            MigrationPhase::Ending => "ending",
        }
    }
}

/// Why a model no longer takes part in the alias's migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetiredBecause {
    /// Its reindex was rejected, timed out, failed its evaluation or was cancelled.
    Rejected,
    /// It was approved, then rolled back.
    RolledBack,
    /// Another model replaced it and the rollback window closed.
    Superseded,
}

/// A model the alias will not migrate to on its own again (an operator's `reindex start`
/// may).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredModel {
    pub model_id: String,
    pub because: RetiredBecause,
    /// The operator's or the workflow's words (reviewer, timeout...).
    pub reason: String,
    pub workflow_id: String,
}

/// The migration state of one alias (the value of its key in `docs.control.v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationState {
    pub alias: String,
    pub phase: MigrationPhase,
    /// Serves searches through the alias.
    pub live: Option<ModelCollection>,
    /// Being built; receives every change until the migration ends.
    pub target: Option<ModelCollection>,
    /// Served before the cutover; kept current during the rollback window.
    pub previous: Option<ModelCollection>,
    /// No component may write to it any more; dropped once the grace period has passed.
    #[serde(default)]
    pub retiring: Option<String>,
    /// The reindex workflow driving the migration.
    #[serde(default)]
    pub workflow_id: Option<String>,
    #[serde(default)]
    pub retired: Vec<RetiredModel>,
    /// When the state last changed (ms since the epoch).
    #[serde(default)]
    pub updated_ms: i64,
}

/// One step of a migration; applying it twice gives the same state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationEvent {
    /// A fresh alias: its first model.
    Bootstrapped {
        live: ModelCollection,
    },
    /// A reindex starts building `target` (and learns `live` if the state did not know it).
    Started {
        live: Option<ModelCollection>,
        target: ModelCollection,
    },
    AwaitingReview,
    /// Approved: the alias now serves `live`; `previous` is kept for a rollback.
    CutOver {
        live: ModelCollection,
        previous: ModelCollection,
    },
    /// The target will not serve.
    Rejected {
        target: ModelCollection,
        reason: String,
    },
    /// Approved, then rolled back: `live` serves again; `rolled_back` retires.
    RolledBack {
        live: ModelCollection,
        rolled_back: ModelCollection,
        reason: String,
    },
    /// The rollback window closed: `previous` retires.
    WindowClosed {
        previous: ModelCollection,
    },
    /// The retiring collection is dropped: back to one model.
    Ended,
}

impl MigrationState {
    /// The state after `event`, driven by `workflow_id` at `now_ms`.
    pub fn apply(mut self, event: &MigrationEvent, workflow_id: &str, now_ms: i64) -> Self {
        let retire =
            |s: &mut Self, model: &ModelCollection, because: RetiredBecause, reason: &str| {
                s.retired.retain(|r| r.model_id != model.model_id);
                s.retired.push(RetiredModel {
                    model_id: model.model_id.clone(),
                    because,
                    reason: reason.to_owned(),
                    workflow_id: workflow_id.to_owned(),
                });
            };
        match event {
            MigrationEvent::Bootstrapped { live } => {
                self.live = Some(live.clone());
                self.target = None;
                self.previous = None;
                self.retiring = None;
                self.phase = MigrationPhase::Steady;
            }
            MigrationEvent::Started { live, target } => {
                if self.live.is_none() {
                    self.live = live.clone();
                }
                self.target = Some(target.clone());
                self.previous = None;
                self.retiring = None;
                self.retired.retain(|r| r.model_id != target.model_id);
                self.phase = MigrationPhase::Building;
            }
            MigrationEvent::AwaitingReview => self.phase = MigrationPhase::AwaitingReview,
            MigrationEvent::CutOver { live, previous } => {
                self.live = Some(live.clone());
                self.previous = Some(previous.clone());
                self.target = None;
                self.phase = MigrationPhase::RollbackWindow;
            }
            MigrationEvent::Rejected { target, reason } => {
                self.target = None;
                self.retiring = Some(target.collection.clone());
                retire(&mut self, target, RetiredBecause::Rejected, reason);
                self.phase = MigrationPhase::Ending;
            }
            MigrationEvent::RolledBack {
                live,
                rolled_back,
                reason,
            } => {
                self.live = Some(live.clone());
                self.previous = None;
                self.target = None;
                self.retiring = Some(rolled_back.collection.clone());
                retire(&mut self, rolled_back, RetiredBecause::RolledBack, reason);
                self.phase = MigrationPhase::Ending;
            }
            MigrationEvent::WindowClosed { previous } => {
                self.previous = None;
                self.retiring = Some(previous.collection.clone());
                retire(
                    &mut self,
                    previous,
                    RetiredBecause::Superseded,
                    "replaced; the rollback window closed",
                );
                self.phase = MigrationPhase::Ending;
            }
            MigrationEvent::Ended => {
                self.retiring = None;
                self.phase = MigrationPhase::Steady;
            }
        }
        self.workflow_id = Some(workflow_id.to_owned()).filter(|w| !w.is_empty());
        self.updated_ms = now_ms;
        self
    }

    /// The collections components write to: live, target and previous.
    pub fn in_use(&self) -> Vec<&ModelCollection> {
        [&self.live, &self.target, &self.previous]
            .into_iter()
            .flatten()
            .collect()
    }

    /// True when `collection` is live, target or previous.
    pub fn uses(&self, collection: &str) -> bool {
        self.in_use().iter().any(|m| m.collection == collection)
    }

    /// The model an embedder configured with `mine` embeds with: its own when it is live or
    /// kept for a rollback; otherwise the live one. An embedder of the model being built
    /// embeds with the live one too until the cutover: the stream keeps the serving
    /// collection current at every offset (even one far behind, in a backlog), and the
    /// reindex's scan and catch-ups fill the target.
    pub fn stream_model(&self, mine: &str) -> StreamModel {
        let Some(live) = &self.live else {
            return StreamModel::Configured;
        };
        let own = [&self.live, &self.previous]
            .into_iter()
            .flatten()
            .any(|m| m.model_id == mine);
        if own {
            return StreamModel::Configured;
        }
        match self.retired.iter().find(|r| r.model_id == mine) {
            Some(r) => StreamModel::Live {
                live: live.clone(),
                retired: Some(r.clone()),
            },
            None => StreamModel::Live {
                live: live.clone(),
                retired: None,
            },
        }
    }

    /// One line for logs and `vecstream status`.
    pub fn summary(&self) -> String {
        let name = |m: &Option<ModelCollection>| {
            m.as_ref()
                .map(|m| format!("{} ({})", m.collection, m.model_id))
                .unwrap_or_else(|| "-".into())
        };
        let mut line = format!(
            "alias {}: {}, live {}",
            self.alias,
            self.phase.as_str(),
            name(&self.live)
        );
        if self.target.is_some() {
            line.push_str(&format!(", target {}", name(&self.target)));
        }
        if self.previous.is_some() {
            line.push_str(&format!(", previous {}", name(&self.previous)));
        }
        if let Some(r) = &self.retiring {
            line.push_str(&format!(", retiring {r}"));
        }
        if let Some(w) = &self.workflow_id {
            line.push_str(&format!(", workflow {w}"));
        }
        line
    }
}

/// What an embedder embeds with, given the alias's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamModel {
    /// Its configured model: live, target or previous (or the alias has no state yet).
    Configured,
    /// The live model: the configured one is not part of the migration. `retired` says
    /// why when the migration retired it (then no reindex to it starts on its own).
    Live {
        live: ModelCollection,
        retired: Option<RetiredModel>,
    },
}

/// Reads and writes `docs.control.v1`. One consumer and one producer for its lifetime: an
/// embedder reads the topic every `embedder.control_poll_ms`.
#[derive(Clone)]
pub struct ControlTopic {
    kafka: KafkaConfig,
    producer: rdkafka::producer::FutureProducer,
    consumer: std::sync::Arc<std::sync::Mutex<rdkafka::consumer::BaseConsumer>>,
}

impl std::fmt::Debug for ControlTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlTopic")
            .field("brokers", &self.kafka.brokers)
            .finish()
    }
}

impl ControlTopic {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, KafkaEdgeError> {
        Ok(Self {
            kafka: kafka.clone(),
            producer: vecstream_kafka::idempotent_config(kafka).create()?,
            consumer: std::sync::Arc::new(std::sync::Mutex::new(
                vecstream_kafka::scan::scan_consumer(kafka, "vecstream-control")?,
            )),
        })
    }

    /// Every alias's state, read from the beginning of the topic to its end.
    pub async fn read_all(&self) -> Result<HashMap<String, MigrationState>, KafkaEdgeError> {
        let kafka = self.kafka.clone();
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock still guards a usable consumer (each scan reassigns it).
            let consumer = consumer.lock().unwrap_or_else(|p| p.into_inner());
            let mut states = HashMap::new();
            let timeout = Duration::from_millis(kafka.request_timeout_ms.max(1_000));
            let scanned = vecstream_kafka::scan::scan_with(
                &consumer,
                topics::CONTROL,
                vecstream_kafka::scan::ScanFrom::Beginning,
                timeout,
                |m| {
                    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                        return;
                    };
                    match m.payload().map(serde_json::from_slice::<MigrationState>) {
                        Some(Ok(state)) => {
                            states.insert(key.to_owned(), state);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(alias = key, error = %e, "unreadable migration state")
                        }
                        None => {
                            states.remove(key);
                        }
                    }
                },
            );
            match scanned {
                Ok(_) => Ok(states),
                // Not created yet (or its metadata not propagated): no alias has a state.
                Err(KafkaEdgeError::Topic { ref message, .. })
                    if message.contains("does not exist") =>
                {
                    Ok(HashMap::new())
                }
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| KafkaEdgeError::Topic {
            topic: topics::CONTROL.into(),
            message: e.to_string(),
        })?
    }

    /// The state of `alias`, if it has one.
    pub async fn read(&self, alias: &str) -> Result<Option<MigrationState>, KafkaEdgeError> {
        Ok(self.read_all().await?.remove(alias))
    }

    /// Writes `state` as its alias's latest (acknowledged by the brokers when this returns).
    pub async fn write(&self, state: &MigrationState) -> Result<(), KafkaEdgeError> {
        let payload = serde_json::to_vec(state).map_err(|e| KafkaEdgeError::Topic {
            topic: topics::CONTROL.into(),
            message: e.to_string(),
        })?;
        self.producer
            .send(
                FutureRecord::to(topics::CONTROL)
                    .key(state.alias.as_bytes())
                    .payload(&payload),
                Duration::from_millis(self.kafka.request_timeout_ms.max(1_000)),
            )
            .await
            .map_err(|(e, _)| KafkaEdgeError::Kafka(e))?;
        Ok(())
    }

    /// Applies `event` to the alias's current state and writes the result.
    pub async fn apply(
        &self,
        alias: &str,
        event: &MigrationEvent,
        workflow_id: &str,
    ) -> Result<MigrationState, KafkaEdgeError> {
        let current = self.read(alias).await?;
        // An embedder's first state (no workflow) never overwrites one written meanwhile.
        if let (Some(existing), MigrationEvent::Bootstrapped { .. }, "") =
            (&current, event, workflow_id)
        {
            return Ok(existing.clone());
        }
        let current = current.unwrap_or_else(|| MigrationState {
            alias: alias.to_owned(),
            ..Default::default()
        });
        let next = current.apply(event, workflow_id, now_ms());
        self.write(&next).await?;
        Ok(next)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> ModelCollection {
        ModelCollection {
            model_id: name.to_owned(),
            collection: format!("Chunk_{name}"),
            target: ModelTarget {
                model_dir: format!("/models/{name}"),
                max_seq_length: None,
                precision: Default::default(),
            },
        }
    }

    fn fresh() -> MigrationState {
        MigrationState {
            alias: "Chunks".into(),
            ..Default::default()
        }
        .apply(&MigrationEvent::Bootstrapped { live: model("a") }, "", 1)
    }

    #[test]
    fn an_approved_migration_keeps_the_previous_model_until_the_window_closes() {
        let started = fresh().apply(
            &MigrationEvent::Started {
                live: None,
                target: model("b"),
            },
            "w",
            2,
        );
        assert_eq!(started.phase, MigrationPhase::Building);
        assert!(started.uses("Chunk_a") && started.uses("Chunk_b"));
        // The live model's embedder keeps its own; the target's and a third model's embed
        // with the live one until the cutover (the scan and catch-ups fill the target).
        assert_eq!(started.stream_model("a"), StreamModel::Configured);
        assert_eq!(
            started.stream_model("b"),
            StreamModel::Live {
                live: model("a"),
                retired: None
            }
        );
        assert_eq!(
            started.stream_model("c"),
            StreamModel::Live {
                live: model("a"),
                retired: None
            }
        );
        let cut = started.apply(
            &MigrationEvent::CutOver {
                live: model("b"),
                previous: model("a"),
            },
            "w",
            3,
        );
        assert_eq!(cut.phase, MigrationPhase::RollbackWindow);
        assert_eq!(cut.stream_model("a"), StreamModel::Configured);
        assert_eq!(cut.stream_model("b"), StreamModel::Configured);
        // Idempotent: an activity retried after it wrote the state.
        let again = cut.clone().apply(
            &MigrationEvent::CutOver {
                live: model("b"),
                previous: model("a"),
            },
            "w",
            3,
        );
        assert_eq!(again, cut);
        let closed = cut.apply(
            &MigrationEvent::WindowClosed {
                previous: model("a"),
            },
            "w",
            4,
        );
        assert_eq!(closed.retiring.as_deref(), Some("Chunk_a"));
        assert!(!closed.uses("Chunk_a"));
        // The old model's embedder moves to the new live model, and starts no reindex.
        match closed.stream_model("a") {
            StreamModel::Live {
                live,
                retired: Some(r),
            } => {
                assert_eq!(live, model("b"));
                assert_eq!(r.because, RetiredBecause::Superseded);
            }
            other => panic!("{other:?}"),
        }
        let ended = closed.apply(&MigrationEvent::Ended, "w", 5);
        assert_eq!(ended.phase, MigrationPhase::Steady);
        assert_eq!(ended.retiring, None);
        assert!(ended.summary().contains("steady, live Chunk_b"));
    }

    #[test]
    fn a_rejected_or_rolled_back_model_retires_and_a_new_start_clears_it() {
        let building = fresh().apply(
            &MigrationEvent::Started {
                live: None,
                target: model("b"),
            },
            "w",
            2,
        );
        let rejected = building.apply(
            &MigrationEvent::Rejected {
                target: model("b"),
                reason: "rejected by ops".into(),
            },
            "w",
            3,
        );
        assert_eq!(rejected.retiring.as_deref(), Some("Chunk_b"));
        assert_eq!(rejected.live, Some(model("a")));
        match rejected.stream_model("b") {
            StreamModel::Live {
                retired: Some(r), ..
            } => {
                assert_eq!(r.because, RetiredBecause::Rejected);
                assert_eq!(r.reason, "rejected by ops");
            }
            other => panic!("{other:?}"),
        }
        // An operator starts it again: no longer retired.
        let retried = rejected.apply(
            &MigrationEvent::Started {
                live: None,
                target: model("b"),
            },
            "w2",
            4,
        );
        assert!(retried.retired.is_empty());
        let cut = retried.apply(
            &MigrationEvent::CutOver {
                live: model("b"),
                previous: model("a"),
            },
            "w2",
            5,
        );
        let back = cut.apply(
            &MigrationEvent::RolledBack {
                live: model("a"),
                rolled_back: model("b"),
                reason: "rolled back by ops".into(),
            },
            "w2",
            6,
        );
        assert_eq!(back.live, Some(model("a")));
        assert_eq!(back.previous, None);
        assert_eq!(back.retiring.as_deref(), Some("Chunk_b"));
        assert_eq!(back.retired[0].because, RetiredBecause::RolledBack);
        let json = serde_json::to_string(&back).unwrap();
        assert_eq!(serde_json::from_str::<MigrationState>(&json).unwrap(), back);
    }
}
