//! Writes one workflow run's history as the JSON the replay test reads
//! (`tests/histories/*.json`, the SDK's `WorkflowHistory::to_json`; the stock CLI's
//! `temporal workflow show -o json` is protobuf JSON, which the replayer does not read).
//!
//! ```sh
//! cargo run -p vecstream-workflows --example export_history -- WORKFLOW_ID [RUN_ID] > tests/histories/NAME.json
//! ```
//!
//! Connects like vecstream does (`VECSTREAM_TEMPORAL_ADDRESS`, default
//! `http://127.0.0.1:7233`; `VECSTREAM_TEMPORAL_NAMESPACE`, default `default`). Without a run
//! id, the latest run.

use std::io::Write;

use temporalio_client::{
    UntypedWorkflow, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowHandle,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workflow_id = args
        .next()
        .ok_or("usage: export_history WORKFLOW_ID [RUN_ID]")?;
    let run_id = args.next();
    let mut cfg = vecstream_config::TemporalConfig::default();
    if let Ok(a) = std::env::var("VECSTREAM_TEMPORAL_ADDRESS") {
        cfg.address = a;
    }
    if let Ok(n) = std::env::var("VECSTREAM_TEMPORAL_NAMESPACE") {
        cfg.namespace = n;
    }
    let client = vecstream_workflows::connect(&cfg).await?;
    let info = WorkflowExecutionInfo::builder()
        .namespace(cfg.namespace.clone())
        .workflow_id(workflow_id)
        .maybe_run_id(run_id)
        .build();
    let history = WorkflowHandle::<_, UntypedWorkflow>::new(client, info)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await?;
    // Pretty, so a diff of a re-recorded history is readable.
    let value: serde_json::Value = serde_json::from_slice(&history)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &value)?;
    writeln!(out)?;
    Ok(())
}
