use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Namespace of chunk ids. Fixed forever: changing it would orphan every stored chunk.
pub const CHUNK_NAMESPACE: Uuid = Uuid::from_u128(0x6a0b52f4_9d1c_4b5e_8f0e_2c7a3e51d001);

/// Deterministic id of one chunk: UUIDv5(namespace, `doc id | chunk index | model id`).
///
/// Re-delivery of the same document version rewrites the same objects instead of adding
/// new ones, which is what makes at-least-once delivery harmless downstream.
pub fn chunk_id(doc_id: &str, chunk_index: u32, model_id: &str) -> Uuid {
    let name = format!("{doc_id}|{chunk_index}|{model_id}");
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
/// change, is a new job rather than one "already done". A document id longer than 64
/// bytes, or with characters outside `[A-Za-z0-9._-]`, appears as `h<sha256 16 hex>`.
pub fn large_document_workflow_id(
    doc_id: &str,
    version: i64,
    model_id: &str,
    content_hash: &str,
) -> String {
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
        let id = large_document_workflow_id("report-7", 3, "minilm-a", "abcdef0123456789");
        assert!(id.starts_with("doc-report-7-3-"), "{id}");
        assert!(id.ends_with("-abcdef012345"), "{id}");
        // Another model or other content at the same version: another job.
        assert_ne!(
            id,
            large_document_workflow_id("report-7", 3, "minilm-b", "abcdef0123456789")
        );
        assert_ne!(
            id,
            large_document_workflow_id("report-7", 3, "minilm-a", "ffffff0123456789")
        );
        // Long or odd ids are hashed; distinct ids stay distinct.
        let long = "x".repeat(5_000);
        let hashed = large_document_workflow_id(&long, 1, "m", "h");
        assert!(hashed.len() < 64, "{hashed}");
        assert!(hashed.starts_with("doc-h"), "{hashed}");
        assert_ne!(
            large_document_workflow_id(" a ", 1, "m", "h"),
            large_document_workflow_id("a", 1, "m", "h")
        );
    }

    #[test]
    fn chunk_id_is_deterministic_and_distinguishes_its_parts() {
        let a = chunk_id("doc-1", 0, "minilm-abc");
        assert_eq!(a, chunk_id("doc-1", 0, "minilm-abc"));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, chunk_id("doc-1", 1, "minilm-abc"));
        assert_ne!(a, chunk_id("doc-2", 0, "minilm-abc"));
        assert_ne!(a, chunk_id("doc-1", 0, "minilm-def"));
        // The separator keeps "a|1" + 0 apart from "a" + 10 style collisions.
        assert_ne!(chunk_id("a|1", 0, "m"), chunk_id("a", 10, "m"));
    }

    #[test]
    fn chunk_id_is_stable_across_releases() {
        // Pinned: a change here would orphan every chunk already stored in Weaviate.
        assert_eq!(
            chunk_id("doc-1", 0, "all-MiniLM-L6-v2-0000").to_string(),
            Uuid::new_v5(&CHUNK_NAMESPACE, b"doc-1|0|all-MiniLM-L6-v2-0000").to_string()
        );
        assert_eq!(
            CHUNK_NAMESPACE.to_string(),
            "6a0b52f4-9d1c-4b5e-8f0e-2c7a3e51d001"
        );
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
