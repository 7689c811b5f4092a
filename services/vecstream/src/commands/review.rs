//! `vecstream review approve|reject`: the human decision on a reindex or fine-tuning job.
//!
//! The job's kind comes from Temporal (the execution's workflow type), and the `review`
//! signal goes through that workflow's own typed handle. Then the command watches the job's
//! `progress` until it shows the decision (accepted), another decision (someone was first),
//! no pending review (ignored), or the wait runs out; only an accepted decision exits 0.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use vecstream_config::Config;
use vecstream_workflows::ReviewDecision;
use vecstream_workflows::review::{
    ReviewState, ReviewedJob, Verdict, describe_execution, final_review, review_state, send_review,
    verdict_of,
};

use crate::cli::{ReviewArgs, ReviewCommand};
use crate::commands::job_common::{client, decision_line};

pub async fn run(config: &Config, cmd: &ReviewCommand) -> anyhow::Result<ExitCode> {
    let (args, approve): (&ReviewArgs, bool) = match cmd {
        ReviewCommand::Approve(a) => (a, true),
        ReviewCommand::Reject(a) => (a, false),
    };
    let id = args.workflow_id.as_str();
    let client = client(config).await?;
    let execution = describe_execution(&client, id).await?;
    let Some(job) = ReviewedJob::of_workflow_type(&execution.workflow_type) else {
        anyhow::bail!(
            "{id} is a {}, which takes no review (only reindex and fine-tuning jobs do)",
            execution.workflow_type
        );
    };
    let decision = ReviewDecision {
        approve,
        reviewer: args.reviewer.clone(),
        comment: args.comment.clone(),
    };
    // Run again after a "not taken yet": if the job has taken this very decision since,
    // that is a success, not an error.
    if !execution.is_running() {
        if let Ok(Some(review)) = final_review(&client, job, id).await
            && review == decision
        {
            let state = ReviewState {
                phase: "closed",
                awaiting_review: false,
                review: Some(review),
                finished: true,
            };
            return Ok(report(id, &decision, Ok(Verdict::Accepted(state))));
        }
        anyhow::bail!(
            "{id} is not running (status {:?}): there is nothing to review",
            execution.status
        );
    }
    let before = review_state(&client, job, id).await?;
    if let Some(Verdict::Accepted(state)) = verdict_of(&before, &decision) {
        return Ok(report(id, &decision, Ok(Verdict::Accepted(state))));
    }
    anyhow::ensure!(
        before.awaiting_review && before.review.is_none(),
        "{id} is not awaiting review (phase {}{}); try again once `vecstream {} status {id}` \
         says so",
        before.phase,
        before
            .review
            .as_ref()
            .map(|r| format!(", already {}", decision_line(r)))
            .unwrap_or_default(),
        job.command()
    );
    send_review(&client, job, id, decision.clone()).await?;
    eprintln!(
        "sent: {} {id}; waiting for the job to take it",
        decision_line(&decision)
    );
    let verdict = wait_for_verdict(&client, job, id, &decision, args.wait_secs).await;
    Ok(report(id, &decision, verdict))
}

/// Polls the job's review state until it shows a verdict on `decision`, the workflow
/// closes, or `wait_secs` pass.
async fn wait_for_verdict(
    client: &temporalio_client::Client,
    job: ReviewedJob,
    id: &str,
    decision: &ReviewDecision,
    wait_secs: u64,
) -> anyhow::Result<Verdict> {
    let now = Instant::now();
    let deadline = now
        .checked_add(Duration::from_secs(wait_secs))
        .unwrap_or(now + Duration::from_secs(86_400 * 365));
    loop {
        let state: ReviewState = match review_state(client, job, id).await {
            Ok(s) => s,
            Err(e) => {
                let execution = describe_execution(client, id).await?;
                if execution.is_running() {
                    // No answer from a running job (a worker restarting): ask again until
                    // the wait runs out.
                    if Instant::now() >= deadline {
                        return Err(e.into());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                // A closed run may have no worker to answer queries: its result tells; a
                // run that failed or was terminated has none, and its status is all we know.
                let review = final_review(client, job, id).await.map_err(|e| {
                    anyhow::anyhow!(
                        "{id} closed with status {:?} before it said whether it took the \
                         review ({e})",
                        execution.status
                    )
                })?;
                let state = ReviewState {
                    phase: "closed",
                    awaiting_review: false,
                    review,
                    finished: true,
                };
                return Ok(verdict_of(&state, decision).unwrap_or(Verdict::Ignored(state)));
            }
        };
        if let Some(v) = verdict_of(&state, decision) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Ok(Verdict::Pending(state));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn report(id: &str, decision: &ReviewDecision, verdict: anyhow::Result<Verdict>) -> ExitCode {
    match verdict {
        Ok(Verdict::Accepted(s)) => {
            println!(
                "{id} accepted the review: {} (phase {})",
                decision_line(decision),
                s.phase
            );
            ExitCode::SUCCESS
        }
        Ok(Verdict::Superseded(s)) => {
            eprintln!(
                "{id} did not take this review: it was {} first (phase {})",
                s.review.as_ref().map(decision_line).unwrap_or_default(),
                s.phase
            );
            ExitCode::FAILURE
        }
        Ok(Verdict::Ignored(s)) => {
            eprintln!(
                "{id} ignored the review: it is not awaiting one (phase {})",
                s.phase
            );
            ExitCode::FAILURE
        }
        Ok(Verdict::Pending(s)) => {
            eprintln!(
                "{id} has not taken the review yet (phase {}, still awaiting review): is a \
                 worker on its task queue running? The signal is recorded and will be taken \
                 when one runs, unless the review times out first",
                s.phase
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{id}: cannot tell whether the review was taken: {e:#}");
            ExitCode::FAILURE
        }
    }
}
