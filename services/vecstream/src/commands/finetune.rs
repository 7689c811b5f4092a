//! `vecstream finetune start|status|cancel|list`: the fine-tuning job on Temporal and the
//! model store it registers into.

use std::process::ExitCode;

use anyhow::Context;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowQueryOptions,
};
use vecstream_config::Config;
use vecstream_train::{ModelStore, TrainConfig};
use vecstream_workflows::registry::start_finetune;
use vecstream_workflows::{
    FineTuneInput, FineTuneProgress, FineTuneWorkflow, JobProgress, Precision, TrainHeartbeat,
};

use crate::cli::{
    FinetuneCommand, FinetuneListArgs, FinetuneStartArgs, FinetuneStatusArgs, ModelArgs,
};
use crate::commands::job_common::{
    Look, client, ended, model_id_of, print_review, target_of, watch, watch_exit,
};

pub async fn run(config: &Config, cmd: &FinetuneCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FinetuneCommand::Start(args) => start(config, args).await,
        FinetuneCommand::Status(args) => status(config, args).await,
        FinetuneCommand::Cancel(a) => cancel(config, &a.workflow_id).await,
        FinetuneCommand::List(args) => list(config, args),
    }
}

async fn start(config: &Config, args: &FinetuneStartArgs) -> anyhow::Result<ExitCode> {
    let base = target_of(
        config,
        &ModelArgs {
            model_dir: args.base.clone(),
            max_seq_length: args.max_seq_length,
            precision: Precision::Fp32,
        },
    )?;
    let base_model_id = model_id_of(&base)?;
    // The worker reads the file: give it an absolute path.
    let pairs = std::path::Path::new(&args.pairs)
        .canonicalize()
        .with_context(|| format!("cannot read {}", args.pairs))?
        .display()
        .to_string();
    let input = FineTuneInput {
        base,
        pairs,
        train: TrainConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.learning_rate,
            temperature: args.temperature,
            identity_pull: args.identity_pull,
            seed: args.seed,
        },
        held_out_fraction: args.held_out,
        checkpoint_every: args.checkpoint_every,
        k: args.k,
        review_timeout_secs: args
            .review_timeout
            .unwrap_or(config.temporal.review_timeout_secs),
        heartbeat_secs: args.heartbeat_secs,
        gpu_queue: config.temporal.gpu_task_queue.clone(),
        starter: None,
    };
    let client = client(config).await?;
    let id = start_finetune(&client, config, input, &base_model_id).await?;
    println!("{id}");
    eprintln!(
        "fine-tuning {base_model_id} on {}: `vecstream finetune status {id} --watch`, then \
         `vecstream review approve|reject {id} --reviewer NAME`",
        args.pairs
    );
    Ok(ExitCode::SUCCESS)
}

async fn query_progress(client: &Client, id: &str) -> anyhow::Result<FineTuneProgress> {
    client
        .get_workflow_handle::<FineTuneWorkflow>(id)
        .query(
            FineTuneWorkflow::progress,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .with_context(|| format!("querying the progress of {id}"))
}

/// The training activity's last heartbeat, while it runs.
async fn live_training(client: &Client, id: &str) -> Option<TrainHeartbeat> {
    let d = client
        .get_workflow_handle::<FineTuneWorkflow>(id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .ok()?;
    d.raw_description
        .pending_activities
        .iter()
        .filter(|a| {
            a.activity_type
                .as_ref()
                .is_some_and(|t| t.name == "finetune.train")
        })
        .find_map(|a| {
            let payload = a.heartbeat_details.as_ref()?.payloads.first()?;
            serde_json::from_slice(&payload.data).ok()
        })
}

fn describe(p: &FineTuneProgress, live: Option<&TrainHeartbeat>) -> String {
    let mut line = p.phase.as_str().to_owned();
    if let Some(d) = &p.dataset {
        line.push_str(&format!(
            ": {} pairs ({} train, {} held out) on {}",
            d.pairs, d.train, d.held_out, d.base_model_id
        ));
    }
    if let Some(h) = live {
        line.push_str(&format!(
            "; epoch {} step {}/{} loss {:.4} (checkpoint at step {})",
            h.epoch, h.step, h.total_steps, h.loss, h.checkpoint_step
        ));
        if let Some(s) = h.resumed_from_step {
            line.push_str(&format!(", resumed from step {s}"));
        }
    }
    if let Some(t) = &p.training {
        line.push_str(&format!(
            "; trained {} steps, final loss {:.4}",
            t.steps, t.final_loss
        ));
        if let Some(s) = t.resumed_from_step {
            line.push_str(&format!(
                " (resumed from step {s} on attempt {})",
                t.attempt
            ));
        }
    }
    if let Some(c) = p.registered.as_ref().or(p.candidate.as_ref()) {
        line.push_str(&format!("; model {}", c.model_id));
    }
    if p.awaiting_review() {
        line.push_str("; awaiting review");
    }
    line
}

fn print_details(p: &FineTuneProgress) {
    if let Some(e) = &p.evaluation {
        print!("{}", e.table());
    }
    print_review(p.gate());
    if let Some(c) = &p.registered {
        println!("registered {} in {}", c.model_id, c.model_dir);
    }
}

async fn status(config: &Config, args: &FinetuneStatusArgs) -> anyhow::Result<ExitCode> {
    let client = client(config).await?;
    if !args.watch {
        let p = query_progress(&client, &args.workflow_id).await?;
        let live = live_training(&client, &args.workflow_id).await;
        if args.json {
            let out = serde_json::json!({"progress": p, "training_heartbeat": live});
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}", describe(&p, live.as_ref()));
        print_details(&p);
        return Ok(ExitCode::SUCCESS);
    }
    let (p, closed) = watch("steps", || async {
        let p = query_progress(&client, &args.workflow_id).await?;
        let closed = ended(&client, &args.workflow_id).await?;
        let live = live_training(&client, &args.workflow_id).await;
        Ok(Look {
            position: live.as_ref().map(|h| (h.step, h.total_steps)),
            message: describe(&p, live.as_ref()),
            done: p.awaiting_review() || p.finished() || closed.is_some(),
            value: (p, closed),
        })
    })
    .await?;
    println!("{}", describe(&p, None));
    print_details(&p);
    Ok(watch_exit(&client, &args.workflow_id, closed).await)
}

async fn cancel(config: &Config, id: &str) -> anyhow::Result<ExitCode> {
    let client = client(config).await?;
    client
        .get_workflow_handle::<FineTuneWorkflow>(id)
        .cancel(WorkflowCancelOptions::default())
        .await
        .with_context(|| format!("cancelling {id}"))?;
    println!("cancelled {id}");
    Ok(ExitCode::SUCCESS)
}

fn list(config: &Config, args: &FinetuneListArgs) -> anyhow::Result<ExitCode> {
    let store = ModelStore::new(&config.engine.model_store);
    let versions = store.list();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(ExitCode::SUCCESS);
    }
    if versions.is_empty() {
        println!("no registered model versions in {}", store.root().display());
    }
    for m in versions {
        println!(
            "{}  (base {}, job {}, approved by {}{})  {}",
            m.model_id,
            m.base_model_id,
            m.job,
            m.reviewer.as_deref().unwrap_or("-"),
            m.reviewer_key
                .as_deref()
                .map(|k| format!(", key {k}"))
                .unwrap_or_default(),
            store.root().join(&m.name).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
