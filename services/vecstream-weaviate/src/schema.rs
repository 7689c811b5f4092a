//! Collection names and schemas: what a chunk collection looks like.

use serde::Serialize;
use sha2::{Digest, Sha256};

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
    format!("Chunk_{slug}_{hash}")
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
