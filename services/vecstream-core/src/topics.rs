//! Topic names of DESIGN section 2 and the TopicNameStrategy subject rule.

/// Compacted source of truth: key = doc id, value = `Document`, null value = delete.
pub const DOCUMENTS: &str = "docs.documents.v1";
/// Embedded chunks of one document version (or a delete): key = doc id.
pub const VECTORS: &str = "docs.vectors.v1";
/// OpenLineage-shaped events for analysts: key = doc id or run id.
pub const LINEAGE: &str = "docs.lineage.v1";
/// Poison documents: original key and bytes, error headers.
pub const DOCUMENTS_DLQ: &str = "docs.documents.dlq.v1";

/// Internal, compacted: the embedder's per-document memory (version, model id, content
/// hash), written in the same transaction as the vectors; key = doc id, partition = the
/// document's partition. JSON values; not a contract for consumers.
pub const EMBEDDER_STATE: &str = "docs.embedder-state.v1";

/// Internal, compacted, one partition: the model migration state of each alias (live,
/// target and previous model and collection, phase, retired models); key = alias. JSON
/// values written by the reindex workflow (and by the first embedder of a fresh alias), read
/// by embedders, `vecstream status` and `reindex status`.
pub const CONTROL: &str = "docs.control.v1";

/// Schema registry subject of a topic's values (Confluent TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    #[test]
    fn subject_follows_topic_name_strategy() {
        assert_eq!(
            super::value_subject(super::DOCUMENTS),
            "docs.documents.v1-value"
        );
    }
}
