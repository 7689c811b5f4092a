//! `vecstream search`: embeds the query with the collection's model (the configured one, or
//! the one the alias's migration state records for it) and asks Weaviate for the nearest
//! chunks of the active collection.

use std::process::ExitCode;
use std::sync::Arc;
use vecstream_core::printable;

use anyhow::Context;
use vecstream_config::Config;
use vecstream_engine::Engine;
use vecstream_weaviate::{
    Condition, Fusion, KEYWORD_PROPERTIES, SearchMode, SearchQuery, Tenancy, WeaviateClient,
    best_per_document, collection_name, is_collection_of,
};

use crate::cli::{FusionArg, SearchArgs, SearchModeArg};

const PROPERTIES: [&str; 10] = [
    "doc_id",
    "doc_key",
    "doc_version",
    "chunk_index",
    "text",
    "model_id",
    "tenant",
    "title",
    "source",
    "trace_id",
];

/// The model a migration state records for `collection`, when it is not the configured
/// model's collection (best effort: without Kafka, none). A collection of an earlier schema
/// generation is found this way too: its name no longer derives from the model id.
async fn recorded_model(
    config: &Config,
    collection: &str,
) -> Option<vecstream_workflows::migration::ModelCollection> {
    let configured = super::embed::engine_config(&config.engine).ok()?;
    let configured_id = vecstream_engine::model::ModelSpec::load(
        std::path::Path::new(&configured.model_dir),
        configured.max_seq_length,
    )
    .ok()
    .map(|(spec, _)| spec.model_id);
    if configured_id.is_some_and(|id| is_collection_of(&id, collection)) {
        return None;
    }
    let states = vecstream_workflows::migration::ControlTopic::new(&config.kafka)
        .ok()?
        .read_all()
        .await
        .ok()?;
    states
        .values()
        .flat_map(|s| s.in_use())
        .find(|m| m.collection == collection)
        .cloned()
}

pub async fn run(config: &Config, args: &SearchArgs) -> anyhow::Result<ExitCode> {
    if args.query.trim().is_empty() {
        anyhow::bail!("the query is empty");
    }
    let weaviate = WeaviateClient::new(&config.weaviate)?;
    let target = args
        .collection
        .clone()
        .unwrap_or_else(|| config.weaviate.alias.clone());
    // An alias resolves to its collection; a collection name stands for itself.
    let collection = match weaviate.resolve_alias(&target).await? {
        Some(c) => c,
        None if weaviate.collection_exists(&target).await? => target.clone(),
        None => anyhow::bail!(
            "{target} is neither an alias nor a collection in Weaviate at {}: nothing is indexed yet \
             (run `vecstream run all` and `vecstream produce`)",
            weaviate.url()
        ),
    };
    // The collection's own tenancy: during a migration between tenancies it is not the
    // configured one.
    let tenancy = weaviate.tenancy_of(&collection).await?;
    if tenancy == Tenancy::MultiTenant && args.tenant.is_none() {
        anyhow::bail!(
            "{collection} is multi-tenant (weaviate.multi_tenancy): every search is one \
             tenant's; name it with --tenant"
        );
    }

    let mode = match args.mode {
        SearchModeArg::Vector => SearchMode::Vector,
        SearchModeArg::Hybrid => SearchMode::Hybrid,
        SearchModeArg::Keyword => SearchMode::Keyword,
    };
    if !(0.0..=1.0).contains(&args.alpha) {
        anyhow::bail!(
            "--alpha {} is not between 0 (keywords only) and 1 (vector only)",
            args.alpha
        );
    }
    let mut filters = args
        .filters
        .iter()
        .map(|f| vecstream_weaviate::parse_filter(f).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(since) = &args.since {
        filters.push(Condition::DateAtLeast {
            path: "produced_at".into(),
            rfc3339: super::lineage::rfc3339_since(since)?,
        });
    }
    // Multi-tenancy scopes the request to the tenant; otherwise its property filters.
    if let Some(t) = args
        .tenant
        .as_deref()
        .filter(|_| tenancy == Tenancy::Filter)
    {
        filters.push(Condition::TextEqual {
            path: "tenant".into(),
            value: t.to_owned(),
        });
    }
    // A keyword search needs no model; the others embed the query with the collection's.
    let query_vector = match mode {
        SearchMode::Keyword => None,
        _ => Some(embed_query(config, &collection, tenancy, &args.query).await?),
    };
    // Chunk hits fold into documents: enough chunks to fill k documents.
    let limit = if args.chunks {
        args.k
    } else {
        args.k.saturating_mul(5).clamp(20, 200)
    };
    let query = SearchQuery {
        mode,
        text: &args.query,
        vector: query_vector.as_deref(),
        alpha: args.alpha,
        fusion: match args.fusion {
            FusionArg::RelativeScore => Fusion::RelativeScore,
            FusionArg::Ranked => Fusion::Ranked,
        },
        limit,
        properties: &PROPERTIES,
        keyword_properties: &KEYWORD_PROPERTIES,
        filters,
        scope: args.tenant.as_deref().and_then(|t| tenancy.scope(t)),
    };
    let mut hits = weaviate.search(&collection, &query).await?;
    if !args.chunks {
        hits = best_per_document(hits, args.k);
    }
    if hits.is_empty() {
        eprintln!("no results in {collection}");
    }
    for (rank, hit) in hits.iter().enumerate() {
        let p = &hit.properties;
        let text = p.get("text").and_then(|t| t.as_str()).unwrap_or("");
        let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let snippet: String = snippet.chars().take(160).collect();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "rank": rank + 1,
                    "score": hit.score,
                    "mode": mode.as_str(),
                    "id": hit.id,
                    "doc_id": p.get("doc_id"),
                    "doc_version": p.get("doc_version").map(exact_version),
                    "tenant": p.get("tenant"),
                    "chunk_index": p.get("chunk_index"),
                    "title": p.get("title"),
                    "source": p.get("source"),
                    "snippet": snippet,
                    "text": p.get("text"),
                    "trace_id": p.get("trace_id"),
                    "collection": collection,
                })
            );
        } else {
            let version = p
                .get("doc_version")
                .map(exact_version)
                .map(|v| format!(" v{v}"))
                .unwrap_or_default();
            let trace = p
                .get("trace_id")
                .and_then(|t| t.as_str())
                .map(|t| format!("  trace={t}"))
                .unwrap_or_default();
            println!(
                "{:>2}. {:.3}  {}{} #{}  {}{}",
                rank + 1,
                hit.score,
                printable(p.get("doc_id").and_then(|d| d.as_str()).unwrap_or("?")),
                version,
                p.get("chunk_index")
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                printable(&snippet),
                trace
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Embeds the query with the collection's model: the configured one, or the one a
/// migration state records for it (the alias moved to another model); through the query
/// lane of the configured providers when they serve this model (a running `vecstream
/// serve`), else the engine here.
async fn embed_query(
    config: &Config,
    collection: &str,
    tenancy: Tenancy,
    text: &str,
) -> anyhow::Result<Vec<f32>> {
    let mut engine_settings = config.engine.clone();
    let recorded = recorded_model(config, collection).await;
    if let Some(recorded) = &recorded {
        engine_settings.model_dir = recorded.target.model_dir.clone();
        engine_settings.max_seq_length = recorded.target.max_seq_length.unwrap_or(0);
        engine_settings.precision = recorded.target.precision.as_str().to_owned();
    }
    let engine_cfg = super::embed::engine_config(&engine_settings)?;
    let engine = tokio::task::spawn_blocking(move || Engine::start(engine_cfg))
        .await?
        .context("starting the embedding engine")?;
    let model_id = engine.info().model_id.clone();
    // Vectors of another model live in another space: comparing them would be noise.
    let of_model = is_collection_of(&model_id, collection)
        || recorded.as_ref().is_some_and(|r| r.model_id == model_id);
    if !of_model {
        anyhow::bail!(
            "{collection} holds vectors of another model than the configured one ({model_id}), \
             and no migration state records its model; set engine.model_dir to that \
             collection's model, search a collection of {model_id} with --collection {}, \
             or search by keywords alone (--mode keyword)",
            collection_name(&model_id, tenancy)
        );
    }
    let metrics = vecstream_providers::ProviderMetrics::unregistered()?;
    let provider = vecstream_providers::ChainBuilder::new(&engine_settings, metrics)
        .build_for(Arc::new(engine), vecstream_providers::Lane::Query)?;
    let embedded = provider
        .embed(&[vecstream_providers::EmbedInput::text(text.to_owned())])
        .await?;
    tracing::debug!(provider = %embedded.provider, "query embedded");
    embedded
        .vectors
        .into_iter()
        .next()
        .context("the provider returned no vector")
}

/// A stored `doc_version` as a JSON integer: stored as decimal text (exact 64-bit), or as a
/// number by collections of the first schema.
fn exact_version(v: &serde_json::Value) -> serde_json::Value {
    match v.as_str().and_then(|s| s.parse::<i64>().ok()) {
        Some(n) => n.into(),
        None => v.clone(),
    }
}
