//! `vecstream status`: is every service vecstream depends on reachable and healthy?

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;
use vecstream_config::Config;
use vecstream_kafka::{SchemaRegistry, topics};
use vecstream_weaviate::WeaviateClient;

use crate::cli::StatusArgs;

/// One line of the report.
#[derive(Debug, Serialize)]
struct Check {
    service: &'static str,
    endpoint: String,
    healthy: bool,
    detail: String,
    millis: u128,
}

async fn check<F>(service: &'static str, endpoint: String, timeout: Duration, probe: F) -> Check
where
    F: Future<Output = anyhow::Result<String>>,
{
    let start = Instant::now();
    let (healthy, detail) = match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(detail)) => (true, detail),
        Ok(Err(e)) => (false, format!("{e:#}")),
        Err(_) => (false, format!("no answer within {}s", timeout.as_secs())),
    };
    Check {
        service,
        endpoint,
        healthy,
        detail,
        millis: start.elapsed().as_millis(),
    }
}

pub async fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut kafka_cfg = config.kafka.clone();
    kafka_cfg.request_timeout_ms = kafka_cfg.request_timeout_ms.min(timeout.as_millis() as u64);

    let kafka = check("kafka", config.kafka.brokers.clone(), timeout, async {
        let info = topics::cluster_info(&kafka_cfg).await?;
        let specs = topics::specs();
        let ours = specs
            .iter()
            .filter(|s| info.topics.iter().any(|t| t == s.name))
            .count();
        Ok(format!(
            "{} broker(s), {ours}/{} vecstream topics",
            info.brokers.len(),
            specs.len()
        ))
    });
    let registry = check("registry", config.registry.url.clone(), timeout, async {
        let subjects = SchemaRegistry::new(&config.registry)?.subjects().await?;
        Ok(format!("{} subject(s)", subjects.len()))
    });
    let temporal = check(
        "temporal",
        config.temporal.address.clone(),
        timeout,
        async {
            let client = vecstream_workflows::connect(&config.temporal).await?;
            let state =
                vecstream_workflows::describe_namespace(&client, &config.temporal.namespace)
                    .await?;
            let mut detail = format!("namespace {} {state}", config.temporal.namespace);
            if args.workflow {
                let answer = vecstream_workflows::run_health_check(
                    &client,
                    &config.temporal.cpu_task_queue,
                    "status",
                    timeout,
                )
                .await?;
                detail.push_str(&format!(", health workflow: {answer}"));
            }
            Ok(detail)
        },
    );
    let weaviate = check("weaviate", config.weaviate.url.clone(), timeout, async {
        let version = WeaviateClient::new(&config.weaviate)?.version().await?;
        Ok(format!("version {version}"))
    });
    let checks = {
        let (a, b, c, d) = tokio::join!(kafka, registry, temporal, weaviate);
        vec![a, b, c, d]
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        println!("{:<9} {:<6} {:<42} DETAIL", "SERVICE", "STATE", "ENDPOINT");
        for c in &checks {
            let state = if c.healthy { "up" } else { "DOWN" };
            println!(
                "{:<9} {:<6} {:<42} {} ({} ms)",
                c.service, state, c.endpoint, c.detail, c.millis
            );
        }
        print_migrations(config, &kafka_cfg).await;
    }
    let down: Vec<&str> = checks
        .iter()
        .filter(|c| !c.healthy)
        .map(|c| c.service)
        .collect();
    if down.is_empty() {
        if !args.json {
            println!("all services healthy");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("down: {}", down.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// The model migration of each alias (`docs.control.v1`), with its collections' document
/// counts; best effort: a service down is reported above.
async fn print_migrations(config: &Config, kafka: &vecstream_config::KafkaConfig) {
    use vecstream_workflows::migration::{ControlTopic, RetiredBecause};
    let states = match ControlTopic::new(kafka) {
        Ok(c) => c.read_all().await,
        Err(e) => Err(e),
    };
    let mut states: Vec<_> = match states {
        Ok(s) => s.into_values().collect(),
        Err(e) => {
            println!("migration: not read ({e})");
            return;
        }
    };
    states.sort_by(|a, b| a.alias.cmp(&b.alias));
    let Ok(weaviate) = WeaviateClient::new(&config.weaviate) else {
        return;
    };
    for s in &states {
        println!("migration {}", s.summary());
        let mut collections = Vec::new();
        for (role, m) in [
            ("live", &s.live),
            ("new", &s.target),
            ("previous", &s.previous),
        ] {
            if let Some(m) = m {
                collections.push((role, m.collection.clone()));
            }
        }
        let counts = super::collections::count(&weaviate, collections, None).await;
        println!("  {}", super::collections::describe(&counts));
        for r in &s.retired {
            let because = match r.because {
                RetiredBecause::Rejected => "rejected",
                RetiredBecause::RolledBack => "rolled back",
                RetiredBecause::Superseded => "superseded",
            };
            println!(
                "  model {} {because} ({}; {}): embedders configured with it use the live model",
                r.model_id, r.reason, r.workflow_id
            );
        }
    }
}
