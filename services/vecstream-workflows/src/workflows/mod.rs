//! The reindex and evaluation workflows: thin and deterministic. They decide the order of
//! things and keep the progress; every effect is an activity ([`crate::activities`]).
//!
//! Fine-tuning ([`FineTuneWorkflow`]): validate the pairs → embed them with the base model
//! → train the adapter (checkpointed, resumable) → stage the candidate → evaluate base
//! against candidate on the held-out split (child [`EvaluateWorkflow`]) → await review (a
//! timeout rejects) → register the version in the model store, or discard it.
//!
//! Reindex, as a phase machine that continue-as-new can resume at any phase:
//! preparing → scanning (partition offset ranges, then catch-ups to the topic's new end)
//! → evaluating (child [`EvaluateWorkflow`]) → awaiting review (catching up meanwhile; a
//! timeout is a reject) → swapping the alias (after a last catch-up) or dropping the new
//! collection.
//!
//! The `review` signal, the `progress` state behind the query, the wait for the review and
//! the phase lineage of both reviewed jobs are written once ([`job`]).
//!
//! Versioning: a change to what a workflow commands (activities, timers, child workflows,
//! their order) goes behind `ctx.patched("<id>")` so that runs started on the old code
//! replay; see the crate README. `tests/replay.rs` replays recorded histories of every
//! workflow against this code.

use std::time::{Duration, SystemTime};

use temporalio_sdk::ActivityOptions;

mod evaluate;
mod finetune;
pub(crate) mod job;
mod reindex;

pub use evaluate::{EvaluateWorkflow, LargeDocumentWorkflow};
pub use finetune::FineTuneWorkflow;
pub use reindex::ReindexWorkflow;

pub(crate) fn retry(attempts: u32) -> temporalio_common::RetryPolicy {
    temporalio_common::RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .maximum_attempts(attempts)
        .build()
}

/// Light activities (Weaviate schema, Kafka metadata, lineage) on the workflow's queue.
pub(crate) fn light() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry(5))
        .build()
}

/// The migration's state, alias and drop steps: retried without limit (every minute at
/// most). Giving up half-way (the alias swapped, the state not yet saying so) would leave
/// the alias's migration stuck; an outage of Kafka or Weaviate only delays them.
pub(crate) fn durable() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry(0))
        .build()
}

/// Embedding activities on the gpu queue: heartbeats, a start deadline that exposes
/// missing capacity, one hour per attempt and six hours over all retries.
pub(crate) fn heavy(queue: &str, heartbeat: Duration) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(
        temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: Duration::from_secs(6 * 3600),
            start_to_close: Duration::from_secs(3600),
        },
    )
    .task_queue(queue.to_owned())
    .schedule_to_start_timeout(Duration::from_secs(1800))
    .heartbeat_timeout(heartbeat)
    .retry_policy(retry(8))
    .build()
}

pub(crate) fn now_ms(time: Option<SystemTime>) -> i64 {
    time.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Training activities: few attempts (DESIGN: fewer retries for training), each resuming
/// from the last checkpoint.
pub(crate) fn training(queue: &str, heartbeat: Duration) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(
        temporalio_sdk::ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: Duration::from_secs(12 * 3600),
            start_to_close: Duration::from_secs(4 * 3600),
        },
    )
    .task_queue(queue.to_owned())
    .schedule_to_start_timeout(Duration::from_secs(1800))
    .heartbeat_timeout(heartbeat)
    .retry_policy(retry(4))
    .build()
}
