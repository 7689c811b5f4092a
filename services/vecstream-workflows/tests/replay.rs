//! Replays recorded workflow histories (`tests/histories/*.json`, exported from real runs with
//! `cargo run -p vecstream-workflows --example export_history -- ID [RUN_ID]`) against the
//! current workflow code. A change to
//! what a workflow commands (activities, timers, child workflows, their order) that is not
//! behind `ctx.patched(..)` makes the replay nondeterministic, and this test fails: runs in
//! flight when such a worker is deployed would fail the same way. See the crate README
//! ("Changing a workflow").

use std::path::{Path, PathBuf};

use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use vecstream_workflows::{
    EvaluateWorkflow, FineTuneWorkflow, HealthCheckWorkflow, LargeDocumentWorkflow, ReindexWorkflow,
};

/// Every workflow type has at least one recorded history.
const RECORDED: [&str; 4] = [
    "ReindexWorkflow",
    "EvaluateWorkflow",
    "FineTuneWorkflow",
    "LargeDocumentWorkflow",
];

fn replayer() -> WorkflowReplayer {
    let options = WorkflowReplayerOptions::new()
        .register_workflow::<ReindexWorkflow>()
        .and_then(|o| o.register_workflow::<EvaluateWorkflow>())
        .and_then(|o| o.register_workflow::<FineTuneWorkflow>())
        .and_then(|o| o.register_workflow::<LargeDocumentWorkflow>())
        .and_then(|o| o.register_workflow::<HealthCheckWorkflow>())
        .expect("workflows register")
        .build();
    WorkflowReplayer::new(options).expect("a replayer")
}

fn histories() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The workflow type of a recorded history (its first event).
fn workflow_type(json: &serde_json::Value) -> String {
    json["events"][0]["attributes"]["WorkflowExecutionStartedEventAttributes"]["workflow_type"]
        ["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn recorded_histories_replay_on_the_current_code() {
    let files = histories();
    let mut types = Vec::new();
    let mut loaded = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", f.display()));
        types.push(workflow_type(&json));
        let history = WorkflowHistory::from_json(&bytes)
            .unwrap_or_else(|e| panic!("{}: not a history: {e}", f.display()));
        loaded.push(history);
    }
    for t in RECORDED {
        assert!(
            types.iter().any(|x| x == t),
            "no recorded history of {t} in tests/histories"
        );
    }
    let results = replayer()
        .replay_workflows(loaded)
        .await
        .expect("the replay worker runs");
    assert_eq!(results.len(), files.len());
    let failures: Vec<String> = files
        .iter()
        .zip(&types)
        .zip(&results)
        .filter_map(|((f, t), r)| {
            r.replay_failure
                .as_ref()
                .map(|e| format!("{} ({t}): {e}", f.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "histories that no longer replay (a workflow change needs ctx.patched):\n{}",
        failures.join("\n")
    );
    eprintln!("replayed {} histories: {types:?}", files.len());
}
