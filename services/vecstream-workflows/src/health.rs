//! The smallest real workflow: proves that the server, a worker and the task queue work
//! end to end (used by the integration tests and `vecstream status --workflow`).

use std::time::Duration;

use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use crate::TemporalError;

/// Workflow ids of health checks start with this; the rest is unique per run.
pub const HEALTH_CHECK_WORKFLOW_ID_PREFIX: &str = "vecstream-health-";

/// Echoes its input through one activity.
#[workflow]
#[derive(Default)]
pub struct HealthCheckWorkflow;

#[workflow_methods]
impl HealthCheckWorkflow {
    /// Runs `HealthActivities::echo` once and returns its answer.
    #[run(name = "HealthCheckWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>, probe: String) -> WorkflowResult<String> {
        let answer = ctx
            .execute_activity(
                HealthActivities::echo,
                probe,
                ActivityOptions::start_to_close_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(answer)
    }
}

/// Activities of the health check.
#[derive(Debug, Default)]
pub struct HealthActivities;

#[activities]
impl HealthActivities {
    /// Answers `pong: <probe>`.
    #[activity(name = "health.echo")]
    pub async fn echo(_ctx: ActivityContext, probe: String) -> Result<String, ActivityError> {
        Ok(format!("pong: {probe}"))
    }
}

/// Starts a health-check workflow on `task_queue` and waits for its answer.
pub async fn run_health_check(
    client: &Client,
    task_queue: &str,
    probe: &str,
    timeout: Duration,
) -> Result<String, TemporalError> {
    let workflow_id = format!("{HEALTH_CHECK_WORKFLOW_ID_PREFIX}{}", uuid_like());
    let wf_err = |message: String| TemporalError::Workflow {
        workflow_id: workflow_id.clone(),
        message,
    };
    let options = WorkflowStartOptions::new(task_queue, workflow_id.clone())
        .execution_timeout(timeout)
        .build();
    let handle = client
        .start_workflow(HealthCheckWorkflow::run, probe.to_owned(), options)
        .await
        .map_err(|e| wf_err(e.to_string()))?;
    handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map_err(|e| wf_err(e.to_string()))
}

/// Unique enough for a health-check id without another dependency: time + pid.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:x}-{:x}", std::process::id())
}
