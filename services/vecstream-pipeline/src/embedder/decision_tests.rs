use super::*;
use crate::testing::{chunker, document};

fn source() -> Source<'static> {
    Source {
        key: Some(b"d"),
        payload: Some(b"bytes"),
        topic: "docs.documents.v1",
        partition: 3,
        offset: 42,
        origin_offset: 42,
    }
}

fn rules(chunker: &Chunker) -> Rules<'_> {
    Rules {
        model_id: "m",
        chunker,
        max_body_bytes: 1000,
        max_chunks: 4,
        large_document_tokens: None,
    }
}

fn state(version: i64, hash: &str, deleted: bool) -> DocState {
    DocState {
        version,
        model_id: "m".into(),
        content_hash: hash.into(),
        deleted,
        escalated_version: None,
        escalated: Vec::new(),
        deleted_at_offset: None,
    }
}

fn hash_of(body: &str) -> String {
    vecstream_core::content_hash(&crate::normalize::normalize(body, "text/plain"))
}

#[test]
fn a_new_document_is_embedded_in_chunks() {
    let c = chunker(6);
    let d = decide(
        source(),
        Read::Doc(document("d", 1, "one two three four five six seven")),
        None,
        rules(&c),
    );
    let Decision::Embed { chunks, hash, .. } = &d else {
        panic!("{d:?}")
    };
    assert_eq!(chunks.len(), 2, "4 content tokens per window");
    assert_eq!(hash, &hash_of("one two three four five six seven"));
    assert_eq!(d.outcome(), DocOutcome::Embedded);
    assert_eq!(d.identity(), ("default", "d", Some(1)));
    assert_eq!(d.record_key(), "d");
}

#[test]
fn the_same_content_and_model_is_unchanged_another_model_is_not() {
    let c = chunker(16);
    let body = "the same words";
    let known = state(1, &hash_of(body), false);
    let d = decide(
        source(),
        Read::Doc(document("d", 2, body)),
        Some(&known),
        rules(&c),
    );
    assert_eq!(d.outcome(), DocOutcome::Unchanged);
    let other_model = DocState {
        model_id: "old".into(),
        ..known
    };
    let d = decide(
        source(),
        Read::Doc(document("d", 2, body)),
        Some(&other_model),
        rules(&c),
    );
    assert_eq!(d.outcome(), DocOutcome::Embedded);
}

#[test]
fn older_versions_are_fenced_after_a_version_and_after_a_delete() {
    let c = chunker(16);
    let d = decide(
        source(),
        Read::Doc(document("d", 1, "x")),
        Some(&state(2, "h", false)),
        rules(&c),
    );
    assert_eq!(d.outcome(), DocOutcome::Stale);
    let d = decide(
        source(),
        Read::Doc(document("d", 1, "x")),
        Some(&state(2, "", true)),
        rules(&c),
    );
    assert_eq!(d.outcome(), DocOutcome::StaleAfterDelete);
    assert!(
        d.state_after("m", None).is_none(),
        "fenced: the memory keeps the newer state"
    );
}

#[test]
fn deletes_by_flag_and_by_tombstone() {
    let c = chunker(16);
    let mut gone = document("d", 5, "");
    gone.deleted = true;
    let d = decide(source(), Read::Doc(gone), None, rules(&c));
    assert!(
        matches!(
            d,
            Decision::Delete {
                version: 5,
                tombstone: false,
                at_offset: None,
                ..
            }
        ),
        "{d:?}"
    );
    let d = decide(
        source(),
        Read::Tombstone {
            tenant: "default".into(),
            doc_id: "d".into(),
        },
        Some(&state(9, "h", false)),
        rules(&c),
    );
    assert!(
        matches!(
            d,
            Decision::Delete {
                version: TOMBSTONE_VERSION,
                tombstone: true,
                at_offset: Some(42),
                ..
            }
        ),
        "{d:?}"
    );
    assert_eq!(d.identity(), ("default", "d", None));
}

#[test]
fn poison_records_are_dead_letters_with_their_source_and_reason() {
    let c = chunker(6);
    let mut r = rules(&c);
    r.max_body_bytes = 10;
    let cases = [
        (
            Read::Bad(Reason::Undecodable, "bad magic".into()),
            Reason::Undecodable,
        ),
        (Read::Doc(document("d", 1, "   ")), Reason::EmptyBody),
        (
            Read::Doc(document("d", 1, "far more than ten bytes")),
            Reason::OverLimits,
        ),
    ];
    for (read, reason) in cases {
        let d = decide(source(), read, None, r);
        let Decision::DeadLetter(dl) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(dl.reason, reason);
        assert_eq!((dl.source_partition, dl.source_offset), (3, 42));
        assert_eq!(
            dl.payload.as_deref(),
            Some(&b"bytes"[..]),
            "original bytes kept"
        );
        assert_eq!(d.outcome(), DocOutcome::DeadLettered);
        assert!(d.state_after("m", None).is_none());
    }
    // Over max_chunks (4 windows of 4 tokens).
    let d = decide(
        source(),
        Read::Doc(document("d", 1, &"w ".repeat(17))),
        None,
        rules(&c),
    );
    assert!(
        matches!(&d, Decision::DeadLetter(dl) if dl.reason == Reason::OverLimits),
        "{d:?}"
    );
}

#[test]
fn large_documents_are_escalated_only_when_escalation_is_on() {
    let c = chunker(6);
    let body = "w ".repeat(12);
    let mut r = rules(&c);
    assert_eq!(
        decide(source(), Read::Doc(document("d", 1, &body)), None, r).outcome(),
        DocOutcome::Embedded
    );
    r.large_document_tokens = Some(10);
    let d = decide(source(), Read::Doc(document("d", 1, &body)), None, r);
    assert!(matches!(d, Decision::Escalate { tokens: 18, .. }), "{d:?}");
}

#[test]
fn every_outcome_has_one_name_and_one_lineage_shape() {
    let names: std::collections::HashSet<&str> =
        DocOutcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(names.len(), DocOutcome::ALL.len());
    assert_eq!(
        DocOutcome::Deleted.lineage(),
        (EventType::Complete, Output::Vectors)
    );
    assert_eq!(
        DocOutcome::DeadLettered.lineage(),
        (EventType::Fail, Output::DeadLetters)
    );
    assert_eq!(DocOutcome::Escalated.lineage().0, EventType::Running);
}

#[test]
fn two_tenants_documents_of_one_id_are_remembered_apart() {
    let c = chunker(6);
    let mut other = document("d", 1, "other words");
    other.tenant = "acme".into();
    let reads = vec![
        (source(), Read::Doc(document("d", 5, "first words"))),
        // Tenant acme's v1 of the same id is not older than the default tenant's v5.
        (source(), Read::Doc(other)),
        // A tombstone of acme's document leaves the default tenant's alone.
        (
            source(),
            Read::Tombstone {
                tenant: "acme".into(),
                doc_id: "d".into(),
            },
        ),
        (source(), Read::Doc(document("d", 5, "first words"))),
    ];
    let (decided, pending) = decide_batch(reads, &DedupState::default(), rules(&c));
    let outcomes: Vec<DocOutcome> = decided.iter().map(|d| d.decision.outcome()).collect();
    use DocOutcome::*;
    assert_eq!(outcomes, vec![Embedded, Embedded, Deleted, Unchanged]);
    assert!(matches!(&decided[2].decision, Decision::Delete { tenant, .. } if tenant == "acme"));
    assert_eq!(decided[2].decision.record_key(), "acme\0d");
    // The memory keys both by record key.
    assert!(pending.contains_key(&(3, "d".to_owned())));
    assert!(
        pending[&(3, "acme\0d".to_owned())]
            .as_ref()
            .unwrap()
            .deleted
    );
}

#[test]
fn the_dedup_memory_follows_each_decision() {
    let doc = document("d", 7, "b");
    let skip = |why| Decision::Skip {
        doc: doc.clone(),
        hash: "h".into(),
        why,
    };
    let unchanged = skip(Skip::Unchanged);
    let (id, state) = unchanged.state_after("m", None).unwrap();
    let state = state.unwrap();
    assert_eq!(
        (id.as_str(), state.version, state.model_id.as_str()),
        ("d", 7, "m")
    );
    assert!(
        skip(Skip::Stale).state_after("m", None).is_none(),
        "fenced: no change"
    );
    let delete = |tombstone| Decision::Delete {
        doc_id: "d".into(),
        tenant: "t".into(),
        version: 9,
        tombstone,
        at_offset: tombstone.then_some(42),
    };
    let mut known = self::state(7, "h", false);
    known.escalated = vec!["doc-d-7-x-y".into()];
    let (_, deleted) = delete(false).state_after("m", Some(&known)).unwrap();
    let deleted = deleted.unwrap();
    assert!(deleted.deleted && deleted.version == 9);
    assert!(
        deleted.escalated.is_empty(),
        "the delete waited for the jobs: none is owed any more"
    );
    // A tombstone leaves a marker with the last version seen and its offset.
    let (_, marker) = delete(true).state_after("m", Some(&known)).unwrap();
    let marker = marker.unwrap();
    assert_eq!(
        (marker.deleted, marker.version, marker.deleted_at_offset),
        (true, 7, Some(42))
    );
}

#[test]
fn every_escalated_job_is_remembered_until_a_delete() {
    // Only an escalation names a job: an ordinary document's delete needs no Temporal.
    let embed = |v: i64, body: &str| Decision::Embed {
        doc: document("d", v, body),
        hash: format!("h{v}"),
        chunks: Vec::new(),
    };
    let (_, s) = embed(1, "b").state_after("m", None).unwrap();
    assert!(s.unwrap().escalated.is_empty());
    let escalate = |v: i64| Decision::Escalate {
        doc: document("d", v, "b"),
        hash: format!("h{v}"),
        tokens: 40_000,
    };
    let (_, s1) = escalate(1).state_after("m", None).unwrap();
    let s1 = s1.unwrap();
    let job1 = vecstream_core::large_document_workflow_id("default", "d", 1, "m", "h1");
    assert_eq!(s1.escalated, vec![job1.clone()]);
    // A second escalated version and a newer inline one keep every job: each may publish.
    let (_, s2) = escalate(2).state_after("m", Some(&s1)).unwrap();
    let s2 = s2.unwrap();
    let (_, s3) = embed(3, "b3").state_after("m", Some(&s2)).unwrap();
    let s3 = s3.unwrap();
    assert_eq!(
        s3.pending_jobs("default", "d"),
        vec![
            job1,
            vecstream_core::large_document_workflow_id("default", "d", 2, "m", "h2")
        ]
    );
    // Records of older embedders name one version; its job keeps the old id.
    let old: DocState = serde_json::from_str(
        r#"{"version":1,"model_id":"m","content_hash":"h","escalated_version":1}"#,
    )
    .unwrap();
    assert_eq!(old.pending_jobs("default", "d"), vec!["doc-d-1".to_owned()]);
    // Older embedders knew no tenants: another tenant's memory owes no such job.
    assert!(old.pending_jobs("acme", "d").is_empty());
    let json = serde_json::to_string(&s3).unwrap();
    assert_eq!(serde_json::from_str::<DocState>(&json).unwrap(), s3);
}

#[test]
fn after_a_tombstone_older_records_stay_deleted_and_a_recreation_is_embedded() {
    let c = chunker(16);
    let mut marker = state(4, "", true);
    // The tombstone was at offset 100 of the partition.
    marker.deleted_at_offset = Some(100);
    let at = |version: i64, origin_offset: i64| {
        let from = Source {
            origin_offset,
            ..source()
        };
        let d = document("d", version, "body words");
        decide(from, Read::Doc(d), Some(&marker), rules(&c)).outcome()
    };
    assert_eq!(at(3, 120), DocOutcome::StaleAfterDelete, "older version");
    assert_eq!(
        at(4, 120),
        DocOutcome::StaleAfterDelete,
        "the deleted version"
    );
    assert_eq!(
        at(9, 60),
        DocOutcome::StaleAfterDelete,
        "a dead letter from before the tombstone, replayed: newer, never seen, still out"
    );
    assert_eq!(at(5, 120), DocOutcome::Embedded, "a re-creation");
}

#[test]
fn a_batch_sees_its_own_earlier_decisions() {
    let c = chunker(16);
    let mut memory = DedupState::default();
    memory.insert_partition(3, Default::default());
    let reads = vec![
        (source(), Read::Doc(document("d", 1, "first words"))),
        // Re-published unchanged within the same batch.
        (source(), Read::Doc(document("d", 2, "first words"))),
        // An older version after it: fenced by the batch's own state.
        (source(), Read::Doc(document("d", 1, "first words"))),
        (
            source(),
            Read::Tombstone {
                tenant: "default".into(),
                doc_id: "d".into(),
            },
        ),
        // After the tombstone its marker fences the older versions; a newer one re-creates.
        (source(), Read::Doc(document("d", 1, "again"))),
        (source(), Read::Doc(document("d", 3, "again"))),
    ];
    let (decided, pending) = decide_batch(reads, &memory, rules(&c));
    let outcomes: Vec<DocOutcome> = decided.iter().map(|d| d.decision.outcome()).collect();
    assert_eq!(
        outcomes,
        vec![
            DocOutcome::Embedded,
            DocOutcome::Unchanged,
            DocOutcome::Stale,
            DocOutcome::Deleted,
            DocOutcome::StaleAfterDelete,
            DocOutcome::Embedded
        ]
    );
    let last = pending[&(3, "d".to_owned())].as_ref().unwrap();
    assert_eq!(
        (last.version, last.content_hash.as_str()),
        (3, hash_of("again").as_str())
    );
}

#[test]
fn an_escalation_deleted_later_in_the_same_batch_never_starts_its_job() {
    let c = chunker(6);
    let mut r = rules(&c);
    r.large_document_tokens = Some(10);
    let mut memory = DedupState::default();
    memory.insert_partition(3, Default::default());
    let large = "w ".repeat(12);
    let reads = vec![
        (source(), Read::Doc(document("d", 1, &large))),
        (
            source(),
            Read::Tombstone {
                tenant: "default".into(),
                doc_id: "d".into(),
            },
        ),
        // Another document's escalation is left alone.
        (source(), Read::Doc(document("e", 1, &large))),
    ];
    let (decided, pending) = decide_batch(reads, &memory, r);
    let outcomes: Vec<DocOutcome> = decided.iter().map(|d| d.decision.outcome()).collect();
    assert_eq!(
        outcomes,
        vec![
            DocOutcome::StaleAfterDelete,
            DocOutcome::Deleted,
            DocOutcome::Escalated
        ]
    );
    // The delete waits for no job: none was started for the superseded version.
    let delete = &decided[1];
    assert!(
        delete
            .before
            .as_ref()
            .is_none_or(|b| b.pending_jobs("default", "d").is_empty()),
        "{:?}",
        delete.before
    );
    let after = pending[&(3, "d".to_owned())].as_ref().unwrap();
    assert!(after.deleted && after.escalated.is_empty(), "{after:?}");
}
