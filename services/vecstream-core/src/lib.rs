//! Domain vocabulary of vecstream: topics, records, identities and error classes.
//!
//! Nothing here performs I/O; the Kafka, Weaviate and Temporal edges build on these types.

mod display;
mod error;
mod ids;
mod lane;
mod records;
pub mod topics;
mod trace;

pub use display::{path_component, printable};
pub use error::{Classify, ErrorClass, error_chain, io_class};
pub use ids::{
    CHUNK_NAMESPACE, DEFAULT_TENANT, KEY_SEPARATOR, MAX_DOC_ID_BYTES, MAX_RECORD_KEY_BYTES,
    MAX_TENANT_BYTES, bounded_key, check_doc_id, check_tenant, check_weaviate_tenant, chunk_id,
    content_hash, doc_key, key_hash, large_document_workflow_id, legacy_large_document_workflow_id,
    record_key, split_record_key,
};
pub use lane::{LANE_HEADER, Lane};
pub use records::{
    ChunkVector, Dataset, Document, DocumentVectors, EventType, Job, LineageEvent, Run,
    VecstreamFacet, default_tenant,
};
pub use trace::{TRACEPARENT_HEADER, TraceParent};
