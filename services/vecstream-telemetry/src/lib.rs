//! Telemetry start-up shared by all vecstream services.

mod health;
mod metrics;
mod tracing_init;

pub use health::{HealthServer, Readiness};
pub use metrics::Metrics;
pub use tracing_init::{TelemetryError, TracingGuard, init_tracing};
