//! Collection names and schemas: what a chunk collection looks like.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The prefix every chunk collection's name starts with: the collections of an alias's
/// family (live, pending, kept for rollback) are the ones that carry it.
pub const CHUNK_COLLECTION_PREFIX: &str = "Chunk_";

/// True for the name of a chunk collection (see [`collection_name`]).
pub fn is_chunk_collection(name: &str) -> bool {
    name.starts_with(CHUNK_COLLECTION_PREFIX)
}

/// Collection of one model's chunks: `Chunk_<model-slug>_<hash8>` (DESIGN section 1).
///
/// The slug keeps names readable; the hash of the full model id keeps two models whose
/// names slug alike apart.
pub fn collection_name(model_id: &str) -> String {
    let slug: String = model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>()
        .split('_')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    let slug: String = slug.chars().take(48).collect();
    let hash = hex::encode(&Sha256::digest(model_id.as_bytes())[..4]);
    format!("{CHUNK_COLLECTION_PREFIX}{slug}_{hash}")
}

/// One property of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Property {
    pub name: String,
    /// Weaviate data type: `text`, `int`, `number`, `boolean`, `uuid`, `date`...
    #[serde(rename = "dataType")]
    pub data_type: Vec<String>,
    /// Whether `text` is tokenised for keyword search; ids are matched whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenization: Option<String>,
}

impl Property {
    /// A property of type `data_type`.
    pub fn new(name: &str, data_type: &str) -> Self {
        Self {
            name: name.into(),
            data_type: vec![data_type.into()],
            tokenization: None,
        }
    }

    /// A text property matched as a whole (ids, hashes), not word by word.
    pub fn keyword(name: &str) -> Self {
        Self {
            tokenization: Some("field".into()),
            ..Self::new(name, "text")
        }
    }
}

/// A collection with externally supplied vectors (vectorizer `none`).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSpec {
    pub name: String,
    pub properties: Vec<Property>,
    /// `cosine` for normalised sentence embeddings.
    pub distance: String,
}

impl CollectionSpec {
    /// The collection of one model's chunks (DESIGN section 1): `Chunk_<slug>_<hash8>`, cosine
    /// distance, one object per chunk with the properties search and lineage need.
    pub fn chunks(model_id: &str) -> Self {
        Self::chunks_named(&collection_name(model_id))
    }

    /// The chunk collection schema under a given name (a name from [`collection_name`]).
    pub fn chunks_named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            properties: vec![
                Property::keyword("doc_id"),
                // `number`, not `int`: GraphQL's Int is 32-bit and answers null for versions
                // such as epoch milliseconds; float64 holds integers exactly up to 2^53.
                Property::new("doc_version", "number"),
                Property::keyword("tenant"),
                Property::new("chunk_index", "int"),
                Property::new("text", "text"),
                Property::new("char_start", "int"),
                Property::new("char_end", "int"),
                Property::new("token_count", "int"),
                Property::keyword("content_hash"),
                Property::keyword("model_id"),
            ],
            distance: "cosine".into(),
        }
    }
}

impl CollectionSpec {
    /// How `stored` (the `properties` of a collection as Weaviate describes it) differs from
    /// this spec: one line per property missing or of another data type. Empty when it
    /// matches. Properties Weaviate holds beyond the spec are reported too: a collection
    /// that grew them was written by something else (auto-schema).
    pub fn differences(&self, stored: &[serde_json::Value]) -> Vec<String> {
        let stored: std::collections::BTreeMap<&str, Vec<&str>> = stored
            .iter()
            .filter_map(|p| {
                let name = p.get("name")?.as_str()?;
                let types = p
                    .get("dataType")?
                    .as_array()?
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect();
                Some((name, types))
            })
            .collect();
        let mut problems = Vec::new();
        for p in &self.properties {
            let want: Vec<&str> = p.data_type.iter().map(String::as_str).collect();
            match stored.get(p.name.as_str()) {
                None => problems.push(format!("property {} is missing", p.name)),
                Some(have) if *have != want => {
                    problems.push(format!("property {} is {have:?}, not {want:?}", p.name))
                }
                Some(_) => {}
            }
        }
        for name in stored.keys() {
            if !self.properties.iter().any(|p| p.name == *name) {
                problems.push(format!("property {name} is not ours"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn described(spec: &CollectionSpec) -> Vec<serde_json::Value> {
        spec.properties
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "dataType": p.data_type}))
            .collect()
    }

    #[test]
    fn a_collection_of_our_schema_has_no_differences_and_a_guessed_one_has() {
        let spec = CollectionSpec::chunks("m");
        assert!(is_chunk_collection(&spec.name));
        assert!(!is_chunk_collection("Other"));
        assert!(spec.differences(&described(&spec)).is_empty());
        // What auto-schema guesses from a JSON object: numbers as `number`, no keyword ids.
        let mut guessed = described(&spec);
        guessed[3] = serde_json::json!({"name": "chunk_index", "dataType": ["number"]});
        guessed.retain(|p| p["name"] != "model_id");
        guessed.push(serde_json::json!({"name": "extra", "dataType": ["text"]}));
        let d = spec.differences(&guessed);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("chunk_index"), "{d:?}");
        assert!(d[1].contains("model_id is missing"), "{d:?}");
        assert!(d[2].contains("extra is not ours"), "{d:?}");
    }
}
