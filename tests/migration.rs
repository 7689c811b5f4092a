//! Model migration without loss, as ops drive it, on the real Kafka, Temporal and Weaviate:
//!
//! Each scenario's second model (max_seq_length 112, 88, 80) is its own: no other test's alias
//! shares its collection.
//!
//! 1. Auto migration: an embedder started on model B while the alias serves A starts the
//!    reindex; during the review window updates and deletes reach both collections; a
//!    reject leaves the live collection complete, drops only B, and the embedder configured
//!    with B keeps the live collection current (and says so).
//! 2. Manual migration: approve, deletes before and after the embedders restart on the new
//!    model are gone from both; a rollback gives back an old collection that holds every
//!    change made after the swap.
//! 3. A delete racing two queued large-document jobs of older versions, and a replayed
//!    older dead letter: the document stays deleted.
//! 4. An upgrade from collections of the first schema generation (no exact identities): the
//!    embedder starts the reindex to a current collection; search serves throughout.
//!
//! Each scenario owns its alias, consumer groups (started at the topics' end) and task
//! queues; they run one at a time (two cores).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use vecstream_core::{large_document_workflow_id, topics};
use vecstream_e2e::pipeline::{
    TopicReader, doc, eventually, metric_value, metrics_text, publisher, start_group_at_end,
    tenant_doc_ids, tenant_doc_versions, wait_for_stage,
};
use vecstream_e2e::{
    Running, cache_dir, cli_ok, config, describe, reindex_progress, require_service, unique,
    vecstream, with_sets,
};
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};
use vecstream_workflows::migration::{ControlTopic, MigrationPhase};

/// One scenario at a time: each runs an embedder, a sink, a worker and a reindex.
static ONE_AT_A_TIME: std::sync::LazyLock<tokio::sync::Mutex<()>> =
    std::sync::LazyLock::new(|| tokio::sync::Mutex::new(()));

fn require_stack() {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("temporal", 7233);
    require_service("weaviate", 8080);
}

fn model_dir() -> String {
    cache_dir()
        .join("models/all-MiniLM-L6-v2")
        .to_string_lossy()
        .into_owned()
}

fn model_id(max_seq_length: Option<usize>) -> String {
    vecstream_engine::model::ModelSpec::load(std::path::Path::new(&model_dir()), max_seq_length)
        .unwrap()
        .0
        .model_id
}

/// The scenario's configuration: its alias, groups (at the topics' end), queues, and short
/// migration timings.
async fn scenario(run: &str, alias: &str) -> Vec<String> {
    // The topics exist before the groups are placed at their end.
    vecstream_kafka::topics::ensure_topics(&config().kafka)
        .await
        .unwrap();
    let embedder_group = format!("{run}-embedder");
    let sink_group = format!("{run}-sink");
    start_group_at_end(&embedder_group, topics::DOCUMENTS);
    start_group_at_end(&sink_group, topics::VECTORS);
    vec![
        format!("weaviate.alias={alias}"),
        format!("embedder.group_id={embedder_group}"),
        format!("embedder.transactional_id={run}-txn"),
        format!("sink.group_id={sink_group}"),
        format!("temporal.cpu_task_queue={run}-cpu"),
        format!("temporal.gpu_task_queue={run}-gpu"),
        "temporal.reindex_catch_up_secs=1".into(),
        "temporal.switch_grace_secs=4".into(),
        "temporal.review_timeout_secs=1800".into(),
        "embedder.control_poll_ms=300".into(),
    ]
}

fn body(run: &str, i: usize, version: i64) -> String {
    let topics = [
        "tidal energy in narrow straits",
        "the grammar of bird song",
        "sourdough fermentation",
        "volcanic soil and vineyards",
        "glacier retreat measured by satellites",
    ];
    format!(
        "Record {i} of {run}, version {version}, is about {} and observation {}.",
        topics[i % topics.len()],
        i * 13 % 97
    )
}

fn id(run: &str, i: usize) -> String {
    format!("{run}-{i:03}")
}

/// Waits (up to `secs`) for the reindex's progress to satisfy `done`.
async fn wait_progress(
    sets: &[String],
    wf: &str,
    what: &str,
    secs: u64,
    logs: &[&Running],
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some(p) = reindex_progress(sets, wf) {
            if done(&p) {
                return p;
            }
            last = Some(p);
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
            panic!(
                "{wf}: timed out waiting for {what}; last progress {last:?}\n{}",
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

/// Waits until the tenant's documents in `collection` are exactly `expected` (id →
/// version).
async fn holds(
    collection: &str,
    tenant: &str,
    expected: &BTreeMap<String, i64>,
    logs: &[&Running],
) {
    let url = config().weaviate.url;
    let started = Instant::now();
    loop {
        let have = tenant_doc_versions(&url, collection, tenant);
        if &have == expected {
            return;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let missing: Vec<_> = expected
                .iter()
                .filter(|(k, v)| have.get(*k) != Some(v))
                .take(5)
                .collect();
            let extra: Vec<_> = have
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .take(5)
                .collect();
            let logs: Vec<String> = logs.iter().map(|r| r.log()).collect();
            panic!(
                "{collection}: {} documents, {} expected; wrong or missing e.g. {missing:?}; \
                 extra e.g. {extra:?}\n{}",
                have.len(),
                expected.len(),
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes the scenario's documents (tenant = the run) by index.
struct Corpus {
    run: String,
    publisher: vecstream_kafka::DocumentPublisher,
}

impl Corpus {
    /// Version `version` of document `i`.
    async fn publish(&self, i: usize, version: i64) {
        let d = vecstream_core::Document {
            tenant: self.run.clone(),
            ..doc(&id(&self.run, i), version, &body(&self.run, i, version))
        };
        self.publisher.publish(&d).await.unwrap();
    }

    /// Document `i` deleted by a record with `deleted = true` (version 2).
    async fn delete(&self, i: usize) {
        let mut d = vecstream_core::Document {
            tenant: self.run.clone(),
            ..doc(&id(&self.run, i), 2, "")
        };
        d.deleted = true;
        self.publisher.publish(&d).await.unwrap();
    }

    /// Document `i` deleted by a tombstone.
    async fn tombstone(&self, i: usize) {
        self.publisher
            .publish_tombstone(&self.run, &id(&self.run, i))
            .await
            .unwrap();
    }
}

/// Documents `ids` at `version` (the expected content of a collection).
fn at(version: i64, ids: impl IntoIterator<Item = String>) -> BTreeMap<String, i64> {
    ids.into_iter().map(|i| (i, version)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_migration_keeps_both_collections_exact_and_a_reject_drops_nothing_in_use() {
    require_stack();
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = config();
    let run = unique("e2e-auto-");
    let alias = format!("E2eAuto{}", run.replace('-', ""));
    let logs = tempfile::tempdir().unwrap();
    let sets = scenario(&run, &alias).await;
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let (live_id, new_id) = (model_id(None), model_id(Some(112)));
    let (live, new) = (
        collection_name(&live_id, Tenancy::Filter),
        collection_name(&new_id, Tenancy::Filter),
    );
    let corpus = Corpus {
        run: run.clone(),
        publisher: publisher().await.1,
    };

    // 1. Model A serves the alias: the first embedder's model becomes live.
    let embedder_a = Running::start("embedder", 19801, &sets, logs.path());
    let sink = Running::start("sink", 19802, &sets, logs.path());
    let worker = Running::start("worker", 19803, &sets, logs.path());
    for i in 0..40 {
        corpus.publish(i, 1).await;
    }
    holds(
        &live,
        &run,
        &at(1, (0..40).map(|i| id(&run, i))),
        &[&embedder_a, &sink],
    )
    .await;
    let control = ControlTopic::new(&cfg.kafka).unwrap();
    let state = control
        .read(&alias)
        .await
        .unwrap()
        .expect("the first state");
    assert_eq!(state.live.as_ref().unwrap().model_id, live_id);
    assert_eq!(state.phase, MigrationPhase::Steady);
    embedder_a.stop();

    // 2. An embedder on model B (max_seq_length 112) starts the reindex to its model.
    let mut b_sets = sets.clone();
    b_sets.push("engine.max_seq_length=112".into());
    let embedder_b = Running::start("embedder", 19804, &b_sets, logs.path());
    let wf = format!("reindex-{alias}-{new_id}");
    eventually(
        "the embedder starts the reindex",
        &[&embedder_b],
        || async { embedder_b.log().contains(&wf).then_some(()) },
    )
    .await;
    wait_progress(
        &sets,
        &wf,
        "the review",
        900,
        &[&worker, &embedder_b],
        |p| p["awaiting_review"] == true,
    )
    .await;
    // Until the cutover, the embedder configured with B keeps the live collection current
    // (the reindex's scan and catch-ups fill B).
    let log = embedder_b.log();
    assert!(
        log.contains("embedding with the live model") && !log.contains("switches model"),
        "{log}"
    );

    // 3. During the review window: 20 updates, 20 deletes (tombstones and flags), 5 new.
    for i in 0..20 {
        corpus.publish(i, 2).await;
    }
    for i in 20..30 {
        corpus.tombstone(i).await;
    }
    for i in 30..40 {
        corpus.delete(i).await;
    }
    for i in 40..45 {
        corpus.publish(i, 1).await;
    }
    let mut expected = at(2, (0..20).map(|i| id(&run, i)));
    expected.extend(at(1, (40..45).map(|i| id(&run, i))));
    let everyone = [&embedder_b, &sink, &worker];
    holds(&new, &run, &expected, &everyone).await;
    holds(&live, &run, &expected, &everyone).await;
    let text = cli_ok(&sets, &["reindex", "status", &wf]);
    assert!(
        text.contains(&live) && text.contains(&new) && text.contains("documents"),
        "{text}"
    );
    let status = cli_ok(&sets, &["status"]);
    assert!(
        status.contains(&format!("alias {alias}: awaiting_review")),
        "{status}"
    );

    // 4. Reject: the live collection stays complete and serving; the embedder configured with
    //    B moves to the live model (loudly) before B is dropped, and keeps live current.
    cli_ok(
        &sets,
        &[
            "review",
            "reject",
            &wf,
            "--reviewer",
            "e2e",
            "--comment",
            "worse",
        ],
    );
    eventually(
        "the embedder leaves the rejected model",
        &[&embedder_b],
        || async {
            embedder_b
                .log()
                .contains("retired by the alias's migration")
                .then_some(())
        },
    )
    .await;
    wait_progress(&sets, &wf, "the rejection", 300, &everyone, |p| {
        p["phase"] == "rejected"
    })
    .await;
    assert!(
        !weaviate.collection_exists(&new).await.unwrap(),
        "B dropped"
    );
    assert_eq!(
        weaviate.resolve_alias(&alias).await.unwrap(),
        Some(live.clone())
    );
    holds(&live, &run, &expected, &everyone).await;
    let metrics = metrics_text(19804).await;
    assert_eq!(
        metric_value(&metrics, "vecstream_embedder_model_rejected"),
        1.0,
        "{metrics}"
    );
    corpus.publish(0, 3).await;
    corpus.publish(45, 1).await;
    expected.insert(id(&run, 0), 3);
    expected.insert(id(&run, 45), 1);
    holds(&live, &run, &expected, &everyone).await;
    // Nothing re-created the dropped collection (auto-schema is off, the sink never makes
    // one for a retired model).
    assert!(!weaviate.collection_exists(&new).await.unwrap());
    let status = cli_ok(&sets, &["status"]);
    assert!(
        status.contains(&format!("model {new_id} rejected")),
        "{status}"
    );
    let state = control.read(&alias).await.unwrap().unwrap();
    assert_eq!(state.phase, MigrationPhase::Steady, "{}", state.summary());

    embedder_b.stop();
    sink.stop();
    worker.stop();
    let _ = weaviate.delete_alias(&alias).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_migration_deletes_everywhere_and_a_rollback_loses_nothing() {
    require_stack();
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = config();
    let run = unique("e2e-manual-");
    let alias = format!("E2eManual{}", run.replace('-', ""));
    let logs = tempfile::tempdir().unwrap();
    let mut sets = scenario(&run, &alias).await;
    sets.push("embedder.reindex_on_model_change=false".into());
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let (old_id, new_id) = (model_id(None), model_id(Some(88)));
    let (old, new) = (
        collection_name(&old_id, Tenancy::Filter),
        collection_name(&new_id, Tenancy::Filter),
    );
    let corpus = Corpus {
        run: run.clone(),
        publisher: publisher().await.1,
    };

    let embedder_old = Running::start("embedder", 19811, &sets, logs.path());
    let sink = Running::start("sink", 19812, &sets, logs.path());
    let worker = Running::start("worker", 19813, &sets, logs.path());
    for i in 0..30 {
        corpus.publish(i, 1).await;
    }
    holds(
        &old,
        &run,
        &at(1, (0..30).map(|i| id(&run, i))),
        &[&embedder_old, &sink],
    )
    .await;

    // 1. The operator starts the reindex to max_seq_length 88 and approves it.
    let wf = cli_ok(
        &sets,
        &[
            "reindex",
            "start",
            "--alias",
            &alias,
            "--tenant",
            &run,
            "--model-dir",
            &model_dir(),
            "--max-seq-length",
            "88",
            "--range-offsets",
            "100000",
            "--rollback-window",
            "1800",
        ],
    )
    .trim()
    .to_owned();
    wait_progress(&sets, &wf, "the review", 600, &[&worker], |p| {
        p["awaiting_review"] == true
    })
    .await;
    cli_ok(&sets, &["review", "approve", &wf, "--reviewer", "e2e"]);
    wait_progress(&sets, &wf, "the rollback window", 300, &[&worker], |p| {
        p["phase"] == "rollback_window"
    })
    .await;
    assert_eq!(
        weaviate.resolve_alias(&alias).await.unwrap(),
        Some(new.clone())
    );

    // 2. Deletes and updates while the embedder still runs the old model...
    for i in 0..5 {
        corpus.tombstone(i).await;
    }
    for i in 5..10 {
        corpus.publish(i, 2).await;
    }
    let mut expected = at(2, (5..10).map(|i| id(&run, i)));
    expected.extend(at(1, (10..30).map(|i| id(&run, i))));
    let everyone_old = [&embedder_old, &sink, &worker];
    holds(&new, &run, &expected, &everyone_old).await;
    embedder_old.stop();

    // ...and after it restarts on the new model.
    let mut new_sets = sets.clone();
    new_sets.push("engine.max_seq_length=88".into());
    let embedder_new = Running::start("embedder", 19814, &new_sets, logs.path());
    for i in 10..15 {
        corpus.delete(i).await;
    }
    for i in 15..20 {
        corpus.publish(i, 2).await;
    }
    for i in 30..33 {
        corpus.publish(i, 1).await;
    }
    for i in 10..15 {
        expected.remove(&id(&run, i));
    }
    expected.extend(at(2, (15..20).map(|i| id(&run, i))));
    expected.extend(at(1, (30..33).map(|i| id(&run, i))));
    let everyone = [&embedder_new, &sink, &worker];
    holds(&new, &run, &expected, &everyone).await;
    // The previous collection is kept current through the window: a rollback loses nothing.
    holds(&old, &run, &expected, &everyone).await;
    for i in [0, 12] {
        let hits = cli_ok(
            &sets,
            &[
                "search",
                &body(&run, i, 1),
                "--collection",
                &alias,
                "--tenant",
                &run,
                "--json",
            ],
        );
        assert!(
            !hits.contains(&id(&run, i)),
            "{} still searchable: {hits}",
            id(&run, i)
        );
    }
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&sets, &["reindex", "status", &wf, "--json"])).unwrap();
    assert_eq!(status["collections_agree"], true, "{status}");
    let roles: Vec<&str> = status["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["previous", "live"], "{status}");

    // 3. Rollback: the alias serves the old collection again, complete; the new model
    //    retires, and the embedder configured with it moves back to the old model.
    let out = cli_ok(&sets, &["reindex", "rollback", &wf, "--by", "e2e"]);
    assert!(out.contains(&old), "{out}");
    assert_eq!(
        weaviate.resolve_alias(&alias).await.unwrap(),
        Some(old.clone())
    );
    holds(&old, &run, &expected, &everyone).await;
    assert!(!weaviate.collection_exists(&new).await.unwrap());
    eventually(
        "the embedder leaves the rolled-back model",
        &[&embedder_new],
        || async {
            embedder_new
                .log()
                .contains("retired by the alias's migration")
                .then_some(())
        },
    )
    .await;
    corpus.publish(40, 1).await;
    corpus.delete(15).await;
    expected.insert(id(&run, 40), 1);
    expected.remove(&id(&run, 15));
    holds(&old, &run, &expected, &everyone).await;
    // The workflow records its last phase after the drop, a moment later.
    eventually("the reindex rolled back", &[&worker], || async {
        (reindex_progress(&sets, &wf)?["phase"] == "rolled_back").then_some(())
    })
    .await;

    embedder_new.stop();
    sink.stop();
    worker.stop();
    let _ = weaviate.delete_alias(&alias).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_outlives_queued_large_document_jobs_and_a_replayed_dead_letter() {
    require_stack();
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = config();
    let run = unique("e2e-late-");
    let alias = format!("E2eLate{}", run.replace('-', ""));
    let logs = tempfile::tempdir().unwrap();
    let mut sets = scenario(&run, &alias).await;
    sets.push("embedder.large_document_tokens=150".into());
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let live = collection_name(&model_id(None), Tenancy::Filter);
    let (registry, publisher) = publisher().await;
    let mut lineage = TopicReader::new(topics::LINEAGE);
    let large = id(&run, 1);
    let long = |version: i64| {
        (0..60)
            .map(|w| format!("word{w}v{version}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let version = |v: i64| vecstream_core::Document {
        tenant: run.clone(),
        ..doc(&large, v, &long(v))
    };

    // 1. Two versions escalated while no worker runs: both jobs wait in the queue. Then the
    //    document is deleted: the delete asks both jobs to stop and waits until they are
    //    closed (a job that ran first publishes before the delete, never after it).
    let embedder = Running::start("embedder", 19821, &sets, logs.path());
    let sink = Running::start("sink", 19822, &sets, logs.path());
    let v1 = version(1);
    publisher.publish(&v1).await.unwrap();
    let v2_at = publisher.publish(&version(2)).await.unwrap();
    eventually("both versions escalated", &[&embedder], || async {
        (embedder.log().matches("large document escalated").count() >= 2).then_some(())
    })
    .await;
    publisher.publish_tombstone(&run, &large).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let worker = Running::start("worker", 19823, &sets, logs.path());
    let everyone = [&embedder, &sink, &worker];
    wait_for_stage(
        &mut lineage,
        &registry,
        &large,
        &["embed:escalated", "embed:deleted", "sink:deleted"],
        &everyone,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !tenant_doc_ids(&cfg.weaviate.url, &live, &run).contains(&large),
        "a late job brought the document back"
    );

    // 2. A dead letter from before the delete, replayed after it, stays out, even of a
    //    version the embedder never saw (v3: newer than the last version it knew).
    {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = vecstream_kafka::client_config(&cfg.kafka).create().unwrap();
        let schema = vecstream_kafka::schemas::parse(vecstream_kafka::schemas::DOCUMENT).unwrap();
        let payload =
            vecstream_kafka::wire::encode(publisher.schema_id(), &schema, &version(3)).unwrap();
        let (partition, offset) = (v2_at.partition.to_string(), v2_at.offset.to_string());
        let headers = [
            ("vecstream.error.class", "permanent"),
            ("vecstream.error.reason", "rejected"),
            ("vecstream.error.message", "refused at the time"),
            ("vecstream.error.stage", "embed"),
            ("vecstream.source.topic", topics::DOCUMENTS),
            ("vecstream.source.partition", partition.as_str()),
            ("vecstream.source.offset", offset.as_str()),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(value),
            })
        });
        producer
            .send(
                FutureRecord::to(topics::DOCUMENTS_DLQ)
                    .key(vecstream_core::record_key(&run, &large).as_bytes())
                    .payload(&payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let replay = vecstream(&with_sets(
        &sets,
        &[
            "dlq",
            "replay",
            "--key",
            &large,
            "--tenant",
            &run,
            "--group",
            &format!("{run}-replay"),
        ],
    ));
    assert!(replay.status.success(), "{}", describe(&replay));
    wait_for_stage(
        &mut lineage,
        &registry,
        &large,
        &["embed:stale_after_delete"],
        &everyone,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!tenant_doc_ids(&cfg.weaviate.url, &live, &run).contains(&large));
    let ids: BTreeSet<String> = embedder
        .log()
        .lines()
        .filter(|l| l.contains("large document escalated"))
        .filter_map(|l| l.split("workflow_id=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "one job per version: {ids:?}");
    // doc-<record key>-<version>-<model hash8>-<content hash12>: the model and content are
    // named; the run's tenant makes the key `<tenant>\0<id>`, which appears as its hash.
    let key_hash = &large_document_workflow_id(&run, &large, 1, "m", "c")["doc-".len()..][..17];
    for job in &ids {
        let rest = job
            .strip_prefix(&format!("doc-{key_hash}-"))
            .unwrap_or_else(|| panic!("{job}"));
        let parts: Vec<&str> = rest.split('-').collect();
        assert_eq!(parts.len(), 3, "{job}");
        assert!(parts[0] == "1" || parts[0] == "2", "{job}");
        assert_eq!((parts[1].len(), parts[2].len()), (8, 12), "{job}");
    }

    embedder.stop();
    sink.stop();
    worker.stop();
    let _ = weaviate.delete_alias(&alias).await;
}

/// 4. An upgrade from a release whose collections had no exact identities: the alias serves
///    a generation-1 collection (float versions, no `doc_key`) that the migration state
///    records. The embedder of the same model starts the reindex that builds a current
///    collection; searches keep being served by the old one until the cutover, then by the
///    new one, with exact versions; the old collection is dropped after the window.
#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_from_first_generation_collections_reindexes_and_search_serves_meanwhile() {
    require_stack();
    let _one = ONE_AT_A_TIME.lock().await;
    let cfg = config();
    let run = unique("e2e-upg-");
    let suffix = run[run.len() - 12..].to_owned();
    let alias = format!("E2eUpgrade{suffix}");
    let logs = tempfile::tempdir().unwrap();
    let mut sets = scenario(&run, &alias).await;
    // Its own model, max_seq_length 80: no other test uses it (its alias's state keeps the
    // collection in use after the test, which would stop another test's drop of it).
    sets.push("engine.max_seq_length=80".into());
    sets.push("temporal.rollback_window_secs=3".into());
    let model = model_id(Some(80));
    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();

    // 1. What an earlier release left behind.
    let legacy = format!("Chunk_legacy_{suffix}");
    let keyword = |name: &str| vecstream_weaviate::Property::keyword(name);
    let typed = |name: &str, t: &str| vecstream_weaviate::Property::new(name, t);
    let first_generation = vecstream_weaviate::CollectionSpec {
        name: legacy.clone(),
        properties: vec![
            keyword("doc_id"),
            typed("doc_version", "number"),
            keyword("tenant"),
            typed("chunk_index", "int"),
            typed("text", "text"),
            typed("char_start", "int"),
            typed("char_end", "int"),
            typed("token_count", "int"),
            keyword("content_hash"),
            keyword("model_id"),
        ],
        distance: "cosine".into(),
        tenancy: Tenancy::Filter,
    };
    weaviate.ensure_collection(&first_generation).await.unwrap();
    let engine =
        vecstream_engine::Engine::start(vecstream_engine::EngineConfig::new(model_dir())).unwrap();
    let (_, publisher) = publisher().await;
    let corpus = Corpus {
        run: run.clone(),
        publisher,
    };
    let mut objects = Vec::new();
    for i in 0..5 {
        corpus.publish(i, 1).await;
        let text = body(&run, i, 1);
        let vector = engine.embed(vec![text.clone()]).await.unwrap()[0]
            .vector
            .clone();
        objects.push(vecstream_weaviate::BatchObject {
            collection: legacy.clone(),
            tenant: None,
            id: uuid::Uuid::new_v4(),
            properties: serde_json::json!({
                "doc_id": id(&run, i), "doc_version": 1, "tenant": run, "chunk_index": 0,
                "text": text, "char_start": 0, "char_end": 1, "token_count": 1,
                "content_hash": "h", "model_id": model,
            }),
            vector,
        });
    }
    drop(engine);
    let written = weaviate.upsert_batch(&objects).await.unwrap();
    assert!(written.failed.is_empty(), "{written:?}");
    weaviate.set_alias(&alias, &legacy).await.unwrap();
    let recorded = vecstream_workflows::migration::ModelCollection {
        model_id: model.clone(),
        collection: legacy.clone(),
        target: vecstream_workflows::ModelTarget {
            model_dir: model_dir(),
            max_seq_length: Some(80),
            precision: Default::default(),
        },
    };
    ControlTopic::new(&cfg.kafka)
        .unwrap()
        .apply(
            &alias,
            &vecstream_workflows::migration::MigrationEvent::Bootstrapped { live: recorded },
            "",
        )
        .await
        .unwrap();

    // 2. The upgraded pipeline: the embedder starts the reindex to a current collection.
    let sink = Running::start("sink", 19831, &sets, logs.path());
    let worker = Running::start("worker", 19832, &sets, logs.path());
    let embedder = Running::start("embedder", 19833, &sets, logs.path());
    let everyone = [&embedder, &sink, &worker];
    let wf = format!("reindex-{alias}-{model}");
    eventually(
        "the embedder starts the upgrade's reindex",
        &everyone,
        || async {
            let log = embedder.log();
            (log.contains("another schema generation") && log.contains(&wf)).then_some(())
        },
    )
    .await;
    // Meanwhile searches are served by the old collection, with the model it records.
    let search = |query: &str| -> Vec<serde_json::Value> {
        cli_ok(&sets, &["search", query, "--tenant", &run, "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let hits = search("the grammar of bird song");
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h["collection"] == legacy.as_str()),
        "{hits:?}"
    );
    wait_progress(&sets, &wf, "the review", 900, &everyone, |p| {
        p["awaiting_review"] == true
    })
    .await;

    // 3. Approved: the alias serves the current collection, every document exact.
    cli_ok(&sets, &["review", "approve", &wf, "--reviewer", "e2e"]);
    let current = collection_name(&model, Tenancy::Filter);
    eventually("the alias on the current collection", &everyone, || async {
        (weaviate.resolve_alias(&alias).await.ok()?? == current).then_some(())
    })
    .await;
    corpus.publish(5, 1).await;
    holds(
        &current,
        &run,
        &at(1, (0..6).map(|i| id(&run, i))),
        &everyone,
    )
    .await;
    let hits = search("the grammar of bird song");
    assert!(
        hits.iter().all(|h| h["collection"] == current.as_str()),
        "{hits:?}"
    );
    assert!(hits.iter().all(|h| h["doc_version"] == 1), "{hits:?}");
    // The old collection goes after the (short) rollback window.
    eventually("the old collection dropped", &everyone, || async {
        (!weaviate.collection_exists(&legacy).await.ok()?).then_some(())
    })
    .await;

    embedder.stop();
    sink.stop();
    worker.stop();
    let _ = weaviate.delete_alias(&alias).await;
}
