//! `vecstream reindex|eval`: the reindex and evaluation jobs on Temporal.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowQueryOptions,
    WorkflowSignalOptions,
};
use vecstream_config::Config;
use vecstream_weaviate::{Tenancy, WeaviateClient, collection_name};
use vecstream_workflows::registry::{start_evaluation, start_reindex};
use vecstream_workflows::{
    EvalSpec, EvaluateInput, EvaluateWorkflow, JobProgress, ModelTarget, Phase, ReindexInput,
    ReindexProgress, ReindexWorkflow, ReviewDecision,
};

use crate::cli::{
    EvalCommand, EvalRunArgs, OperatorArgs, ReindexCommand, ReindexStartArgs, ReindexStatusArgs,
};
use crate::commands::job_common::{
    Look, absolute, client, ended, model_id_of, print_review, target_of, watch, watch_exit,
};

pub async fn reindex(config: &Config, cmd: &ReindexCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReindexCommand::Start(args) => reindex_start(config, args).await,
        ReindexCommand::Status(args) => reindex_status(config, args).await,
        ReindexCommand::Cancel(a) => reindex_cancel(config, a).await,
        ReindexCommand::Rollback(a) => reindex_rollback(config, a).await,
    }
}

async fn reindex_start(config: &Config, args: &ReindexStartArgs) -> anyhow::Result<ExitCode> {
    let target = target_of(config, &args.model)?;
    let model_id = model_id_of(&target)?;
    let alias = args
        .alias
        .clone()
        .unwrap_or_else(|| config.weaviate.alias.clone());
    let input = ReindexInput {
        alias,
        target,
        target_model_id: model_id.clone(),
        eval: args.eval_suite.as_ref().map(|suite| EvalSpec {
            suite: absolute(suite),
            k: args.eval_k,
            tenant: args.eval_tenant.clone(),
            min_recall: args.min_recall,
            modes: Vec::new(),
        }),
        review_timeout_secs: args
            .review_timeout
            .unwrap_or(config.temporal.review_timeout_secs),
        range_offsets: args
            .range_offsets
            .unwrap_or(config.temporal.reindex_range_offsets),
        catch_up_secs: args
            .catch_up_secs
            .unwrap_or(config.temporal.reindex_catch_up_secs),
        rollback_window_secs: args
            .rollback_window
            .unwrap_or(config.temporal.rollback_window_secs),
        switch_grace_secs: args
            .switch_grace
            .unwrap_or(config.temporal.switch_grace_secs),
        tenant: args.tenant.clone(),
        gpu_queue: config.temporal.gpu_task_queue.clone(),
        heartbeat_secs: args.heartbeat_secs,
        history_budget: args.history_budget,
        carried: None,
        starter: None,
    };
    let client = client(config).await?;
    let id = start_reindex(&client, config, input).await?;
    println!("{id}");
    eprintln!(
        "reindex to {model_id} started; watch it with `vecstream reindex status {id} --watch`, \
         then `vecstream review approve|reject {id} --reviewer NAME`"
    );
    Ok(ExitCode::SUCCESS)
}

async fn query_progress(client: &Client, id: &str) -> anyhow::Result<ReindexProgress> {
    client
        .get_workflow_handle::<ReindexWorkflow>(id)
        .query(
            ReindexWorkflow::progress,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .with_context(|| format!("querying the progress of {id}"))
}

fn describe(p: &ReindexProgress) -> String {
    let (done, total) = p.offsets();
    let mut line = format!(
        "{} {} -> {}: offsets {done}/{total}, {} documents embedded ({:.1}/s)",
        p.phase.as_str(),
        p.alias,
        p.target_collection,
        p.documents_embedded,
        p.rate_docs_per_s
    );
    if let Some(eta) = p.eta_secs.filter(|_| p.phase == Phase::Scanning) {
        line.push_str(&format!(", eta {eta:.0}s"));
    }
    if p.awaiting_review() {
        line.push_str(", awaiting review");
    }
    if p.documents_kept_current > 0 {
        line.push_str(&format!(
            ", {} kept current in the other collection",
            p.documents_kept_current
        ));
    }
    line
}

/// Milliseconds since the epoch as an RFC 3339 time.
fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn reindex_status(config: &Config, args: &ReindexStatusArgs) -> anyhow::Result<ExitCode> {
    let client = client(config).await?;
    if !args.watch {
        let p = query_progress(&client, &args.workflow_id).await?;
        let counts = super::collections::count(
            &WeaviateClient::new(&config.weaviate)?,
            p.collections(),
            p.tenant.as_deref(),
        )
        .await;
        if args.json {
            let mut value = serde_json::to_value(&p)?;
            value["collections"] = serde_json::to_value(&counts)?;
            value["collections_agree"] = serde_json::to_value(super::collections::agree(&counts))?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}", describe(&p));
        println!("  {}", super::collections::describe(&counts));
        if p.migration && p.live_model.is_none() && !p.finished() {
            println!(
                "  the live model is unknown to this reindex: its collection is not kept current"
            );
        }
        if let Some(deadline) = p
            .rollback_deadline_ms
            .filter(|_| p.phase == Phase::RollbackWindow)
        {
            println!(
                "  rollback window open until {} (vecstream reindex rollback {})",
                format_ms(deadline),
                args.workflow_id
            );
        }
        for part in &p.partitions {
            println!(
                "  partition {}: {}/{} (offsets {}..{})",
                part.partition,
                part.done - part.start,
                part.end - part.start,
                part.start,
                part.end
            );
        }
        if let Some(e) = &p.evaluation {
            print!("{}", e.table());
        }
        print_review(p.gate());
        return Ok(ExitCode::SUCCESS);
    }
    let (p, closed) = watch("offsets", || async {
        let p = query_progress(&client, &args.workflow_id).await?;
        let closed = ended(&client, &args.workflow_id).await?;
        let (done, total) = p.offsets();
        Ok(Look {
            position: Some((done.max(0) as u64, total.max(0) as u64)),
            message: describe(&p),
            done: p.finished() || p.awaiting_review() || closed.is_some(),
            value: (p, closed),
        })
    })
    .await?;
    if p.awaiting_review()
        && let Some(e) = &p.evaluation
    {
        print!("{}", e.table());
    }
    println!("{}", describe(&p));
    Ok(watch_exit(&client, &args.workflow_id, closed).await)
}

/// The operator's request as the workflow records it.
fn operator(args: &OperatorArgs) -> ReviewDecision {
    ReviewDecision {
        approve: false,
        reviewer: args.by.clone(),
        comment: args.reason.clone(),
        key_fingerprint: String::new(),
    }
}

async fn reindex_cancel(config: &Config, args: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let id = &args.workflow_id;
    let client = client(config).await?;
    let p = query_progress(&client, id).await?;
    anyhow::ensure!(
        !p.finished(),
        "{id} has already ended ({})",
        p.phase.as_str()
    );
    if !p.migration {
        // A run started before the migration protocol: cancel it the old way.
        return legacy_cancel(config, &client, id, &p).await;
    }
    anyhow::ensure!(
        matches!(
            p.phase,
            Phase::Preparing | Phase::Scanning | Phase::Evaluating | Phase::AwaitingReview
        ),
        "{id} is {} (approved): use `vecstream reindex rollback {id}` to go back",
        p.phase.as_str()
    );
    let handle = client.get_workflow_handle::<ReindexWorkflow>(id);
    handle
        .signal(
            ReindexWorkflow::cancel,
            // The workflow takes the raw payload (a malformed one must not fail the run).
            temporalio_common::data_converters::RawValue::from_value(
                &operator(args),
                &temporalio_common::data_converters::PayloadConverter::default(),
            ),
            WorkflowSignalOptions::default(),
        )
        .await
        .with_context(|| format!("cancelling {id}"))?;
    eprintln!(
        "cancel sent; {id} ends as rejected once embedders have left {} (temporal.switch_grace_secs)",
        p.target_collection
    );
    let result = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .with_context(|| format!("waiting for {id} to end"))?;
    // The cancel may have come too late: the run was approved (or rejected) first.
    anyhow::ensure!(
        !result.approved && result.reason.starts_with("cancelled"),
        "{id} ended otherwise: {} (approved: {})",
        result.reason,
        result.approved
    );
    println!("cancelled {id}: {}", result.reason);
    Ok(ExitCode::SUCCESS)
}

async fn legacy_cancel(
    config: &Config,
    client: &Client,
    id: &str,
    p: &ReindexProgress,
) -> anyhow::Result<ExitCode> {
    let handle = client.get_workflow_handle::<ReindexWorkflow>(id);
    handle
        .cancel(WorkflowCancelOptions::default())
        .await
        .with_context(|| format!("cancelling {id}"))?;
    // Wait for the run to close, then drop what it built unless searches use it.
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;
    let weaviate = WeaviateClient::new(&config.weaviate)?;
    let live = weaviate.resolve_alias(&p.alias).await?;
    if !p.target_collection.is_empty()
        && live.as_deref() != Some(p.target_collection.as_str())
        && weaviate.collection_exists(&p.target_collection).await?
    {
        weaviate.delete_collection(&p.target_collection).await?;
        println!("cancelled {id}; dropped {}", p.target_collection);
    } else {
        println!("cancelled {id}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn reindex_rollback(config: &Config, args: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let id = &args.workflow_id;
    let client = client(config).await?;
    let handle = client.get_workflow_handle::<ReindexWorkflow>(id);
    // Only a run that ended before the migration protocol is rolled back directly; a query
    // that fails is an error, not a reason to swap the alias behind a migration's back.
    let p = query_progress(&client, id).await?;
    if p.migration {
        anyhow::ensure!(
            p.phase == Phase::RollbackWindow,
            "{id} is {}: a rollback is possible only in the rollback window (after approval, \
             until temporal.rollback_window_secs have passed)",
            p.phase.as_str()
        );
        // Signed like a review, for the approved review of this run.
        let key = crate::commands::review::load_key(config, args.key.as_ref())?;
        let signed = key.sign(&vecstream_workflows::signing::Statement::rollback(
            id,
            &p.gate.review_id,
            &args.reason,
        ));
        let answer = vecstream_workflows::review::submit_rollback(&client, id, &signed)
            .await
            .with_context(|| format!("asking {id} to roll back"))?;
        anyhow::ensure!(
            answer.accepted,
            "{id} refused the rollback ({}): {}",
            answer.code,
            answer.reason
        );
        eprintln!(
            "rollback sent: {id} catches {} up, then swaps the alias back",
            p.live_collection
                .as_deref()
                .unwrap_or("the previous collection")
        );
        let result = handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .with_context(|| format!("waiting for {id} to roll back"))?;
        // The window may have closed before the signal was taken.
        anyhow::ensure!(
            result.rolled_back,
            "{id} ended without rolling back: {} (the rollback window had closed)",
            result.reason
        );
        println!(
            "alias {} points at {} again; {} retired ({})",
            result.alias,
            result.previous_collection.as_deref().unwrap_or("?"),
            result.new_collection,
            result.reason
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A reindex that ended before the migration protocol kept its previous collection.
    let result = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .with_context(|| format!("reading the result of {id} (has it finished?)"))?;
    anyhow::ensure!(
        result.approved && !result.rolled_back,
        "{id} was not approved or was rolled back ({}): the alias is where it was",
        result.reason
    );
    let previous = result
        .previous_collection
        .context("the alias had no collection before this reindex: nothing to roll back to")?;
    let weaviate = WeaviateClient::new(&config.weaviate)?;
    anyhow::ensure!(
        weaviate.collection_exists(&previous).await?,
        "{previous} no longer exists (the rollback window closed)"
    );
    weaviate.set_alias(&result.alias, &previous).await?;
    println!(
        "alias {} points at {previous} again (was {})",
        result.alias, result.new_collection
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn eval(config: &Config, cmd: &EvalCommand) -> anyhow::Result<ExitCode> {
    let EvalCommand::Run(args) = cmd;
    eval_run(config, args).await
}

async fn eval_run(config: &Config, args: &EvalRunArgs) -> anyhow::Result<ExitCode> {
    let configured = ModelTarget::configured(&config.engine).map_err(anyhow::Error::msg)?;
    let collections = if args.collections.is_empty() {
        let weaviate = WeaviateClient::new(&config.weaviate)?;
        let live = weaviate
            .resolve_alias(&config.weaviate.alias)
            .await?
            .with_context(|| format!("alias {} does not exist yet", config.weaviate.alias))?;
        vec![(live, configured)]
    } else {
        args.collections
            .iter()
            .map(|(c, dir)| {
                (
                    c.clone(),
                    ModelTarget {
                        model_dir: vecstream_workflows::activities::resolve_model(
                            &config.engine,
                            dir,
                        )
                        .unwrap_or_else(|_| dir.clone()),
                        ..configured.clone()
                    },
                )
            })
            .collect()
    };
    for (c, t) in &collections {
        let id = model_id_of(t)?;
        anyhow::ensure!(
            collection_name(&id, Tenancy::from_config(config.weaviate.multi_tenancy)) == *c,
            "{c} holds vectors of another model than {} ({id})",
            t.model_dir
        );
    }
    let input = EvaluateInput {
        collections,
        pairs: None,
        spec: EvalSpec {
            suite: absolute(&args.suite),
            k: args.k,
            tenant: args.tenant.clone(),
            min_recall: args.min_recall,
            modes: args
                .modes
                .iter()
                .map(|m| match m {
                    crate::cli::SearchModeArg::Vector => vecstream_weaviate::SearchMode::Vector,
                    crate::cli::SearchModeArg::Hybrid => vecstream_weaviate::SearchMode::Hybrid,
                    crate::cli::SearchModeArg::Keyword => vecstream_weaviate::SearchMode::Keyword,
                })
                .collect(),
        },
        gpu_queue: config.temporal.gpu_task_queue.clone(),
    };
    let client = client(config).await?;
    let id = start_evaluation(&client, config, input, Duration::from_secs(3600)).await?;
    eprintln!("evaluation {id} started; waiting for the report");
    let report = client
        .get_workflow_handle::<EvaluateWorkflow>(id.as_str())
        .get_result(WorkflowGetResultOptions::default())
        .await
        .with_context(|| format!("waiting for {id}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
