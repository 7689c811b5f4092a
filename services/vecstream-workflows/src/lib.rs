//! Temporal side of vecstream.

mod connection;
#[allow(
    missing_debug_implementations,
    reason = "the Temporal macros generate marker types without Debug"
)]
mod health;

pub use connection::{TemporalError, connect, describe_namespace};
pub use health::{
    HEALTH_CHECK_WORKFLOW_ID_PREFIX, HealthActivities, HealthCheckWorkflow, run_health_check,
    worker_options,
};
