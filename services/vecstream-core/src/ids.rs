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

#[cfg(test)]
mod tests {
    use super::*;

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
