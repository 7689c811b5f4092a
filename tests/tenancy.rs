//! A document is its (tenant, id), matched byte for byte, with an exact 64-bit version:
//! two tenants publishing the same ids keep apart (records, chunks, searches, deletes);
//! ids that differ only by whitespace, case or Unicode normalisation are different
//! documents; nanosecond versions one apart are ordered exactly. Once with the `tenant`
//! property filter (the default), once with Weaviate's own multi-tenancy.

use std::collections::BTreeMap;
use std::time::Duration;

use vecstream_core::{DEFAULT_TENANT, Document, topics};
use vecstream_e2e::pipeline::{doc, eventually, graphql_rows, publisher, start_group_at_end};
use vecstream_e2e::{Running, cli_ok, config, require_service, unique};
use vecstream_weaviate::WeaviateClient;

const SHARED_IDS: usize = 50;

/// Ids one byte (or one code point) apart: each is its own document.
const LOOKALIKE_IDS: [&str; 5] = [" x ", "x", "X", "\u{e9}", "e\u{301}"];

/// Stored documents of `tenant` in `collection`: doc id → (version, text of chunk 0).
/// `None` while Weaviate does not answer.
fn stored(
    base: &str,
    collection: &str,
    tenant: &str,
    multi_tenant: bool,
) -> Option<BTreeMap<String, (i64, String)>> {
    let tenant_json = serde_json::to_string(tenant).unwrap();
    let scope = if multi_tenant {
        format!("tenant: {tenant_json}, ")
    } else {
        format!("where: {{path: [\"tenant\"], operator: Equal, valueText: {tenant_json}}}, ")
    };
    let rows = graphql_rows(
        base,
        format!(
            "{{ Get {{ {collection}({scope}limit: 10000) {{ doc_id doc_version chunk_index text tenant }} }} }}"
        ),
    );
    // A multi-tenant collection answers "tenant not found" before the tenant's first write.
    let rows = match rows {
        Some(rows) => rows,
        None if multi_tenant => return Some(BTreeMap::new()),
        None => return None,
    };
    let mut out = BTreeMap::new();
    for r in rows {
        assert_eq!(r["tenant"], tenant, "another tenant's object: {r}");
        let id = r["doc_id"].as_str().unwrap().to_owned();
        let version: i64 = r["doc_version"].as_str().unwrap().parse().unwrap();
        let entry = out.entry(id).or_insert((version, String::new()));
        entry.0 = entry.0.max(version);
        if r["chunk_index"] == 0 {
            entry.1 = r["text"].as_str().unwrap_or_default().to_owned();
        }
    }
    Some(out)
}

/// Waits until `tenant`'s documents are exactly `expected` (id → version); returns them.
async fn converge(
    base: &str,
    collection: &str,
    tenant: &str,
    multi_tenant: bool,
    expected: &BTreeMap<String, i64>,
    logs: &[&Running],
) -> BTreeMap<String, (i64, String)> {
    eventually(
        &format!("tenant {tenant} holding {expected:?}"),
        logs,
        || async {
            let have = stored(base, collection, tenant, multi_tenant)?;
            let versions: BTreeMap<String, i64> =
                have.iter().map(|(id, (v, _))| (id.clone(), *v)).collect();
            (&versions == expected).then_some(have)
        },
    )
    .await
}

fn search(sets: &[String], query: &str, tenant: &str) -> Vec<serde_json::Value> {
    let out = cli_ok(
        sets,
        &["search", query, "--tenant", tenant, "-k", "20", "--json"],
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn two_tenants_share_ids(multi_tenant: bool, ports: u16) {
    require_service("kafka", 9092);
    require_service("registry", 8081);
    require_service("weaviate", 8080);
    let cfg = config();
    let run = unique(if multi_tenant { "e2e-mt-" } else { "e2e-ten-" });
    let logs = tempfile::tempdir().unwrap();
    let mode = if multi_tenant { "mt" } else { "filter" };
    let alias = format!("E2eTenancy{}{mode}", &run[run.len() - 10..]);
    let sets = vec![
        format!("weaviate.alias={alias}"),
        format!("weaviate.multi_tenancy={multi_tenant}"),
        format!("embedder.group_id=e2e-tenancy-{mode}-embedder"),
        format!("embedder.transactional_id=e2e-tenancy-{mode}-txn"),
        format!("sink.group_id=e2e-tenancy-{mode}-sink"),
    ];
    vecstream_kafka::topics::ensure_topics(&cfg.kafka)
        .await
        .unwrap();
    start_group_at_end(&format!("e2e-tenancy-{mode}-embedder"), topics::DOCUMENTS);
    start_group_at_end(&format!("e2e-tenancy-{mode}-sink"), topics::VECTORS);
    let embedder = Running::start("embedder", ports, &sets, logs.path());
    let sink = Running::start("sink", ports + 1, &sets, logs.path());
    let logs_of = [&embedder, &sink];

    let (a, b) = (format!("{run}-a"), format!("{run}-b"));
    let of = |tenant: &str, id: &str, version: i64, body: &str| Document {
        tenant: tenant.to_owned(),
        ..doc(id, version, body)
    };
    let (_, publisher) = publisher().await;
    // 1. The same 50 ids in both tenants, with different bodies.
    let shared = |i: usize| format!("doc-{i:02}");
    for i in 0..SHARED_IDS {
        let alpha = format!("Alpha note {i}: the lighthouse keeper logs the tide at dawn.");
        let bravo = format!("Bravo memo {i}: the bakery orders flour, butter and yeast.");
        publisher
            .publish(&of(&a, &shared(i), 1, &alpha))
            .await
            .unwrap();
        publisher
            .publish(&of(&b, &shared(i), 1, &bravo))
            .await
            .unwrap();
    }
    // 2. Ids that differ only by surrounding whitespace, case or normalisation (tenant a).
    for (n, id) in LOOKALIKE_IDS.iter().enumerate() {
        let body = format!("Lookalike number {n} of the harbour registry.");
        publisher.publish(&of(&a, id, 1, &body)).await.unwrap();
    }
    // 3. Nanosecond versions one apart, where float64 rounds the first above the second
    //    (ulp 256 at 1.7e18): only exact 64-bit versions order them.
    let v1 = (1_764_000_000_000_000_000_i64 / 256) * 256 + 200;
    let v2 = v1 + 1;
    assert!(
        (v1 as f64) as i64 > v2,
        "float64 would fence the newer version"
    );
    publisher
        .publish(&of(&a, "ns", v1, "The first version of the tide table."))
        .await
        .unwrap();
    publisher
        .publish(&of(&a, "ns", v2, "The second version of the tide table."))
        .await
        .unwrap();

    let weaviate = WeaviateClient::new(&cfg.weaviate).unwrap();
    let collection = eventually("the alias", &logs_of, || async {
        weaviate.resolve_alias(&alias).await.ok()?
    })
    .await;
    let mut expect_a: BTreeMap<String, i64> = (0..SHARED_IDS).map(|i| (shared(i), 1)).collect();
    expect_a.extend(LOOKALIKE_IDS.iter().map(|id| (id.to_string(), 1)));
    expect_a.insert("ns".into(), v2);
    let mut expect_b: BTreeMap<String, i64> = (0..SHARED_IDS).map(|i| (shared(i), 1)).collect();
    let url = cfg.weaviate.url.clone();
    let have_a = converge(&url, &collection, &a, multi_tenant, &expect_a, &logs_of).await;
    let have_b = converge(&url, &collection, &b, multi_tenant, &expect_b, &logs_of).await;
    for i in 0..SHARED_IDS {
        assert!(
            have_a[&shared(i)].1.starts_with("Alpha"),
            "{:?}",
            have_a[&shared(i)]
        );
        assert!(
            have_b[&shared(i)].1.starts_with("Bravo"),
            "{:?}",
            have_b[&shared(i)]
        );
    }
    for (n, id) in LOOKALIKE_IDS.iter().enumerate() {
        assert!(have_a[*id].1.contains(&format!("number {n} ")), "{id:?}");
    }
    assert_eq!(
        have_a["ns"],
        (v2, "The second version of the tide table.".into())
    );

    // 4. Each tenant's search returns its own text only.
    for (tenant, query, marker) in [
        (&a, "the lighthouse keeper and the tide", "Alpha"),
        (&b, "flour and yeast for the bakery", "Bravo"),
    ] {
        let hits = search(&sets, query, tenant);
        assert!(!hits.is_empty(), "{tenant}: no hits");
        for h in &hits {
            assert_eq!(h["tenant"], tenant.as_str(), "{h}");
            let text = h["text"].as_str().unwrap();
            assert!(
                text.starts_with(marker)
                    || text.contains("Lookalike")
                    || text.contains("tide table"),
                "{tenant} found another tenant's text: {h}"
            );
        }
        assert!(
            hits.iter()
                .any(|h| h["text"].as_str().unwrap().starts_with(marker))
        );
    }
    // The ns document's version comes back exact through search too.
    let hits = search(&sets, "the second version of the tide table", &a);
    let ns = hits.iter().find(|h| h["doc_id"] == "ns").expect("ns found");
    assert_eq!(ns["doc_version"], v2, "{ns}");

    // 5. Deletes: tenant a's doc-07 (a tombstone) and its " x " (a deleted version) go;
    //    tenant b's doc-07, and a's "x" and "X", stay.
    publisher.publish_tombstone(&a, &shared(7)).await.unwrap();
    let mut gone = of(&a, " x ", 2, "");
    gone.deleted = true;
    publisher.publish(&gone).await.unwrap();
    // A tombstone of the default tenant's doc-08 touches neither tenant.
    publisher
        .publish_tombstone(DEFAULT_TENANT, &shared(8))
        .await
        .unwrap();
    expect_a.remove(&shared(7));
    expect_a.remove(" x ");
    converge(&url, &collection, &a, multi_tenant, &expect_a, &logs_of).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still_b = stored(&url, &collection, &b, multi_tenant).unwrap();
    let versions_b: BTreeMap<String, i64> = still_b
        .iter()
        .map(|(id, (v, _))| (id.clone(), *v))
        .collect();
    assert_eq!(versions_b, expect_b, "tenant a's deletes reached tenant b");

    // 6. An older nanosecond version published late stays fenced.
    publisher
        .publish(&of(&a, "ns", v1, "The first version again, late."))
        .await
        .unwrap();
    publisher
        .publish(&of(
            &b,
            &shared(1),
            2,
            "Bravo memo 1, second edition: rye flour.",
        ))
        .await
        .unwrap();
    expect_b.insert(shared(1), 2);
    converge(&url, &collection, &b, multi_tenant, &expect_b, &logs_of).await;
    let have_a = stored(&url, &collection, &a, multi_tenant).unwrap();
    assert_eq!(
        have_a["ns"],
        (v2, "The second version of the tide table.".into())
    );

    // 7. A tenant name Weaviate cannot hold: dead-lettered with multi-tenancy, a tenant
    //    like any other without it.
    let odd = format!("{run} odd");
    publisher
        .publish(&of(&odd, "odd-1", 1, "A tenant name with a space in it."))
        .await
        .unwrap();
    if multi_tenant {
        let key = vecstream_core::record_key(&odd, "odd-1");
        let entry = eventually("the odd tenant's dead letter", &logs_of, || async {
            let out = cli_ok(&sets, &["dlq", "list", "--json"]);
            out.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|e| e["key"] == key.as_str())
        })
        .await;
        assert_eq!(entry["reason"], "invalid", "{entry}");
        assert!(
            entry["message"]
                .as_str()
                .unwrap_or_default()
                .contains("multi_tenancy"),
            "{entry}"
        );
    } else {
        let expected: BTreeMap<String, i64> = [("odd-1".to_owned(), 1)].into();
        converge(&url, &collection, &odd, false, &expected, &logs_of).await;
    }

    embedder.stop();
    sink.stop();
    let _ = weaviate.delete_alias(&alias).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_sharing_ids_stay_apart_with_the_tenant_filter() {
    two_tenants_share_ids(false, 19931).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_sharing_ids_stay_apart_with_weaviate_multi_tenancy() {
    two_tenants_share_ids(true, 19941).await;
}
