//! Temporal side of vecstream: the connection, the long jobs (reindex, evaluation,
//! fine-tuning) with
//! their activities, the registry every start goes through, and worker set-up.

#[allow(
    missing_debug_implementations,
    reason = "the Temporal macros generate marker types without Debug"
)]
pub mod activities;
mod connection;
pub mod errors;
mod escalator;
pub mod eval;
#[allow(
    missing_debug_implementations,
    reason = "the Temporal macros generate marker types without Debug"
)]
pub mod finetune;
#[allow(
    missing_debug_implementations,
    reason = "the Temporal macros generate marker types without Debug"
)]
mod health;
pub mod migration;
pub mod registry;
pub mod review;
pub mod signing;
pub mod types;
#[allow(
    missing_debug_implementations,
    reason = "the Temporal macros generate marker types without Debug"
)]
pub mod workflows;

pub use activities::JobActivities;
pub use connection::{TemporalError, connect, describe_namespace};
pub use errors::{ActivityResultExt, JobError, activity_error, is_already_started};
pub use escalator::TemporalEscalator;
pub use health::{
    HEALTH_CHECK_WORKFLOW_ID_PREFIX, HealthActivities, HealthCheckWorkflow, run_health_check,
};
pub use registry::worker_options;
pub use types::*;
pub use workflows::{EvaluateWorkflow, FineTuneWorkflow, LargeDocumentWorkflow, ReindexWorkflow};
