//! `vecstream review approve|reject|sign|keygen`: the signed human decision on a reindex or
//! fine-tuning job.
//!
//! The job's kind comes from Temporal (the execution's workflow type). The decision is
//! signed with the reviewer's key for the job's open review and sent as the job's `review`
//! update, whose answer says definitively whether the job took it: accepted (exit 0), or
//! refused with the reason (not awaiting review, unknown key, four-eyes, ...).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use vecstream_config::Config;
use vecstream_workflows::ReviewDecision;
use vecstream_workflows::review::{
    ReviewedJob, describe_execution, final_review, review_state, submit_review,
};
use vecstream_workflows::signing::{ReviewerKey, Statement};

use crate::cli::{ReviewArgs, ReviewCommand, ReviewKeygenArgs, ReviewSignArgs};
use crate::commands::job_common::{client, decision_line};

pub async fn run(config: &Config, cmd: &ReviewCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ReviewCommand::Approve(a) => decide(config, a, true).await,
        ReviewCommand::Reject(a) => decide(config, a, false).await,
        ReviewCommand::Sign(a) => sign(config, a).await,
        ReviewCommand::Keygen(a) => keygen(a),
    }
}

/// The reviewer's key: `--key`, else `review.key`.
pub(crate) fn load_key(config: &Config, flag: Option<&String>) -> anyhow::Result<ReviewerKey> {
    let path = flag.unwrap_or(&config.review.key);
    anyhow::ensure!(
        !path.is_empty(),
        "no reviewer key: pass --key FILE or set review.key (VECSTREAM_REVIEW_KEY); create \
         one with `vecstream review keygen --name NAME --out FILE`"
    );
    Ok(ReviewerKey::load(Path::new(path))?)
}

/// The job kind of a running workflow `id`, or why it takes no review now.
async fn reviewed_job(
    client: &temporalio_client::Client,
    id: &str,
) -> anyhow::Result<(ReviewedJob, bool)> {
    let execution = describe_execution(client, id).await?;
    let Some(job) = ReviewedJob::of_workflow_type(&execution.workflow_type) else {
        anyhow::bail!(
            "{id} is a {}, which takes no review (only reindex and fine-tuning jobs do)",
            execution.workflow_type
        );
    };
    Ok((job, execution.is_running()))
}

/// Whether `review` is this key's `approve` decision.
fn is_mine(review: &ReviewDecision, key: &ReviewerKey, approve: bool) -> bool {
    review.approve == approve && review.key_fingerprint == key.fingerprint()
}

async fn decide(config: &Config, args: &ReviewArgs, approve: bool) -> anyhow::Result<ExitCode> {
    let key = load_key(config, args.key.as_ref())?;
    if let Some(name) = &args.reviewer {
        anyhow::ensure!(
            name == key.name(),
            "--reviewer {name}, but the key is {}'s ({})",
            key.name(),
            key.fingerprint()
        );
    }
    let id = args.workflow_id.as_str();
    let client = client(config).await?;
    let (job, running) = reviewed_job(&client, id).await?;
    if !running {
        // Run again after an answer was lost: the job's final decision tells.
        if let Ok(Some(review)) = final_review(&client, job, id).await
            && is_mine(&review, &key, approve)
        {
            println!("{id} accepted the review: {}", decision_line(&review));
            return Ok(ExitCode::SUCCESS);
        }
        anyhow::bail!("{id} is not running: there is nothing to review");
    }
    let state = review_state(&client, job, id).await?;
    if let Some(review) = &state.review
        && is_mine(review, &key, approve)
    {
        println!(
            "{id} accepted the review: {} (phase {})",
            decision_line(review),
            state.phase
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        state.awaiting_review && state.review.is_none(),
        "{id} is not awaiting review (phase {}{}); try again once `vecstream {} status {id}` \
         says so",
        state.phase,
        state
            .review
            .as_ref()
            .map(|r| format!(", already {}", decision_line(r)))
            .unwrap_or_default(),
        job.command()
    );
    let signed = key.sign(&Statement::review(
        id,
        &state.review_id,
        approve,
        &args.comment,
    ));
    eprintln!(
        "sending: {} {id}, signed by {} ({})",
        if approve { "approve" } else { "reject" },
        key.name(),
        key.fingerprint()
    );
    let wait = Duration::from_secs(args.wait_secs.max(1));
    let answer = tokio::time::timeout(wait, submit_review(&client, job, id, &signed)).await;
    Ok(match answer {
        Err(_) => {
            eprintln!(
                "{id} did not answer within {} s: is a worker on its task queue running? The \
                 review may still be taken when one runs: see `vecstream {} status {id}` \
                 before sending it again",
                wait.as_secs(),
                job.command()
            );
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            // The validator's answer (no review open) or the update failing (the run
            // closed meanwhile, Temporal unreachable): not a verdict on the signature.
            eprintln!("{id} did not take the review: {e}");
            ExitCode::FAILURE
        }
        Ok(Ok(o)) if o.accepted => {
            let review = o.review.as_ref().map(decision_line).unwrap_or_default();
            println!("{id} accepted the review: {review} (phase {})", o.phase);
            ExitCode::SUCCESS
        }
        Ok(Ok(o)) => {
            eprintln!(
                "{id} refused the review ({}): {} (phase {})",
                o.code, o.reason, o.phase
            );
            ExitCode::FAILURE
        }
    })
}

async fn sign(config: &Config, args: &ReviewSignArgs) -> anyhow::Result<ExitCode> {
    let key = load_key(config, args.key.as_ref())?;
    let id = args.workflow_id.as_str();
    let review_id = match &args.review_id {
        Some(r) => r.clone(),
        None => {
            let client = client(config).await?;
            let (job, _) = reviewed_job(&client, id).await?;
            let state = review_state(&client, job, id).await?;
            anyhow::ensure!(
                state.awaiting_review,
                "{id} is not awaiting review (phase {})",
                state.phase
            );
            state.review_id
        }
    };
    let signed = key.sign(&Statement::review(
        id,
        &review_id,
        args.decision == "approve",
        &args.comment,
    ));
    println!("{}", serde_json::to_string(&signed)?);
    Ok(ExitCode::SUCCESS)
}

fn keygen(args: &ReviewKeygenArgs) -> anyhow::Result<ExitCode> {
    let key = ReviewerKey::generate(&args.name)?;
    key.write(&args.out)
        .with_context(|| format!("writing the secret key of {}", args.name))?;
    println!("{}", key.public_line());
    eprintln!(
        "secret key of {} written to {} (mode 0600; keep it private). Its fingerprint is {}; \
         add the line above to the workers' review.authorized_keys file",
        key.name(),
        args.out.display(),
        key.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}
