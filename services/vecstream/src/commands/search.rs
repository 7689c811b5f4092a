//! `vecstream search`: embeds the query with the collection's model (the configured one, or
//! the one the alias's migration state records for it) and asks Weaviate for the nearest
//! chunks of the active collection.

use std::process::ExitCode;
use std::sync::Arc;
use vecstream_core::printable;

use anyhow::Context;
use vecstream_config::Config;
use vecstream_engine::Engine;
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name, is_collection_of};

use crate::cli::SearchArgs;

const PROPERTIES: [&str; 6] = [
    "doc_id",
    "doc_version",
    "chunk_index",
    "text",
    "model_id",
    "tenant",
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

    // The query is embedded with the collection's model: the configured one, or the one a
    // migration state records for it (the alias moved to another model).
    let mut engine_settings = config.engine.clone();
    let recorded = recorded_model(config, &collection).await;
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
    let of_model = is_collection_of(&model_id, &collection)
        || recorded.as_ref().is_some_and(|r| r.model_id == model_id);
    if !of_model {
        anyhow::bail!(
            "{collection} holds vectors of another model than the configured one ({model_id}), \
             and no migration state records its model; set engine.model_dir to that \
             collection's model, or search a collection of {model_id} with --collection {}",
            collection_name(&model_id, tenancy)
        );
    }
    // The query lane of the configured providers when they serve this model (a running
    // `vecstream serve`), else the engine here.
    let metrics = vecstream_providers::ProviderMetrics::unregistered()?;
    let provider = vecstream_providers::ChainBuilder::new(&engine_settings, metrics)
        .build_for(Arc::new(engine), vecstream_providers::Lane::Query)?;
    let embedded = provider
        .embed(&[vecstream_providers::EmbedInput::text(args.query.clone())])
        .await?;
    tracing::debug!(provider = %embedded.provider, "query embedded");
    let query_vector = embedded
        .vectors
        .into_iter()
        .next()
        .context("the provider returned no vector")?;
    let hits = weaviate
        .near_vector_where(
            &collection,
            &query_vector,
            args.k,
            &PROPERTIES,
            // Multi-tenancy scopes the request to the tenant; otherwise its property filters.
            args.tenant
                .as_deref()
                .filter(|_| tenancy == Tenancy::Filter)
                .map(|t| ("tenant", t)),
            args.tenant.as_deref().and_then(|t| tenancy.scope(t)),
        )
        .await?;
    if hits.is_empty() {
        eprintln!("no results in {collection}");
    }
    for (rank, hit) in hits.iter().enumerate() {
        let p = &hit.properties;
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "rank": rank + 1,
                    "score": 1.0 - hit.distance,
                    "id": hit.id,
                    "doc_id": p.get("doc_id"),
                    "doc_version": p.get("doc_version").map(exact_version),
                    "chunk_index": p.get("chunk_index"),
                    "text": p.get("text"),
                    "tenant": p.get("tenant"),
                    "collection": collection,
                })
            );
        } else {
            let text = p.get("text").and_then(|t| t.as_str()).unwrap_or("");
            let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let snippet: String = snippet.chars().take(160).collect();
            println!(
                "{:>2}. {:.3}  {} #{}  {}",
                rank + 1,
                1.0 - hit.distance,
                printable(p.get("doc_id").and_then(|d| d.as_str()).unwrap_or("?")),
                p.get("chunk_index")
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                printable(&snippet)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A stored `doc_version` as a JSON integer: stored as decimal text (exact 64-bit), or as a
/// number by collections of the first schema.
fn exact_version(v: &serde_json::Value) -> serde_json::Value {
    match v.as_str().and_then(|s| s.parse::<i64>().ok()) {
        Some(n) => n.into(),
        None => v.clone(),
    }
}
