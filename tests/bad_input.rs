//! Bad input of every kind the embedder can meet lands in the DLQ with its reason, and the
//! pipeline goes on. Its own test binary: its fresh consumer group re-reads the whole
//! documents topic, which must not race the other pipeline tests' DLQ assertions.

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use vecstream_core::{Document, topics};
use vecstream_e2e::pipeline::{TopicReader, doc, metrics_text, wait_for_stage};
use vecstream_e2e::{Running, config, describe, require_service, unique, vecstream};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry, wire};

/// One bad record: key, value, the reason the DLQ must give.
type Case = (Option<Vec<u8>>, Option<Vec<u8>>, &'static str);

/// A document encoded as a producer would, with the given writer schema id and schema.
fn encoded(schema_id: u32, schema: &apache_avro::Schema, d: &Document) -> Vec<u8> {
    wire::encode(schema_id, schema, d).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_input_is_dead_lettered_with_its_reason_and_the_pipeline_goes_on() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    let cfg = config();
    let run = unique("e2e-bad-");
    let logs = tempfile::tempdir().unwrap();
    let sets = vec![
        "embedder.group_id=e2e-bad-input-embedder".to_owned(),
        "embedder.transactional_id=e2e-bad-input-txn".to_owned(),
        "embedder.max_body_bytes=3000".to_owned(),
        "embedder.max_chunks=3".to_owned(),
        "embedder.chunk_tokens=32".to_owned(),
        "embedder.chunk_overlap=4".to_owned(),
    ];
    let embedder = Running::start("embedder", 19475, &sets, logs.path());

    let registry = SchemaRegistry::new(&cfg.registry).unwrap();
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    let doc_schema = vecstream_kafka::schemas::parse(vecstream_kafka::schemas::DOCUMENT).unwrap();
    let doc_id = registry
        .ensure_subject(
            &topics::value_subject(topics::DOCUMENTS),
            vecstream_kafka::schemas::DOCUMENT,
        )
        .await
        .unwrap();
    // A schema of another subject: the documents topic accepts only its own subject's.
    let alien = r#"{"type":"record","name":"Alien","namespace":"e2e","fields":[{"name":"x","type":"long"}]}"#;
    let alien_id = registry
        .register(&format!("{run}-alien-value"), alien)
        .await
        .unwrap();
    let mut alien_bytes = vec![0u8];
    alien_bytes.extend_from_slice(&alien_id.to_be_bytes());
    alien_bytes.push(0x54); // zig-zag long 42

    // A registered schema of another topic (DocumentVectors) as the writer.
    let vectors_id = registry
        .ensure_subject(
            &topics::value_subject(topics::VECTORS),
            vecstream_kafka::schemas::DOCUMENT_VECTORS,
        )
        .await
        .unwrap();
    let vectors_bytes = wire::encode(
        vectors_id,
        &vecstream_kafka::schemas::parse(vecstream_kafka::schemas::DOCUMENT_VECTORS).unwrap(),
        &vecstream_core::DocumentVectors {
            content_hash: "h".into(),
            deleted: false,
            ..vecstream_pipeline::document::delete_of("v", "e2e", 1, "m")
        },
    )
    .unwrap();
    // Writer schemas a hostile producer can register under the documents subject (each
    // a compatible evolution: a trailing field with a default) and datums that abuse them.
    let with_field = |field: &str| {
        let json = vecstream_kafka::schemas::DOCUMENT.trim_end();
        let json = json.strip_suffix('}').unwrap().trim_end();
        format!("{},{field}]}}", json.strip_suffix(']').unwrap())
    };
    let documents_subject = topics::value_subject(topics::DOCUMENTS);
    let mut evolved = std::collections::HashMap::new();
    for (name, field) in [
        (
            "recursive",
            r#"{"name":"e2e_nested","type":["null",{"type":"record","name":"E2eNode","fields":[{"name":"next","type":["null","E2eNode"]}]}],"default":null}"#,
        ),
        (
            "bomb",
            r#"{"name":"e2e_junk","type":{"type":"array","items":{"type":"array","items":"null"}},"default":[]}"#,
        ),
        (
            "optional",
            r#"{"name":"e2e_extra","type":["null","string"],"default":null}"#,
        ),
    ] {
        let id = registry
            .register(&documents_subject, &with_field(field))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        evolved.insert(name, id);
    }
    // The document's datum under writer `name`, followed by the extra field's bytes.
    let framed = |name: &str, d: &Document, tail: &[u8]| {
        let mut bytes = encoded(evolved[name], &doc_schema, d);
        bytes.extend_from_slice(tail);
        Some(bytes)
    };
    let deep = [vec![2u8; 100_000], vec![0]].concat();
    // One outer item claiming 2^40 null items (zero bytes each), then the ends of both.
    let mut bomb = vec![2u8];
    let mut claim: u64 = 1 << 41;
    while claim >= 0x80 {
        bomb.push((claim as u8 & 0x7f) | 0x80);
        claim >>= 7;
    }
    bomb.extend_from_slice(&[claim as u8, 0, 0]);
    let lineage_id = registry
        .ensure_subject(
            &topics::value_subject(topics::LINEAGE),
            vecstream_kafka::schemas::LINEAGE_EVENT,
        )
        .await
        .unwrap();
    // (A record without a key cannot even reach the compacted documents topic: the broker
    // refuses it, so that case is the producer's error, not ours.)
    let key = |kind: &str| format!("{run}-{kind}");
    // Documents of the default tenant: their record key is their bare id.
    let good = |kind: &str, body: &str| Document {
        tenant: vecstream_core::DEFAULT_TENANT.into(),
        ..doc(&key(kind), 1, body)
    };
    let valid = encoded(
        doc_id,
        &doc_schema,
        &good("truncated", "some words to cut short"),
    );
    let mut trailing = encoded(doc_id, &doc_schema, &good("trailing", "fine text"));
    trailing.extend_from_slice(b"extra");
    // Invalid UTF-8 inside the body's Avro string: same length, one byte replaced.
    let mut bad_utf8 = encoded(doc_id, &doc_schema, &good("bad-utf8", "caf\u{e9} au lait"));
    let at = bad_utf8.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    bad_utf8[at] = 0xff;
    let mut html = good(
        "html-no-text",
        "<script>var x = 1;</script><style>p{}</style>",
    );
    html.content_type = "text/html".into();
    let mut mismatched = good("key-mismatch", "text");
    mismatched.id = "another-id".into();
    let empty_id = doc("", 1, "text");
    // Identity: another tenant's document keyed by its bare id (a producer unaware of
    // tenants), a tenant name with surrounding whitespace, an id holding the separator.
    let other_tenant = Document {
        tenant: "acme".into(),
        ..good("tenant-bare-key", "text")
    };
    let spaced_tenant = Document {
        tenant: " acme".into(),
        ..good("spaced-tenant", "text")
    };
    let nul_id = good("nul\0id", "text");
    // Just under the documents topic's limit (8 MiB) and over embedder.max_body_bytes: it
    // reaches the DLQ whole (the DLQ topic takes 20 MiB), and the stream goes on.
    let near_limit = good("near-limit", &"x".repeat(8 * 1024 * 1024 - 64 * 1024));
    let long_words = "Every chunk window holds at most thirty two tokens of this text. ".repeat(20);
    let enc = |d: &Document| Some(encoded(doc_id, &doc_schema, d));
    let k = |kind: &str| Some(key(kind).into_bytes());
    let long_id = format!("{}{}", key("long-id-"), "x".repeat(5000));

    // (key, value, expected reason)
    let cases: Vec<Case> = vec![
        (
            k("magic"),
            Some(b"\x01\x00\x00\x00\x01abc".to_vec()),
            "undecodable",
        ),
        (k("short-header"), Some(vec![0, 0, 1]), "undecodable"),
        (k("empty-value"), Some(Vec::new()), "undecodable"),
        (
            k("unknown-schema"),
            Some([vec![0u8], 987_654u32.to_be_bytes().to_vec(), vec![2, 3]].concat()),
            "unknown_schema",
        ),
        (
            k("truncated"),
            Some(valid[..valid.len() / 2].to_vec()),
            "undecodable",
        ),
        (k("trailing"), Some(trailing), "undecodable"),
        (k("alien-writer"), Some(alien_bytes), "unknown_schema"),
        (k("bad-utf8"), Some(bad_utf8), "undecodable"),
        (k("empty-body"), enc(&good("empty-body", "")), "empty_body"),
        (
            k("blank-body"),
            enc(&good("blank-body", " \n\t ")),
            "empty_body",
        ),
        (k("html-no-text"), enc(&html), "empty_body"),
        (
            k("too-big"),
            enc(&good("too-big", &"x".repeat(5000))),
            "over_limits",
        ),
        (
            k("too-many-chunks"),
            enc(&good("too-many-chunks", &long_words)),
            "over_limits",
        ),
        (k("key-mismatch"), enc(&mismatched), "invalid"),
        (k("tenant-bare-key"), enc(&other_tenant), "invalid"),
        (
            Some(vecstream_core::record_key(" acme", &key("spaced-tenant")).into_bytes()),
            enc(&spaced_tenant),
            "invalid",
        ),
        (k("nul\0id"), enc(&nul_id), "invalid"),
        (k("near-limit"), enc(&near_limit), "over_limits"),
        // Another topic's schema as the writer: refused before decoding.
        (k("vectors-writer"), Some(vectors_bytes), "unknown_schema"),
        (
            k("lineage-writer"),
            Some([vec![0u8], lineage_id.to_be_bytes().to_vec(), vec![0]].concat()),
            "unknown_schema",
        ),
        (
            k("schema-id-zero"),
            Some(vec![0, 0, 0, 0, 0, 2, 4]),
            "unknown_schema",
        ),
        // Writer schemas of the subject, abused: bounded decoding dead-letters them.
        (
            k("recursive-deep"),
            framed("recursive", &good("recursive-deep", "text"), &deep),
            "undecodable",
        ),
        (
            k("array-bomb"),
            framed("bomb", &good("array-bomb", "text"), &bomb),
            "undecodable",
        ),
        (
            k("truncated-optional"),
            framed("optional", &good("truncated-optional", "text"), &[2]),
            "undecodable",
        ),
        (
            k("bad-union-index"),
            framed("optional", &good("bad-union-index", "text"), &[14]),
            "undecodable",
        ),
        (
            k("negative-length"),
            framed("optional", &good("negative-length", "text"), &[2, 3]),
            "undecodable",
        ),
        (
            Some(long_id.clone().into_bytes()),
            enc(&Document {
                id: long_id.clone(),
                ..good("long-id", "text")
            }),
            "invalid",
        ),
        (
            Some(format!("default\0{}", key("tombstone-not-canonical")).into_bytes()),
            None,
            "invalid",
        ),
        (
            Some(vec![0xff, 0xfe, 0x00]),
            enc(&good("x", "text")),
            "invalid",
        ),
        (Some(Vec::new()), enc(&empty_id), "invalid"),
    ];
    assert!(cases.len() >= 30);
    // Odd but valid: each is embedded as the README promises (ids are any UTF-8 up to
    // 4096 bytes, unknown content types are text, control characters and entities are text).
    let max_id = format!(
        "{}{}",
        key("max-id-"),
        "m".repeat(4096 - key("max-id-").len())
    );
    let mut entity_html = good("entities", &"&amp; ".repeat(20));
    entity_html.content_type = "text/html".into();
    let mut unknown_type = good("unknown-type", "plain words of an unknown kind");
    unknown_type.content_type = "application/x-e2e-unknown".into();
    let odd: Vec<Document> = vec![
        good(
            "\u{fc}n\u{ef}c\u{f8}d\u{e9}-\u{6587}\u{6863}-\u{1f680}",
            "unicode id",
        ),
        Document {
            id: max_id.clone(),
            ..good("max-id", "an id of exactly 4096 bytes")
        },
        unknown_type,
        Document {
            version: -5,
            ..good("negative-version", "a negative version is a version")
        },
        entity_html,
        good("zero-width", "\u{200b}\u{1f680}\u{200b} rocket"),
        good("control-chars", "bell\u{7} and nul\u{0} inside"),
    ];
    assert!(cases.len() + odd.len() >= 35);
    // From now on: the good document's lineage will be among what this reads.
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let raw: FutureProducer = vecstream_kafka::client_config(&cfg.kafka)
        .set(
            "message.max.bytes",
            vecstream_kafka::topics::DLQ_MAX_RECORD_BYTES,
        )
        .create()
        .unwrap();
    for (key, value, _) in &cases {
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topics::DOCUMENTS);
        if let Some(key) = key {
            rec = rec.key(key.as_slice());
        }
        if let Some(value) = value {
            rec = rec.payload(value.as_slice());
        }
        raw.send(rec, Duration::from_secs(30)).await.unwrap();
    }
    // A good document after all of them: the pipeline keeps going.
    let publisher = DocumentPublisher::connect(&cfg.kafka, &registry)
        .await
        .unwrap();
    for d in &odd {
        publisher.publish(d).await.unwrap();
    }
    let after = key("good-after");
    publisher
        .publish(&doc(&after, 1, "A healthy document after the poison."))
        .await
        .unwrap();
    wait_for_stage(
        &mut lineage,
        &registry,
        &after,
        &["embed:embedded"],
        &[&embedder],
    )
    .await;
    for d in &odd {
        wait_for_stage(
            &mut lineage,
            &registry,
            &d.id,
            &["embed:embedded"],
            &[&embedder],
        )
        .await;
    }

    // Partitions are consumed independently: wait until every keyed case is listed (a key
    // over the longest record key is listed as its hash).
    let listed_key = |k: &[u8]| {
        std::str::from_utf8(&vecstream_core::bounded_key(k))
            .ok()
            .map(str::to_owned)
    };
    let keys: Vec<String> = cases
        .iter()
        .filter_map(|(k, _, _)| k.as_deref())
        .filter(|k| !k.is_empty())
        .filter_map(listed_key)
        .collect();
    let started = std::time::Instant::now();
    let listed: Vec<serde_json::Value> = loop {
        let out = vecstream(&["dlq", "list", "--json"]);
        assert!(out.status.success(), "{}", describe(&out));
        let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if keys
            .iter()
            .all(|k| listed.iter().any(|e| e["key"] == k.as_str()))
            || started.elapsed() > Duration::from_secs(120)
        {
            break listed;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut keyed = 0;
    for (key, _, reason) in &cases {
        let Some(key) = key
            .as_deref()
            .filter(|k| !k.is_empty())
            .and_then(listed_key)
        else {
            continue;
        };
        let entry = listed
            .iter()
            .find(|e| e["key"] == key)
            .unwrap_or_else(|| panic!("{key} is not in the DLQ:\n{}", embedder.log()));
        assert_eq!(entry["reason"], *reason, "{entry}");
        assert_eq!(entry["stage"], "embed", "{entry}");
        assert_eq!(entry["source_topic"], topics::DOCUMENTS, "{entry}");
        if key.ends_with("near-limit") {
            assert!(
                entry["bytes"].as_u64().unwrap() > 8_000_000,
                "kept whole: {entry}"
            );
        }
        keyed += 1;
    }
    assert_eq!(keyed, cases.len() - 2);
    // The two without a readable key: counted by the embedder's metrics, per reason.
    let invalid_count = |metrics: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("vecstream_dlq_records_total{reason=\"invalid\",stage=\"embed\"}")
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let started = std::time::Instant::now();
    let mut metrics = metrics_text(19475).await;
    while invalid_count(&metrics) < 6 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        metrics = metrics_text(19475).await;
    }
    let invalid = invalid_count(&metrics);

    assert!(
        invalid >= 6,
        "key mismatches, identities + 2 unreadable keys:\n{metrics}"
    );
    for reason in ["undecodable", "unknown_schema", "empty_body", "over_limits"] {
        assert!(
            metrics.contains(&format!(
                "vecstream_dlq_records_total{{reason=\"{reason}\",stage=\"embed\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
    embedder.stop();

    // A DLQ topic created before vecstream sized it (the broker's 1 MiB default): a dead
    // letter that cannot fit is written without its payload, saying so and where the
    // original is, and the stream goes on (it used to crash-loop on the same batch).
    // This test binary runs alone, so changing the shared topic for a moment is safe.
    set_dlq_limit("1048588").await;
    let embedder = Running::start("embedder", 19475, &sets, logs.path());
    let oversize = key("oversize-dead-letter");
    raw.send(
        FutureRecord::to(topics::DOCUMENTS)
            .key(oversize.as_bytes())
            .payload(
                enc(&good("oversize-dead-letter", &"y".repeat(2 * 1024 * 1024)))
                    .unwrap()
                    .as_slice(),
            ),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let sentinel = key("sentinel-after-oversize");
    publisher
        .publish(&doc(
            &sentinel,
            1,
            "Still flowing after an oversize dead letter.",
        ))
        .await
        .unwrap();
    wait_for_stage(
        &mut lineage,
        &registry,
        &sentinel,
        &["embed:embedded"],
        &[&embedder],
    )
    .await;
    let started = std::time::Instant::now();
    let entry = loop {
        let out = vecstream(&["dlq", "list", "--json"]);
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|e| e["key"] == oversize.as_str());
        if let Some(e) = found {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{oversize} not in the DLQ:\n{}",
            embedder.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    set_dlq_limit(vecstream_kafka::topics::DLQ_MAX_RECORD_BYTES).await;
    assert_eq!(entry["reason"], "over_limits", "{entry}");
    assert_eq!(entry["bytes"], 0, "{entry}");
    assert!(
        entry["payload_omitted"].as_u64().unwrap() > 2_000_000,
        "{entry}"
    );
    assert!(entry["source_offset"].is_number(), "{entry}");
    let log = embedder.stop();
    assert!(!log.contains("MessageSizeTooLarge"), "{log}");

    // DLQ replay by reason: a filtered replay takes only its records, a replay of another
    // reason takes its own (the first did not count them as replayed), and the first filter
    // run again republishes nothing it already did (each record is remembered as soon as it
    // is acknowledged, so an interrupted replay resumes the same way).
    let group = format!("{run}-replay");
    let replay = |reason: &str| {
        let out = vecstream(&["dlq", "replay", "--reason", reason, "--group", &group]);
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed_as = |out: &str, kind: &str| {
        out.lines()
            .find(|l| l.contains(&format!("key={} ", key(kind))))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned())
    };
    let first = replay("empty_body");
    let empty_at = listed_as(&first, "empty-body").expect("empty_body replayed");
    assert!(listed_as(&first, "truncated").is_none(), "{first}");
    let second = replay("undecodable");
    assert!(listed_as(&second, "truncated").is_some(), "{second}");
    let again = replay("empty_body");
    assert!(
        !again
            .lines()
            .any(|l| l.starts_with(&format!("{empty_at} "))),
        "replayed twice: {again}"
    );
}

/// Sets the DLQ topic's `max.message.bytes` (with its other configs: a non-incremental
/// alter resets what it does not name).
async fn set_dlq_limit(bytes: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        vecstream_kafka::client_config(&config().kafka)
            .create()
            .unwrap();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topics::DOCUMENTS_DLQ))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "2592000000")
        .set("max.message.bytes", bytes);
    let done = admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .unwrap();
    assert!(done.iter().all(Result::is_ok), "{done:?}");
}
