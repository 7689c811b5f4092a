//! Lineage events (OpenLineage RunEvent shape + the vecstream facet) for every document a
//! stage handles. A run is one stage handling one record: its events (`received` START,
//! `chunked` RUNNING, then the outcome) share a run id. Run ids are deterministic (UUIDv5 of
//! stage, document, version, model and source offset), so a re-delivered record produces
//! the same events, which consumers can dedupe on (run id, stage).

use uuid::Uuid;
use vecstream_core::{Dataset, EventType, Job, LineageEvent, Run, VecstreamFacet};

/// Namespace of lineage run ids. Fixed forever.
const RUN_NAMESPACE: Uuid = Uuid::from_u128(0x3c1e9a55_0f6b_4d0e_9a7e_51d2b8c4e002);
/// The OpenLineage `producer` URI of events we emit.
pub const PRODUCER: &str = concat!(
    "https://github.com/vecstream/vecstream/tree/v",
    env!("CARGO_PKG_VERSION")
);
/// OpenLineage job namespace of the pipeline.
pub const JOB_NAMESPACE: &str = "vecstream";

/// Builds the events of one stage (`embed` or `sink`).
#[derive(Debug, Clone)]
pub struct LineageFactory {
    stage: &'static str,
    job_name: String,
    kafka_namespace: String,
}

impl LineageFactory {
    /// `kafka_brokers` names the Kafka datasets' namespace (`kafka://host:port`).
    pub fn new(stage: &'static str, job_name: &str, kafka_brokers: &str) -> Self {
        let first = kafka_brokers.split(',').next().unwrap_or("").trim();
        Self {
            stage,
            job_name: job_name.to_owned(),
            kafka_namespace: format!("kafka://{first}"),
        }
    }

    /// A Kafka topic as an OpenLineage dataset.
    pub fn topic(&self, name: &str) -> Dataset {
        Dataset {
            namespace: self.kafka_namespace.clone(),
            name: name.to_owned(),
        }
    }

    /// One event about one document. `outcome` distinguishes events of the same document
    /// version (`embedded`, `unchanged`, `deleted`, `dead_lettered`...).
    pub fn event(
        &self,
        event_type: EventType,
        outcome: &str,
        facet: VecstreamFacet,
        inputs: Vec<Dataset>,
        outputs: Vec<Dataset>,
        now_ms: i64,
    ) -> LineageEvent {
        let name = format!(
            "{}|{}|{}|{}|{:?}|{:?}",
            self.stage,
            facet.doc_id.as_deref().unwrap_or(""),
            facet.doc_version.unwrap_or(-1),
            facet.model_id.as_deref().unwrap_or(""),
            facet.source_partition,
            facet.source_offset,
        );
        LineageEvent {
            event_type,
            event_time: now_ms,
            run: Run {
                run_id: Uuid::new_v5(&RUN_NAMESPACE, name.as_bytes()).to_string(),
                parent_run_id: None,
            },
            job: Job {
                namespace: JOB_NAMESPACE.into(),
                name: self.job_name.clone(),
            },
            inputs,
            outputs,
            producer: PRODUCER.into(),
            vecstream: VecstreamFacet {
                stage: format!("{}:{outcome}", self.stage),
                ..facet
            },
        }
    }
}

/// Publishes one event to `docs.lineage.v1` (idempotent producer, waits for the ack): for
/// jobs outside the stream, such as the Temporal workflows' phase events.
pub async fn publish_one(
    config: &vecstream_config::Config,
    key: &str,
    event: &LineageEvent,
) -> Result<(), crate::PipelineError> {
    use vecstream_core::topics;
    let record = Outgoing {
        topic: topics::LINEAGE,
        schema: vecstream_kafka::schemas::LINEAGE_EVENT,
        key,
        partition: None,
        trace: None,
    };
    publish_record(config, record, event).await
}

/// Publishes many events to `docs.lineage.v1` with one producer, waiting for every ack.
pub async fn publish_many(
    config: &vecstream_config::Config,
    events: &[(String, LineageEvent)],
) -> Result<(), crate::PipelineError> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use vecstream_core::topics;
    use vecstream_kafka::{SchemaRegistry, wire};
    if events.is_empty() {
        return Ok(());
    }
    let registry = SchemaRegistry::new(&config.registry)?;
    let (id, schema) = lineage_writer_schema(&registry).await?;
    let producer: FutureProducer = vecstream_kafka::idempotent_producer(&config.kafka)?;
    let payloads = events
        .iter()
        .map(|(_, e)| wire::encode(id, &schema, e))
        .collect::<Result<Vec<_>, _>>()?;
    let sends = events.iter().zip(&payloads).map(|((key, _), payload)| {
        producer.send(
            FutureRecord::to(topics::LINEAGE).key(key).payload(payload),
            std::time::Duration::from_secs(60),
        )
    });
    for r in futures::future::join_all(sends).await {
        r.map_err(|(e, _)| crate::PipelineError::from(e))?;
    }
    Ok(())
}

/// Where [`publish_record`] sends a record.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    /// The Avro schema registered under the topic's value subject.
    pub schema: &'a str,
    pub key: &'a str,
    pub partition: Option<i32>,
    /// The `traceparent` to send in the record's headers.
    pub trace: Option<&'a vecstream_core::TraceParent>,
}

/// Encodes `value` in the Confluent wire format and produces it with an idempotent producer
/// (`acks=all`), waiting for the acknowledgement.
pub async fn publish_record<T: serde::Serialize>(
    config: &vecstream_config::Config,
    out: Outgoing<'_>,
    value: &T,
) -> Result<(), crate::PipelineError> {
    use rdkafka::message::OwnedHeaders;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use vecstream_core::topics;
    use vecstream_kafka::{SchemaRegistry, schemas, wire};
    let registry = SchemaRegistry::new(&config.registry)?;
    let schema_id = registry
        .ensure_subject(&topics::value_subject(out.topic), out.schema)
        .await?;
    let payload = wire::encode(schema_id, &schemas::parse(out.schema)?, value)?;
    let producer: FutureProducer = vecstream_kafka::idempotent_producer(&config.kafka)?;
    let mut record = FutureRecord::to(out.topic).key(out.key).payload(&payload);
    if let Some(p) = out.partition {
        record = record.partition(p);
    }
    if let Some(t) = out.trace {
        record = record.headers(vecstream_kafka::with_traceparent(OwnedHeaders::new(), t));
    }
    producer
        .send(record, std::time::Duration::from_secs(60))
        .await
        .map_err(|(e, _)| crate::PipelineError::from(e))?;
    Ok(())
}

/// Registers the lineage schema under its subject (idempotent) and returns its id with the
/// parsed schema: what a component needs to encode lineage events.
pub async fn lineage_writer_schema(
    registry: &vecstream_kafka::SchemaRegistry,
) -> Result<(u32, apache_avro::Schema), crate::PipelineError> {
    use vecstream_core::topics;
    use vecstream_kafka::schemas;
    let id = registry
        .ensure_subject(
            &topics::value_subject(topics::LINEAGE),
            schemas::LINEAGE_EVENT,
        )
        .await?;
    Ok((id, schemas::parse(schemas::LINEAGE_EVENT)?))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_for_the_same_record_and_differ_otherwise() {
        let f = LineageFactory::new("embed", "embedder", "127.0.0.1:9092,other:9092");
        let facet = VecstreamFacet {
            doc_id: Some("d1".into()),
            doc_version: Some(3),
            source_partition: Some(0),
            source_offset: Some(7),
            ..Default::default()
        };
        let a = f.event(
            EventType::Complete,
            "embedded",
            facet.clone(),
            vec![],
            vec![],
            1,
        );
        let b = f.event(
            EventType::Complete,
            "embedded",
            facet.clone(),
            vec![],
            vec![],
            2,
        );
        // Events of the same run share its id; another offset is another run.
        let started = f.event(
            EventType::Start,
            "received",
            facet.clone(),
            vec![],
            vec![],
            1,
        );
        let c = f.event(
            EventType::Complete,
            "embedded",
            VecstreamFacet {
                source_offset: Some(8),
                ..facet
            },
            vec![],
            vec![],
            1,
        );
        assert_eq!(a.run.run_id, b.run.run_id);
        assert_eq!(a.run.run_id, started.run.run_id);
        assert_ne!(a.run.run_id, c.run.run_id);
        assert_eq!(a.vecstream.stage, "embed:embedded");
        assert_eq!(f.topic("t").namespace, "kafka://127.0.0.1:9092");
    }
}
