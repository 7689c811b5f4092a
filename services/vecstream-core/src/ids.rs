use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Namespace of chunk ids. Fixed forever: changing it would orphan every stored chunk.
pub const CHUNK_NAMESPACE: Uuid = Uuid::from_u128(0x6a0b52f4_9d1c_4b5e_8f0e_2c7a3e51d001);

/// The tenant of documents that name none. Its documents keep their bare id as record key.
pub const DEFAULT_TENANT: &str = "default";

/// Separates tenant and id in the record key of a document of another tenant. U+0000 is
/// the one character neither a tenant name nor a document id may hold, so the key parses
/// back unambiguously.
pub const KEY_SEPARATOR: char = '\0';

/// Longest tenant name, in bytes (Weaviate's limit for its tenants).
pub const MAX_TENANT_BYTES: usize = 64;

/// Longest document id, in bytes. An id travels in every record key, lineage event, state
/// record and job of its document; a longer one would not fit some of them (or a workflow
/// id), so it is refused up front.
pub const MAX_DOC_ID_BYTES: usize = 4096;

/// Longest record key: a tenant, the separator and an id, each at its limit.
pub const MAX_RECORD_KEY_BYTES: usize = MAX_TENANT_BYTES + 1 + MAX_DOC_ID_BYTES;

/// The Kafka record key of a document (DESIGN section 3): its bare id for the default
/// tenant, so producers written before tenants keep working, else `<tenant>\0<id>`.
/// One key per (tenant, id): compaction keeps one record for each.
pub fn record_key(tenant: &str, doc_id: &str) -> String {
    if tenant == DEFAULT_TENANT {
        doc_id.to_owned()
    } else {
        format!("{tenant}{KEY_SEPARATOR}{doc_id}")
    }
}

/// The (tenant, id) a record key names (the inverse of [`record_key`]). A key without the
/// separator is a document of the default tenant. Never fails: whether the key is the
/// canonical one for its document is checked against the document itself.
pub fn split_record_key(key: &str) -> (&str, &str) {
    match key.split_once(KEY_SEPARATOR) {
        Some((tenant, id)) => (tenant, id),
        None => (DEFAULT_TENANT, key),
    }
}

/// The exact identity key stored with every chunk (`doc_key`): hex SHA-256 of the record
/// key. Weaviate's text tokenizations trim or fold ids; this one matches byte for byte.
pub fn doc_key(tenant: &str, doc_id: &str) -> String {
    key_hash(record_key(tenant, doc_id).as_bytes())
}

/// Hex SHA-256 of a key's bytes: how vecstream names a key it cannot carry whole.
pub fn key_hash(key: &[u8]) -> String {
    hex::encode(Sha256::digest(key))
}

/// A key as vecstream's own records (dead letters, lineage) carry it: whole up to
/// [`MAX_RECORD_KEY_BYTES`], else `sha256:<hex>` ([`key_hash`]), so that a hostile key
/// (a record may hold megabytes of it) never makes a record too large for its topic.
pub fn bounded_key(key: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if key.len() <= MAX_RECORD_KEY_BYTES {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(format!("sha256:{}", key_hash(key)).into_bytes())
    }
}

/// Why a document id cannot be one, if it cannot: empty, over [`MAX_DOC_ID_BYTES`], or
/// holding U+0000 (the key separator). Anything else is an id, matched byte for byte (no
/// trimming, case or Unicode folding).
pub fn check_doc_id(doc_id: &str) -> Result<(), String> {
    if doc_id.is_empty() {
        return Err("empty document id".into());
    }
    if doc_id.len() > MAX_DOC_ID_BYTES {
        return Err(format!(
            "document id of {} bytes over {MAX_DOC_ID_BYTES}",
            doc_id.len()
        ));
    }
    if doc_id.contains(KEY_SEPARATOR) {
        return Err("document id holds U+0000 (the record key's tenant separator)".into());
    }
    Ok(())
}

/// Why a tenant name cannot be one, if it cannot: empty, over 64 bytes, holding U+0000 or
/// another control character, or with surrounding whitespace (a Weaviate `field` filter
/// trims it, so `" a"` and `"a"` would share a filter).
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    if tenant.is_empty() {
        return Err("empty tenant name".into());
    }
    if tenant.len() > MAX_TENANT_BYTES {
        return Err(format!(
            "tenant name of {} bytes over {MAX_TENANT_BYTES}",
            tenant.len()
        ));
    }
    if tenant.chars().any(char::is_control) {
        return Err(format!("tenant name {tenant:?} holds a control character"));
    }
    if tenant.trim() != tenant {
        return Err(format!(
            "tenant name {tenant:?} starts or ends with whitespace"
        ));
    }
    Ok(())
}

/// Why Weaviate's multi-tenancy cannot hold `tenant` as one of its tenants, if it cannot:
/// Weaviate accepts 1-64 characters of `A-Z a-z 0-9 _ -`.
pub fn check_weaviate_tenant(tenant: &str) -> Result<(), String> {
    check_tenant(tenant)?;
    if !tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "tenant name {tenant:?} is not a Weaviate tenant name (weaviate.multi_tenancy = \
             true accepts only A-Z, a-z, 0-9, _ and -)"
        ));
    }
    Ok(())
}

/// Deterministic id of one chunk: UUIDv5(namespace, `record key | chunk index | model id`),
/// where the record key ([`record_key`]) is `tenant \0 id`, or the bare id for the default
/// tenant (so chunks stored before tenants keep their ids).
///
/// Re-delivery of the same document version rewrites the same objects instead of adding
/// new ones, which is what makes at-least-once delivery harmless downstream.
pub fn chunk_id(tenant: &str, doc_id: &str, chunk_index: u32, model_id: &str) -> Uuid {
    let name = format!("{}|{chunk_index}|{model_id}", record_key(tenant, doc_id));
    Uuid::new_v5(&CHUNK_NAMESPACE, name.as_bytes())
}

/// Hex SHA-256 of a document's normalised text: with the model id, decides whether a
/// re-published document needs embedding again.
pub fn content_hash(normalised_text: &str) -> String {
    hex::encode(Sha256::digest(normalised_text.as_bytes()))
}

/// Longest document id kept readable in a large-document workflow id; longer ones are
/// replaced by a hash (Temporal limits ids, and ids are arbitrary bytes).
const READABLE_DOC_ID: usize = 64;

/// Workflow id of a large document's job (DESIGN section 5):
/// `doc-<doc id>-<version>-<model hash8>-<content hash12>`. The model and the content are
/// part of it, so the same version re-published with new content, or embedded after a model
/// change, is a new job rather than one "already done". The document is named by its
/// record key ([`record_key`]); one longer than 64 bytes, or with characters outside
/// `[A-Za-z0-9._-]` (any other tenant's key holds U+0000), appears as `h<sha256 16 hex>`.
pub fn large_document_workflow_id(
    tenant: &str,
    doc_id: &str,
    version: i64,
    model_id: &str,
    content_hash: &str,
) -> String {
    let key = record_key(tenant, doc_id);
    let doc_id = key.as_str();
    let readable = doc_id.len() <= READABLE_DOC_ID
        && !doc_id.is_empty()
        && doc_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let doc = if readable {
        doc_id.to_owned()
    } else {
        format!("h{}", &hex::encode(Sha256::digest(doc_id.as_bytes()))[..16])
    };
    let model = &hex::encode(Sha256::digest(model_id.as_bytes()))[..8];
    let content: String = content_hash.chars().take(12).collect();
    format!("doc-{doc}-{version}-{model}-{content}")
}

/// The id large-document jobs had before the model and content were part of it
/// (`doc-<doc id>-<version>`): the embedder still waits for such jobs it remembers.
pub fn legacy_large_document_workflow_id(doc_id: &str, version: i64) -> String {
    format!("doc-{doc_id}-{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_document_job_id_names_model_and_content_and_stays_bounded() {
        let id = large_document_workflow_id(
            DEFAULT_TENANT,
            "report-7",
            3,
            "minilm-a",
            "abcdef0123456789",
        );
        assert!(id.starts_with("doc-report-7-3-"), "{id}");
        assert!(id.ends_with("-abcdef012345"), "{id}");
        // Another model or other content at the same version: another job.
        assert_ne!(
            id,
            large_document_workflow_id(
                DEFAULT_TENANT,
                "report-7",
                3,
                "minilm-b",
                "abcdef0123456789"
            )
        );
        assert_ne!(
            id,
            large_document_workflow_id(
                DEFAULT_TENANT,
                "report-7",
                3,
                "minilm-a",
                "ffffff0123456789"
            )
        );
        // Long or odd ids are hashed; distinct ids stay distinct.
        let long = "x".repeat(5_000);
        let hashed = large_document_workflow_id(DEFAULT_TENANT, &long, 1, "m", "h");
        assert!(hashed.len() < 64, "{hashed}");
        assert!(hashed.starts_with("doc-h"), "{hashed}");
        assert_ne!(
            large_document_workflow_id(DEFAULT_TENANT, " a ", 1, "m", "h"),
            large_document_workflow_id(DEFAULT_TENANT, "a", 1, "m", "h")
        );
        // Another tenant's document of the same id is another job, named by a hash.
        let other =
            large_document_workflow_id("acme", "report-7", 3, "minilm-a", "abcdef0123456789");
        assert_ne!(id, other);
        assert!(other.starts_with("doc-h"), "{other}");
    }

    #[test]
    fn chunk_id_is_deterministic_and_distinguishes_its_parts() {
        let d = DEFAULT_TENANT;
        let a = chunk_id(d, "doc-1", 0, "minilm-abc");
        assert_eq!(a, chunk_id(d, "doc-1", 0, "minilm-abc"));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, chunk_id(d, "doc-1", 1, "minilm-abc"));
        assert_ne!(a, chunk_id(d, "doc-2", 0, "minilm-abc"));
        assert_ne!(a, chunk_id(d, "doc-1", 0, "minilm-def"));
        // The separator keeps "a|1" + 0 apart from "a" + 10 style collisions.
        assert_ne!(chunk_id(d, "a|1", 0, "m"), chunk_id(d, "a", 10, "m"));
        // Two tenants' documents of one id are different chunks; so are ids that differ
        // only by whitespace, case or Unicode normalisation.
        assert_ne!(a, chunk_id("acme", "doc-1", 0, "minilm-abc"));
        assert_ne!(chunk_id("a|b", "c", 0, "m"), chunk_id("a", "b|c", 0, "m"));
        assert_ne!(chunk_id(d, " x ", 0, "m"), chunk_id(d, "x", 0, "m"));
        assert_ne!(chunk_id(d, "X", 0, "m"), chunk_id(d, "x", 0, "m"));
        assert_ne!(
            chunk_id(d, "\u{e9}", 0, "m"),
            chunk_id(d, "e\u{301}", 0, "m")
        );
    }

    #[test]
    fn chunk_id_is_stable_across_releases() {
        // Pinned: a change here would orphan every chunk already stored in Weaviate.
        assert_eq!(
            chunk_id(DEFAULT_TENANT, "doc-1", 0, "all-MiniLM-L6-v2-0000").to_string(),
            Uuid::new_v5(&CHUNK_NAMESPACE, b"doc-1|0|all-MiniLM-L6-v2-0000").to_string()
        );
        assert_eq!(
            CHUNK_NAMESPACE.to_string(),
            "6a0b52f4-9d1c-4b5e-8f0e-2c7a3e51d001"
        );
    }

    #[test]
    fn record_keys_name_tenant_and_id_and_parse_back() {
        assert_eq!(record_key(DEFAULT_TENANT, "a/b.md"), "a/b.md");
        assert_eq!(record_key("acme", "a/b.md"), "acme\0a/b.md");
        for (t, id) in [
            (DEFAULT_TENANT, "a/b.md"),
            ("acme", "a/b.md"),
            ("acme", " spaced "),
            ("t-1", ""),
        ] {
            assert_eq!(split_record_key(&record_key(t, id)), (t, id));
        }
        // Keys of distinct identities differ, and so do their exact keys.
        assert_ne!(doc_key("a", "x"), doc_key("b", "x"));
        assert_ne!(doc_key(DEFAULT_TENANT, " x"), doc_key(DEFAULT_TENANT, "x"));
        assert_eq!(doc_key("a", "x").len(), 64);
        // Keys too long to carry are named by their hash; others stay whole.
        assert_eq!(&*bounded_key(b"acme\0x"), b"acme\0x");
        let huge = vec![b'k'; MAX_RECORD_KEY_BYTES + 1];
        let named = String::from_utf8(bounded_key(&huge).into_owned()).unwrap();
        assert_eq!(named, format!("sha256:{}", key_hash(&huge)));
    }

    #[test]
    fn ids_and_tenants_are_checked() {
        assert!(check_doc_id(" x ").is_ok());
        assert!(check_doc_id("").is_err());
        assert!(check_doc_id("a\0b").unwrap_err().contains("U+0000"));
        assert!(check_doc_id(&"i".repeat(MAX_DOC_ID_BYTES)).is_ok());
        assert!(
            check_doc_id(&"i".repeat(MAX_DOC_ID_BYTES + 1))
                .unwrap_err()
                .contains("4096")
        );
        assert!(check_tenant("acme corp").is_ok());
        assert!(check_tenant(" acme").is_err());
        assert!(check_tenant("").is_err());
        assert!(check_tenant("a\0b").is_err());
        assert!(check_tenant(&"t".repeat(65)).is_err());
        assert!(check_weaviate_tenant("Acme_1-x").is_ok());
        let e = check_weaviate_tenant("acme corp").unwrap_err();
        assert!(e.contains("multi_tenancy"), "{e}");
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
