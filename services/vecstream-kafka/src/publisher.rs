//! An idempotent producer of `Document`s in the Confluent wire format.

use std::time::Duration;

use apache_avro::Schema;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use vecstream_config::KafkaConfig;
use vecstream_core::{Document, TraceParent, topics};

use crate::{KafkaEdgeError, SchemaRegistry, client_config, schemas, wire, with_traceparent};

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Publishes documents to `docs.documents.v1`, keyed by id, after registering the schema
/// under `docs.documents.v1-value` with BACKWARD compatibility.
#[derive(Clone)]
pub struct DocumentPublisher {
    producer: FutureProducer,
    schema: Schema,
    schema_id: u32,
    topic: String,
    delivery_timeout: Duration,
}

impl std::fmt::Debug for DocumentPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentPublisher")
            .field("topic", &self.topic)
            .field("schema_id", &self.schema_id)
            .finish()
    }
}

impl DocumentPublisher {
    /// Registers the document schema and creates an idempotent producer (`acks=all`), so a
    /// retried send never duplicates or reorders records of one key.
    pub async fn connect(
        cfg: &KafkaConfig,
        registry: &SchemaRegistry,
    ) -> Result<Self, KafkaEdgeError> {
        let topic = topics::DOCUMENTS.to_owned();
        let schema_id = registry
            .ensure_subject(&topics::value_subject(&topic), schemas::DOCUMENT)
            .await?;
        let producer: FutureProducer = client_config(cfg)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000")
            // Up to the documents topic's own limit (the librdkafka default is 1 MB).
            .set(
                "message.max.bytes",
                crate::topics::DOCUMENTS_MAX_RECORD_BYTES,
            )
            .create()?;
        Ok(Self {
            producer,
            schema: schemas::parse(schemas::DOCUMENT)?,
            schema_id,
            topic,
            delivery_timeout: Duration::from_secs(120),
        })
    }

    /// Registry id of the document schema the records are written with.
    pub fn schema_id(&self) -> u32 {
        self.schema_id
    }

    /// Publishes one document version as the root of a new trace; resolves once the
    /// brokers acknowledged it.
    pub async fn publish(&self, doc: &Document) -> Result<Delivered, KafkaEdgeError> {
        self.publish_traced(doc, &TraceParent::new_root()).await
    }

    /// Publishes one document version carrying `trace` (the `traceparent` header), so the
    /// pipeline continues the producer's trace.
    pub async fn publish_traced(
        &self,
        doc: &Document,
        trace: &TraceParent,
    ) -> Result<Delivered, KafkaEdgeError> {
        let value = wire::encode(self.schema_id, &self.schema, doc)?;
        // The key names (tenant, id): the default tenant's documents keep their bare id.
        self.send(&doc.record_key(), Some(&value), trace).await
    }

    /// Publishes a tombstone (null value) of `tenant`'s document `id`: the compacted topic
    /// forgets it, and the pipeline deletes it (that tenant's only).
    pub async fn publish_tombstone(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Delivered, KafkaEdgeError> {
        self.publish_tombstone_traced(tenant, id, &TraceParent::new_root())
            .await
    }

    /// A tombstone carrying `trace`.
    pub async fn publish_tombstone_traced(
        &self,
        tenant: &str,
        id: &str,
        trace: &TraceParent,
    ) -> Result<Delivered, KafkaEdgeError> {
        self.send(&vecstream_core::record_key(tenant, id), None, trace)
            .await
    }

    async fn send(
        &self,
        key: &str,
        value: Option<&Vec<u8>>,
        trace: &TraceParent,
    ) -> Result<Delivered, KafkaEdgeError> {
        let mut record: FutureRecord<'_, str, Vec<u8>> = FutureRecord::to(&self.topic)
            .key(key)
            .headers(with_traceparent(OwnedHeaders::new(), trace));
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivery = self.producer.send(record, self.delivery_timeout).await;
        match delivery {
            Ok(d) => Ok(Delivered {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((e, _)) => Err(KafkaEdgeError::Kafka(e)),
        }
    }

    /// Waits until every queued record is acknowledged.
    pub fn flush(&self) -> Result<(), KafkaEdgeError> {
        use rdkafka::producer::Producer;
        self.producer.flush(self.delivery_timeout)?;
        Ok(())
    }
}
