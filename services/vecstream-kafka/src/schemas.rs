//! The Avro schemas of `schemas/`, compiled into the binary so producers and consumers
//! always agree with the repository's contract.

use apache_avro::Schema;

use crate::KafkaEdgeError;

/// `vecstream.v1.Document` (subject `docs.documents.v1-value`).
pub const DOCUMENT: &str = include_str!("../../../schemas/document.avsc");
/// `vecstream.v1.DocumentVectors` (subject `docs.vectors.v1-value`).
pub const DOCUMENT_VECTORS: &str = include_str!("../../../schemas/document_vectors.avsc");
/// `vecstream.v1.LineageEvent` (subject `docs.lineage.v1-value`).
pub const LINEAGE_EVENT: &str = include_str!("../../../schemas/lineage_event.avsc");

/// Parses a schema's JSON text.
pub fn parse(text: &str) -> Result<Schema, KafkaEdgeError> {
    Schema::parse_str(text).map_err(|e| KafkaEdgeError::Schema(e.to_string()))
}

/// BACKWARD compatibility as the registry defines it: consumers using `new` can read
/// everything written with `old`. Returns the reason when they cannot.
pub fn backward_compatible(old: &Schema, new: &Schema) -> Result<(), String> {
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(old, new)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every current schema reads data written by each of its released versions.
    #[test]
    fn schemas_are_backward_compatible() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let mut checked = 0;
        for (name, current) in [
            ("document", DOCUMENT),
            ("document_vectors", DOCUMENT_VECTORS),
            ("lineage_event", LINEAGE_EVENT),
        ] {
            let current = parse(current).unwrap_or_else(|e| panic!("{name}.avsc: {e}"));
            let released: Vec<_> = std::fs::read_dir(dir.join("released"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let file = p.file_name().unwrap().to_string_lossy().into_owned();
                    file.starts_with(&format!("{name}.v")) && file.ends_with(".avsc")
                })
                .collect();
            assert!(
                !released.is_empty(),
                "no released version of {name} in schemas/released"
            );
            for path in released {
                let old = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
                backward_compatible(&old, &current)
                    .unwrap_or_else(|why| panic!("{name}.avsc breaks {}: {why}", path.display()));
                checked += 1;
            }
        }
        assert!(checked >= 3);
    }

    /// The check can fail: a new required field without a default is not BACKWARD.
    #[test]
    fn an_added_field_without_default_is_rejected() {
        let old = parse(DOCUMENT).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "language", "type": "string"}));
        let broken = parse(&json.to_string()).unwrap();
        assert!(backward_compatible(&old, &broken).is_err());

        // The same field with a default is a compatible evolution.
        json["fields"].as_array_mut().unwrap().pop();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "language", "type": "string", "default": "und"}));
        let evolved = parse(&json.to_string()).unwrap();
        assert!(backward_compatible(&old, &evolved).is_ok());
    }

    /// Changing a field's type incompatibly is caught too.
    #[test]
    fn a_changed_field_type_is_rejected() {
        let old = parse(DOCUMENT).unwrap();
        let changed = DOCUMENT.replace(
            r#"{"name": "version", "type": "long""#,
            r#"{"name": "version", "type": "int""#,
        );
        assert_ne!(changed, DOCUMENT);
        assert!(backward_compatible(&old, &parse(&changed).unwrap()).is_err());
    }
}
