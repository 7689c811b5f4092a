//! An Avro document produced through the real registry is consumed back from real Kafka and
//! decoded; the registry enforces BACKWARD compatibility on our subject.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use vecstream_core::{Document, topics};
use vecstream_e2e::{config, require_service, unique};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry, schemas, wire};

#[tokio::test]
async fn document_round_trips_through_registry_and_kafka() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    let cfg = config();
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .expect("topics");
    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    let publisher = DocumentPublisher::connect(&cfg.kafka, &registry)
        .await
        .expect("publisher");

    let doc = Document {
        id: unique("e2e-doc-"),
        tenant: "acme".into(),
        source: "test://kafka_registry".into(),
        title: Some("Round trip".into()),
        body: "Kafka keeps the source of truth; the registry keeps the contract. ünïcödé ✓".into(),
        content_type: "text/plain".into(),
        metadata: BTreeMap::from([("suite".into(), "e2e".into())]),
        version: 3,
        deleted: false,
        produced_at: 1_763_000_000_000,
    };
    let delivered = publisher.publish(&doc).await.expect("published");

    let consumer: StreamConsumer = vecstream_kafka::client_config(&cfg.kafka)
        .set("group.id", unique("e2e-reader-"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(
        topics::DOCUMENTS,
        delivered.partition,
        Offset::Offset(delivered.offset),
    )
    .unwrap();
    consumer.assign(&tpl).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record within 30 s")
        .unwrap();

    // Keyed by (tenant, id): `acme\0<id>` (the default tenant's documents by the bare id).
    assert_eq!(
        msg.key(),
        Some(format!("acme\0{}", doc.id).as_bytes()),
        "keyed by the record key"
    );
    let (schema_id, payload) = wire::split(msg.payload().expect("a value")).unwrap();
    assert_eq!(schema_id, publisher.schema_id());
    // Decode with the writer schema fetched by id from the registry, as a consumer would.
    let fresh_registry = SchemaRegistry::new(&cfg.registry).unwrap();
    let writer = fresh_registry
        .schema_by_id(schema_id)
        .await
        .expect("schema by id");
    let reader = schemas::parse(schemas::DOCUMENT).unwrap();
    let decoded: Document = wire::decode(&writer, Some(&reader), payload).unwrap();
    assert_eq!(decoded, doc);
}

#[tokio::test]
async fn registry_rejects_a_backward_incompatible_schema() {
    require_service("registry", 8081);
    let cfg = config();
    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    let subject = format!("{}-value", unique("e2e-compat-"));
    let v1 = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    let id = registry
        .ensure_subject(&subject, v1)
        .await
        .expect("v1 registers");
    assert_eq!(
        registry.register(&subject, v1).await.unwrap(),
        id,
        "same schema, same id"
    );

    // A new required field without a default cannot read v1 data: refused.
    let broken = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long"}]}"#;
    let err = registry
        .register(&subject, broken)
        .await
        .expect_err("incompatible schema refused");
    assert!(err.to_string().contains("409"), "{err}");

    // The same field with a default is a compatible evolution.
    let evolved = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}"#;
    let id2 = registry
        .register(&subject, evolved)
        .await
        .expect("compatible schema registers");
    assert_ne!(id, id2);
}

#[tokio::test]
async fn unknown_schema_id_is_a_permanent_error() {
    use vecstream_core::{Classify, ErrorClass};
    require_service("registry", 8081);
    let registry = SchemaRegistry::new(&config().registry).unwrap();
    let err = registry
        .schema_by_id(987_654_321)
        .await
        .expect_err("no such id");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
}

#[tokio::test]
async fn a_topic_accepts_only_its_own_subjects_schemas_and_a_registry_that_cannot_answer_is_retried()
 {
    use vecstream_core::{Classify, ErrorClass};
    use vecstream_kafka::KafkaEdgeError;
    require_service("registry", 8081);
    let cfg = config();
    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    let ours = format!("{}-value", unique("e2e-subject-ours-"));
    let theirs = format!("{}-value", unique("e2e-subject-theirs-"));
    let v1 = r#"{"type":"record","name":"S","fields":[{"name":"a","type":"string"}]}"#;
    let other = r#"{"type":"record","name":"T","fields":[{"name":"z","type":"long"}]}"#;
    let id1 = registry.ensure_subject(&ours, v1).await.unwrap();
    let foreign = registry.ensure_subject(&theirs, other).await.unwrap();

    // A fresh client, as a consumer starts: our id is accepted, the other subject's is not.
    let consumer = SchemaRegistry::new(&cfg.registry).unwrap();
    assert!(consumer.writer_schema(&ours, id1).await.is_ok());
    let err = consumer.writer_schema(&ours, foreign).await.unwrap_err();
    assert!(
        matches!(err, KafkaEdgeError::NotInSubject { .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    // It exists (any consumer of the other topic gets it)...
    assert!(consumer.writer_schema(&theirs, foreign).await.is_ok());
    // ...and an id never registered anywhere is refused the same way.
    assert!(matches!(
        consumer.writer_schema(&ours, 987_654_321).await,
        Err(KafkaEdgeError::NotInSubject { .. })
    ));
    // A version registered after the consumer listed the subject is found (listed again).
    let v2 = r#"{"type":"record","name":"S","fields":[{"name":"a","type":"string"},{"name":"b","type":"long","default":0}]}"#;
    let id2 = registry.register(&ours, v2).await.unwrap();
    assert!(consumer.writer_schema(&ours, id2).await.is_ok());

    // A URL that is not the registry's API (a proxy's 404 page, no error_code), and nothing
    // listening: retryable, so the partition pauses instead of dead-lettering the record
    // as unknown_schema.
    for url in [
        "http://127.0.0.1:8081/not-the-api",
        "http://127.0.0.1:1/apis/ccompat/v7",
    ] {
        let mut wrong = cfg.registry.clone();
        wrong.url = url.into();
        let err = SchemaRegistry::new(&wrong)
            .unwrap()
            .writer_schema(&ours, id1)
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Retryable, "{url}: {err}");
    }
}
