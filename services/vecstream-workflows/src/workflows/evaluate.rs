//! [`EvaluateWorkflow`] (side-by-side retrieval quality) and [`LargeDocumentWorkflow`].

use std::time::Duration;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

use super::heavy;
use crate::activities::{EvalCollection, JobActivities};
use crate::finetune::{EvalPairs, FineTuneActivities};
use crate::types::{EvalReport, EvalRow, EvaluateInput, LargeDocumentInput, LargeDocumentResult};

/// Side-by-side retrieval quality of collections on a labelled suite.
#[workflow]
#[derive(Default)]
pub struct EvaluateWorkflow;

#[workflow_methods]
impl EvaluateWorkflow {
    #[run(name = "EvaluateWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: EvaluateInput,
    ) -> WorkflowResult<EvalReport> {
        let mut rows: Vec<EvalRow> = Vec::with_capacity(input.collections.len());
        // Modes side by side on each collection; none named: one vector row, as before.
        let modes: Vec<Option<vecstream_weaviate::SearchMode>> = if input.spec.modes.is_empty() {
            vec![None]
        } else {
            input.spec.modes.iter().copied().map(Some).collect()
        };
        for ((collection, target), mode) in input
            .collections
            .iter()
            .flat_map(|c| modes.iter().map(move |m| (c, *m)))
        {
            let options = heavy(&input.gpu_queue, Duration::from_secs(300));
            let row = match &input.pairs {
                Some(held_out) => {
                    ctx.execute_activity(
                        FineTuneActivities::evaluate_pairs,
                        EvalPairs {
                            label: collection.clone(),
                            target: target.clone(),
                            held_out: held_out.clone(),
                            k: input.spec.k,
                        },
                        options,
                    )
                    .await?
                }
                None => {
                    ctx.execute_activity(
                        JobActivities::evaluate_collection,
                        EvalCollection {
                            collection: collection.clone(),
                            target: target.clone(),
                            spec: input.spec.clone(),
                            mode,
                        },
                        options,
                    )
                    .await?
                }
            };
            rows.push(row);
        }
        let passed = match (input.spec.min_recall, rows.last()) {
            (Some(t), Some(candidate)) => candidate.recall_at_k >= t,
            _ => true,
        };
        Ok(EvalReport {
            suite: input.spec.suite.clone(),
            k: input.spec.k,
            rows,
            threshold: input.spec.min_recall,
            passed,
        })
    }
}

/// One document too large for the stream: embedded by a heartbeating activity on the gpu
/// queue, its vector record and lineage published as the stream would (id
/// `doc-<doc id>-<version>`).
#[workflow]
#[derive(Default)]
pub struct LargeDocumentWorkflow;

#[workflow_methods]
impl LargeDocumentWorkflow {
    #[run(name = "LargeDocumentWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: LargeDocumentInput,
    ) -> WorkflowResult<LargeDocumentResult> {
        let queue = input.gpu_queue.clone();
        // Cancelled (a delete superseded the document): the workflow closes only once the
        // activity has stopped, so "closed" means "publishes nothing more".
        let mut options = heavy(&queue, Duration::from_secs(60));
        options.cancellation_type =
            temporalio_sdk::ActivityCancellationType::WaitCancellationCompleted;
        Ok(ctx
            .execute_activity(JobActivities::embed_large, input, options)
            .await?)
    }
}
