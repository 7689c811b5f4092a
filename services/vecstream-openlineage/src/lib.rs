//! OpenLineage export of vecstream's lineage.
//!
//! The Avro topic `docs.lineage.v1` stays the record of what happened; this crate turns
//! each of its events into an OpenLineage run event ([`convert`]) and sends it through the
//! transports OpenLineage defines ([`export`]): HTTP (`POST /api/v1/lineage`) and Kafka
//! (JSON on a topic of its own). The exporter reads the Avro topic in its own consumer
//! group, so the stream never waits on a lineage endpoint.

pub mod convert;
mod error;
pub mod export;
mod metrics;

pub use convert::{OpenLineageModel, SPEC_SCHEMA_URL};
pub use error::OpenLineageError;
pub use export::{ExportReport, Exporter, Mode};
pub use metrics::OpenLineageMetrics;
