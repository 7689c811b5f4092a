//! From a record of `docs.documents.v1` to chunks and vector records: the steps the stream
//! embedder and the reindex scan share, so both judge a document the same way.

use std::sync::Arc;

use apache_avro::Schema;
use vecstream_core::{
    ChunkVector, Classify, Document, DocumentVectors, check_doc_id, check_tenant,
    check_weaviate_tenant, chunk_id, content_hash, record_key, split_record_key,
};
use vecstream_engine::{Chunk, Chunker};
use vecstream_kafka::{SchemaRegistry, wire};

use crate::PipelineError;
use crate::dlq::Reason;

/// What a document record is.
#[derive(Debug)]
pub enum Read {
    /// A null value: the document (tenant, id) is gone (compaction forgets the key).
    Tombstone {
        tenant: String,
        doc_id: String,
    },
    Doc(Document),
    /// Poison: why the record cannot be a document.
    Bad(Reason, String),
}

/// Which tenant names documents may carry: any valid one, or (with
/// `weaviate.multi_tenancy = true`) only those Weaviate accepts as its tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantRules {
    pub weaviate_multi_tenancy: bool,
}

impl TenantRules {
    /// Why `tenant` cannot name a tenant under these rules, if it cannot.
    pub fn check(self, tenant: &str) -> Result<(), String> {
        if self.weaviate_multi_tenancy {
            check_weaviate_tenant(tenant)
        } else {
            check_tenant(tenant)
        }
    }
}

/// Reads records of `docs.documents.v1` as configured: through the registry (writer
/// schemas), into the current document schema, under the configured tenant rules. What the
/// stream embedder, the reindex scan and large-document jobs read documents with.
pub struct DocumentReader {
    registry: SchemaRegistry,
    schema: Schema,
    tenants: TenantRules,
}

impl std::fmt::Debug for DocumentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentReader")
            .field("tenants", &self.tenants)
            .finish()
    }
}

impl DocumentReader {
    pub fn new(config: &vecstream_config::Config) -> Result<Self, PipelineError> {
        Ok(Self {
            registry: SchemaRegistry::new(&config.registry)?,
            schema: vecstream_kafka::schemas::parse(vecstream_kafka::schemas::DOCUMENT)?,
            tenants: TenantRules {
                weaviate_multi_tenancy: config.weaviate.multi_tenancy,
            },
        })
    }

    /// [`read_document`] with this reader's registry, schema and rules.
    pub async fn read(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Result<Read, PipelineError> {
        read_document(&self.registry, &self.schema, self.tenants, key, payload).await
    }
}

/// Decodes a record through the registry (writer-schema resolution) and checks the key:
/// it must be the document's record key ([`record_key`]: its bare id for the default
/// tenant, `<tenant>\0<id>` for others), and tenant and id must be valid names.
/// `Err` only for transient failures (the registry unreachable).
pub async fn read_document(
    registry: &SchemaRegistry,
    reader: &Schema,
    rules: TenantRules,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<Read, PipelineError> {
    let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
        return Ok(Read::Bad(
            Reason::Invalid,
            "missing or non-UTF-8 key".into(),
        ));
    };
    let Some(payload) = payload else {
        let (tenant, doc_id) = split_record_key(key);
        if let Err(why) = rules.check(tenant).and_then(|()| check_doc_id(doc_id)) {
            return Ok(Read::Bad(Reason::Invalid, format!("tombstone key: {why}")));
        }
        // `default\0x` names (default, x) but is not its key: compaction would never
        // forget the document's record `x`, which a later reindex would bring back.
        let expected = record_key(tenant, doc_id);
        if key != expected {
            return Ok(Read::Bad(
                Reason::Invalid,
                format!(
                    "tombstone key {key:?} is not the record key of (tenant {tenant:?}, id \
                     {doc_id:?}): {expected:?}"
                ),
            ));
        }
        return Ok(Read::Tombstone {
            tenant: tenant.to_owned(),
            doc_id: doc_id.to_owned(),
        });
    };
    let (schema_id, avro) = match wire::split(payload) {
        Ok(x) => x,
        Err(e) => return Ok(Read::Bad(Reason::Undecodable, e.to_string())),
    };
    let subject = vecstream_core::topics::value_subject(vecstream_core::topics::DOCUMENTS);
    let writer = match writer_schema(registry, &subject, schema_id).await? {
        Ok(s) => s,
        Err(why) => return Ok(Read::Bad(Reason::UnknownSchema, why)),
    };
    let doc: Document = match wire::decode(&writer, Some(reader), avro) {
        Ok(d) => d,
        Err(e) => return Ok(Read::Bad(Reason::Undecodable, e.to_string())),
    };
    Ok(check_identity(doc, key, rules))
}

/// The writer schema of a record of `subject`'s topic framed with `schema_id`, or why the
/// record has none (the id unknown, or another subject's: `unknown_schema`). `Err` only
/// when the registry cannot answer (down, refusing our credentials, not its API): the
/// caller retries with its partitions paused instead of dead-lettering the record.
pub async fn writer_schema(
    registry: &SchemaRegistry,
    subject: &str,
    schema_id: u32,
) -> Result<Result<Arc<Schema>, String>, PipelineError> {
    match registry.writer_schema(subject, schema_id).await {
        Ok(s) => Ok(Ok(s)),
        Err(e) if e.class().is_retryable() => Err(e.into()),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// The document, or why its identity is not one: id and tenant valid, and the record key
/// exactly the one its (tenant, id) has.
pub fn check_identity(doc: Document, key: &str, rules: TenantRules) -> Read {
    if let Err(why) = check_doc_id(&doc.id) {
        return Read::Bad(Reason::Invalid, why);
    }
    if let Err(why) = rules.check(&doc.tenant) {
        return Read::Bad(Reason::Invalid, why);
    }
    let expected = record_key(&doc.tenant, &doc.id);
    if key != expected {
        return Read::Bad(
            Reason::Invalid,
            format!(
                "key {key:?} does not match the document's (tenant {:?}, id {:?}): its key is \
                 {expected:?}",
                doc.tenant, doc.id
            ),
        );
    }
    Read::Doc(doc)
}

/// The normalised text of a document and its content hash, or why it has none.
pub fn normalized(
    doc: &Document,
    max_body_bytes: usize,
) -> Result<(String, String), (Reason, String)> {
    if doc.body.len() > max_body_bytes {
        return Err((
            Reason::OverLimits,
            format!(
                "body of {} bytes over embedder.max_body_bytes = {max_body_bytes}",
                doc.body.len()
            ),
        ));
    }
    let text = crate::normalize::normalize(&doc.body, &doc.content_type);
    if text.is_empty() {
        return Err((
            Reason::EmptyBody,
            "no text after normalisation (empty body)".into(),
        ));
    }
    let hash = content_hash(&text);
    Ok((text, hash))
}

/// The chunks of a normalised text, within `max_chunks`.
pub fn chunked(
    chunker: &Chunker,
    text: &str,
    max_chunks: usize,
) -> Result<Vec<Chunk>, (Reason, String)> {
    let chunks = chunker
        .chunk(text)
        .map_err(|e| (Reason::Undecodable, format!("tokenizer: {e}")))?;
    if chunks.is_empty() {
        return Err((Reason::EmptyBody, "no tokens in the body".into()));
    }
    if chunks.len() > max_chunks {
        return Err((
            Reason::OverLimits,
            format!(
                "{} chunks over embedder.max_chunks = {max_chunks}",
                chunks.len()
            ),
        ));
    }
    Ok(chunks)
}

/// The vector record of an embedded document: one entry per chunk, deterministic ids.
pub fn vectors_of(
    doc: &Document,
    hash: &str,
    chunks: &[Chunk],
    vectors: &[Vec<f32>],
    model_id: &str,
) -> DocumentVectors {
    DocumentVectors {
        doc_id: doc.id.clone(),
        doc_version: doc.version,
        tenant: doc.tenant.clone(),
        model_id: model_id.to_owned(),
        content_hash: hash.to_owned(),
        deleted: false,
        source: doc.source.clone(),
        title: doc.title.clone(),
        metadata: doc.metadata.clone(),
        produced_at: Some(doc.produced_at),
        trace_id: None,
        chunks: chunks
            .iter()
            .zip(vectors)
            .map(|(c, v)| ChunkVector {
                chunk_id: chunk_id(&doc.tenant, &doc.id, c.index, model_id).to_string(),
                index: c.index as i32,
                text: c.text.clone(),
                char_start: c.char_start as i32,
                char_end: c.char_end as i32,
                token_count: c.token_count() as i32,
                vector: v.clone(),
            })
            .collect(),
    }
}

/// The vector record that removes a document from its model's collection.
pub fn delete_of(doc_id: &str, tenant: &str, version: i64, model_id: &str) -> DocumentVectors {
    DocumentVectors {
        doc_id: doc_id.to_owned(),
        doc_version: version,
        tenant: tenant.to_owned(),
        model_id: model_id.to_owned(),
        content_hash: String::new(),
        deleted: true,
        source: String::new(),
        title: None,
        metadata: Default::default(),
        produced_at: None,
        trace_id: None,
        chunks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::document;

    async fn tombstone(key: &[u8], rules: TenantRules) -> Read {
        // A tombstone is read from its key alone: the registry is never asked.
        let registry = SchemaRegistry::new(&Default::default()).unwrap();
        let reader = vecstream_kafka::schemas::parse(vecstream_kafka::schemas::DOCUMENT).unwrap();
        read_document(&registry, &reader, rules, Some(key), None)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_tombstone_names_its_tenant_and_only_its_canonical_key_is_one() {
        let any = TenantRules::default();
        match tombstone(b"guide.md", any).await {
            Read::Tombstone { tenant, doc_id } => {
                assert_eq!((&*tenant, &*doc_id), ("default", "guide.md"))
            }
            other => panic!("{other:?}"),
        }
        match tombstone(b"acme\0guide.md", any).await {
            Read::Tombstone { tenant, doc_id } => {
                assert_eq!((&*tenant, &*doc_id), ("acme", "guide.md"))
            }
            other => panic!("{other:?}"),
        }
        // The default tenant spelled out is not its key: compaction would keep `guide.md`.
        match tombstone(b"default\0guide.md", any).await {
            Read::Bad(Reason::Invalid, m) => assert!(m.contains("\"guide.md\""), "{m}"),
            other => panic!("{other:?}"),
        }
        let mt = TenantRules {
            weaviate_multi_tenancy: true,
        };
        assert!(matches!(
            tombstone(b"a b\0x", mt).await,
            Read::Bad(Reason::Invalid, _)
        ));
        assert!(matches!(
            tombstone(b"a b\0x", any).await,
            Read::Tombstone { .. }
        ));
        assert!(matches!(
            tombstone(b" a\0x", any).await,
            Read::Bad(Reason::Invalid, _)
        ));
    }

    #[test]
    fn a_document_is_read_only_under_its_record_key() {
        let rules = TenantRules::default();
        let mut doc = document(" x ", 1, "text");
        assert!(matches!(
            check_identity(doc.clone(), " x ", rules),
            Read::Doc(_)
        ));
        // Trimmed, case-folded or otherwise different keys are refused.
        for key in ["x", " X ", "default\0 x "] {
            assert!(
                matches!(
                    check_identity(doc.clone(), key, rules),
                    Read::Bad(Reason::Invalid, _)
                ),
                "{key:?}"
            );
        }
        doc.tenant = "acme".into();
        assert!(matches!(
            check_identity(doc.clone(), "acme\0 x ", rules),
            Read::Doc(_)
        ));
        match check_identity(doc.clone(), " x ", rules) {
            Read::Bad(Reason::Invalid, m) => assert!(m.contains("acme\\0 x "), "{m}"),
            other => panic!("{other:?}"),
        }
        doc.id = "a\0b".into();
        assert!(matches!(
            check_identity(doc, "acme\0a\0b", rules),
            Read::Bad(Reason::Invalid, _)
        ));
    }
}
