//! `vecstream search`: embeds the query with the configured model and asks Weaviate for the
//! nearest chunks of the active collection.

use std::process::ExitCode;

use anyhow::Context;
use vecstream_config::Config;
use vecstream_engine::Engine;
use vecstream_weaviate::{WeaviateClient, collection_name};

use crate::cli::SearchArgs;

const PROPERTIES: [&str; 6] = [
    "doc_id",
    "doc_version",
    "chunk_index",
    "text",
    "model_id",
    "tenant",
];

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

    let engine_cfg = super::embed::engine_config(&config.engine)?;
    let engine = tokio::task::spawn_blocking(move || Engine::start(engine_cfg))
        .await?
        .context("starting the embedding engine")?;
    let model_id = engine.info().model_id.clone();
    // Vectors of another model live in another space: comparing them would be noise.
    if collection_name(&model_id) != collection {
        anyhow::bail!(
            "{collection} holds vectors of another model than the configured one ({model_id}); \
             set engine.model_dir to that collection's model, or search a collection of {model_id} \
             with --collection {}",
            collection_name(&model_id)
        );
    }
    let query = engine
        .embed(vec![args.query.clone()])
        .await?
        .pop()
        .context("the engine returned no vector")?;
    let hits = weaviate
        .near_vector_where(
            &collection,
            &query.vector,
            args.k,
            &PROPERTIES,
            args.tenant.as_deref().map(|t| ("tenant", t)),
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
                    "doc_version": p.get("doc_version"),
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
                p.get("doc_id").and_then(|d| d.as_str()).unwrap_or("?"),
                p.get("chunk_index")
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                snippet
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
