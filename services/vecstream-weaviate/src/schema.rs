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

/// How tenants are kept apart in a chunk collection (`weaviate.multi_tenancy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Tenancy {
    /// One shared collection; every read, search and delete filters on the `tenant`
    /// property (and deletes on the exact `doc_key`, which includes the tenant).
    #[default]
    Filter,
    /// Weaviate multi-tenancy: one Weaviate tenant per vecstream tenant, created on its first
    /// write; every request names the tenant, and Weaviate isolates them.
    MultiTenant,
}

impl Tenancy {
    /// The tenancy `weaviate.multi_tenancy` asks for.
    pub fn from_config(multi_tenancy: bool) -> Self {
        if multi_tenancy {
            Tenancy::MultiTenant
        } else {
            Tenancy::Filter
        }
    }

    /// The Weaviate tenant a request about `tenant`'s objects names: `Some` only with
    /// multi-tenancy.
    pub fn scope(self, tenant: &str) -> Option<&str> {
        (self == Tenancy::MultiTenant).then_some(tenant)
    }
}

/// The generation of the chunk schema, part of every collection name: collections written
/// before exact identities (generation 1: `doc_version` a float, no `doc_key`) keep their
/// names, so a reindex with the same model builds a new collection beside them.
const SCHEMA_GENERATION: &str = "2";

/// Collection of one model's chunks: `Chunk_<model-slug>_<hash8>` (DESIGN section 1).
///
/// The slug keeps names readable; the hash of the full model id (with the schema generation
/// and the tenancy, which a collection cannot change in place) keeps two models whose names
/// slug alike apart, and lets a reindex move the same model to another tenancy.
pub fn collection_name(model_id: &str, tenancy: Tenancy) -> String {
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
    let mode = match tenancy {
        Tenancy::Filter => "",
        Tenancy::MultiTenant => "\0multi-tenant",
    };
    let named = format!("{model_id}\0chunks-v{SCHEMA_GENERATION}{mode}");
    let hash = hex::encode(&Sha256::digest(named.as_bytes())[..4]);
    format!("{CHUNK_COLLECTION_PREFIX}{slug}_{hash}")
}

/// True when `collection` is the chunk collection of `model_id` in either tenancy (a
/// migration may move a model between them).
pub fn is_collection_of(model_id: &str, collection: &str) -> bool {
    [Tenancy::Filter, Tenancy::MultiTenant]
        .into_iter()
        .any(|t| collection_name(model_id, t) == collection)
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
    /// Added by a later release: added in place to collections that lack it, instead of
    /// counting as a difference.
    #[serde(skip)]
    pub added_later: bool,
}

impl Property {
    /// A property of type `data_type`.
    pub fn new(name: &str, data_type: &str) -> Self {
        Self {
            name: name.into(),
            data_type: vec![data_type.into()],
            tokenization: None,
            added_later: false,
        }
    }

    /// A property added by a later release (see [`Property::added_later`]).
    pub fn later(self) -> Self {
        Self {
            added_later: true,
            ..self
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
    pub tenancy: Tenancy,
}

impl CollectionSpec {
    /// The collection of one model's chunks (DESIGN section 1): `Chunk_<slug>_<hash8>`, cosine
    /// distance, one object per chunk with the properties search and lineage need.
    pub fn chunks(model_id: &str, tenancy: Tenancy) -> Self {
        Self::chunks_named(&collection_name(model_id, tenancy), tenancy)
    }

    /// The chunk collection schema under a given name (a name from [`collection_name`]).
    pub fn chunks_named(name: &str, tenancy: Tenancy) -> Self {
        Self {
            name: name.to_owned(),
            properties: vec![
                // Shown, never matched: `field` tokenization trims whitespace.
                Property::keyword("doc_id"),
                // The exact identity (`vecstream_core::doc_key`: SHA-256 of the record key,
                // so of tenant and id byte for byte): what reads and deletes match on.
                Property::keyword("doc_key"),
                // Decimal text: versions are 64-bit integers, and Weaviate stores `int` and
                // `number` as float64 (exact only up to 2^53; nanosecond timestamps are not).
                Property::keyword("doc_version"),
                Property::keyword("tenant"),
                Property::new("chunk_index", "int"),
                Property::new("text", "text"),
                Property::new("char_start", "int"),
                Property::new("char_end", "int"),
                Property::new("token_count", "int"),
                Property::keyword("content_hash"),
                Property::keyword("model_id"),
                // For keyword search and filters (hybrid search): `text` above and these
                // are BM25-indexed with `word` tokenization (lowercased, split on anything
                // not a letter or digit); `source`, `metadata` entries (`key=value`) and
                // ids are matched whole.
                Property::keyword("source").later(),
                Property::new("title", "text").later(),
                Property {
                    tokenization: Some("field".into()),
                    ..Property::new("metadata", "text[]")
                }
                .later(),
                // The metadata's keys and values as words, for BM25.
                Property::new("metadata_text", "text").later(),
                Property::new("produced_at", "date").later(),
                // The document's W3C trace id: a hit leads to its lineage.
                Property::keyword("trace_id").later(),
            ],
            distance: "cosine".into(),
            tenancy,
        }
    }
}

impl CollectionSpec {
    /// The properties a later release added that `class` (as Weaviate describes it) lacks.
    pub fn missing_added(&self, class: &serde_json::Value) -> Vec<&Property> {
        let stored: Vec<&str> = class
            .get("properties")
            .and_then(serde_json::Value::as_array)
            .map(|ps| ps.iter().filter_map(|p| p.get("name")?.as_str()).collect())
            .unwrap_or_default();
        self.properties
            .iter()
            .filter(|p| p.added_later && !stored.contains(&p.name.as_str()))
            .collect()
    }

    /// How `class` (a collection as Weaviate describes it) differs from this spec: one line
    /// per property missing or of another data type, and one if its multi-tenancy is not
    /// the spec's. Empty when it matches. Properties Weaviate holds beyond the spec are
    /// reported too: a collection that grew them was written by something else (auto-schema).
    pub fn differences(&self, class: &serde_json::Value) -> Vec<String> {
        let multi_tenant = class
            .pointer("/multiTenancyConfig/enabled")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let stored = class
            .get("properties")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut problems = Vec::new();
        if multi_tenant != (self.tenancy == Tenancy::MultiTenant) {
            problems.push(format!(
                "multi-tenancy is {}, but weaviate.multi_tenancy = {} (changing it needs a \
                 reindex)",
                if multi_tenant { "on" } else { "off" },
                self.tenancy == Tenancy::MultiTenant
            ));
        }
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
        for p in &self.properties {
            let want: Vec<&str> = p.data_type.iter().map(String::as_str).collect();
            match stored.get(p.name.as_str()) {
                None if p.added_later => {}
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

    fn class(properties: Vec<serde_json::Value>, multi_tenant: bool) -> serde_json::Value {
        serde_json::json!({
            "properties": properties,
            "multiTenancyConfig": {"enabled": multi_tenant},
        })
    }

    #[test]
    fn a_collection_of_our_schema_has_no_differences_and_a_guessed_one_has() {
        let spec = CollectionSpec::chunks("m", Tenancy::Filter);
        assert!(is_chunk_collection(&spec.name));
        assert!(!is_chunk_collection("Other"));
        assert!(spec.differences(&class(described(&spec), false)).is_empty());
        // What auto-schema guesses from a JSON object: numbers as `number`, no keyword ids.
        let mut guessed = described(&spec);
        let at = guessed
            .iter()
            .position(|p| p["name"] == "chunk_index")
            .unwrap();
        guessed[at] = serde_json::json!({"name": "chunk_index", "dataType": ["number"]});
        guessed.retain(|p| p["name"] != "model_id");
        guessed.push(serde_json::json!({"name": "extra", "dataType": ["text"]}));
        let d = spec.differences(&class(guessed, false));
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("chunk_index"), "{d:?}");
        assert!(d[1].contains("model_id is missing"), "{d:?}");
        assert!(d[2].contains("extra is not ours"), "{d:?}");
        // The other tenancy is a difference too.
        let d = spec.differences(&class(described(&spec), true));
        assert!(d[0].contains("multi-tenancy is on"), "{d:?}");
    }

    #[test]
    fn a_collection_of_the_first_schema_is_told_apart_and_named_apart() {
        // Generation 1: `doc_version` a float, no `doc_key`.
        let spec = CollectionSpec::chunks("m", Tenancy::Filter);
        let mut first = described(&spec);
        first.retain(|p| p["name"] != "doc_key");
        for p in &mut first {
            if p["name"] == "doc_version" {
                p["dataType"] = serde_json::json!(["number"]);
            }
        }
        let d = spec.differences(&class(first, false));
        assert_eq!(d.len(), 2, "{d:?}");
        // Same model, another schema generation or tenancy: another collection.
        assert_ne!(
            collection_name("m", Tenancy::Filter),
            collection_name("m", Tenancy::MultiTenant)
        );
    }
}
