//! Telemetry start-up shared by all vecstream services.

mod health;
mod metrics;
mod propagation;
mod tracing_init;

pub use health::{HealthServer, Readiness, health_routes};
pub use metrics::Metrics;
pub use propagation::{continue_trace, own_hop};
pub use tracing_init::{TelemetryError, TracingGuard, init_tracing};
