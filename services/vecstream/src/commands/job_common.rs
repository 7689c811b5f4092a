//! What the Temporal job commands (`reindex`, `finetune`, `eval`, `review`) share: the
//! connection, the model of the command line, review printing and the watch loop.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use temporalio_client::{Client, WorkflowExecutionStatus};
use vecstream_config::Config;
use vecstream_workflows::{ModelTarget, ReviewDecision};

use crate::cli::ModelArgs;

/// A client of the configured Temporal namespace.
pub(crate) async fn client(config: &Config) -> anyhow::Result<Client> {
    Ok(vecstream_workflows::connect(&config.temporal).await?)
}

/// The model of `m`: its directory resolved through the model store (a version name or
/// model id of `engine.model_store` becomes that version's directory).
pub(crate) fn target_of(config: &Config, m: &ModelArgs) -> anyhow::Result<ModelTarget> {
    // Refused here, before a job creates anything: no backend runs bf16.
    anyhow::ensure!(
        m.precision != vecstream_workflows::Precision::Bf16,
        "--precision bf16 has no kernel in this build; use fp32, int8 (CPU) or fp16 (CUDA)"
    );
    Ok(ModelTarget {
        model_dir: vecstream_workflows::activities::resolve_model(&config.engine, &m.model_dir)?,
        // 0 kept the model's limit before the flag was optional; it still does.
        max_seq_length: m.max_seq_length.filter(|&n| n > 0),
        precision: m.precision,
    })
}

/// The model id of a target, read from its files here.
pub(crate) fn model_id_of(target: &ModelTarget) -> anyhow::Result<String> {
    let (spec, _) = vecstream_engine::model::ModelSpec::load(
        std::path::Path::new(&target.model_dir),
        target.max_seq_length,
    )
    .with_context(|| format!("reading the model in {}", target.model_dir))?;
    Ok(spec.model_id)
}

/// The worker reads suites and pairs files: make a relative path absolute on this machine.
pub(crate) fn absolute(path: &str) -> String {
    std::path::Path::new(path)
        .canonicalize()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_owned())
}

/// `approved by ana, key SHA256:... (looks good)`.
pub(crate) fn decision_line(r: &ReviewDecision) -> String {
    let key = if r.key_fingerprint.is_empty() {
        String::new()
    } else {
        format!(", key {}", r.key_fingerprint)
    };
    format!(
        "{} by {}{key} ({})",
        if r.approve { "approved" } else { "rejected" },
        vecstream_core::printable(&r.reviewer),
        vecstream_core::printable(&r.comment)
    )
}

/// Prints a job's review state: its decision, if any, the open review's id, and the
/// reviews it refused.
pub(crate) fn print_review(gate: &vecstream_workflows::ReviewGate) {
    if let Some(r) = &gate.review {
        println!("review: {}", decision_line(r));
    } else if gate.awaiting_review {
        println!(
            "review id: {} (what a signed decision names)",
            gate.review_id
        );
    }
    if let Some(last) = gate.refused_reviews.last() {
        println!(
            "refused reviews: {} (latest: {}: {})",
            gate.refused_reviews.len(),
            last.code,
            vecstream_core::printable(&last.reason)
        );
    }
}

/// One look at a job while watching it.
pub(crate) struct Look<T> {
    /// `(done, total)` for the bar, when known.
    pub position: Option<(u64, u64)>,
    /// The status line.
    pub message: String,
    /// Stop watching (it awaits review, or it ended).
    pub done: bool,
    /// What the look saw (returned with the last look).
    pub value: T,
}

/// How workflow `id` ended, or `None` while it runs. A `--watch` looks at it besides the
/// job's own progress: a workflow that failed (an activity out of retries) keeps answering
/// its progress query with the phase it failed in, and would be watched forever.
pub(crate) async fn ended(
    client: &Client,
    id: &str,
) -> anyhow::Result<Option<WorkflowExecutionStatus>> {
    let e = vecstream_workflows::review::describe_execution(client, id).await?;
    Ok((!e.is_running()).then_some(e.status))
}

/// The exit of a `--watch` that stopped watching: success while the workflow still runs
/// (it reached what was watched for: review, or the end of its work) or when it completed;
/// otherwise says how the workflow ended (with its failure) and fails.
pub(crate) async fn watch_exit(
    client: &Client,
    id: &str,
    ended: Option<WorkflowExecutionStatus>,
) -> std::process::ExitCode {
    match ended {
        None | Some(WorkflowExecutionStatus::Completed) => std::process::ExitCode::SUCCESS,
        Some(status) => {
            let why = vecstream_workflows::review::failure_of(client, id)
                .await
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            eprintln!("{id} ended {}{why}", status_word(status));
            std::process::ExitCode::FAILURE
        }
    }
}

fn status_word(status: WorkflowExecutionStatus) -> &'static str {
    match status {
        WorkflowExecutionStatus::Completed => "completed",
        WorkflowExecutionStatus::Failed => "failed",
        WorkflowExecutionStatus::Canceled => "cancelled",
        WorkflowExecutionStatus::Terminated => "terminated",
        WorkflowExecutionStatus::TimedOut => "timed out",
        WorkflowExecutionStatus::ContinuedAsNew => "continued as new",
        _ => "in an unknown state",
    }
}

/// Watches a job with a progress bar (`unit` names the bar's count) until a look says it is
/// done; returns what the last look saw.
pub(crate) async fn watch<T, F, Fut>(unit: &str, mut look: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Look<T>>>,
{
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    loop {
        let l = look().await?;
        if let Some((done, total)) = l.position {
            bar.set_length(total);
            bar.set_position(done);
        }
        bar.set_message(l.message);
        if l.done {
            bar.finish();
            return Ok(l.value);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
