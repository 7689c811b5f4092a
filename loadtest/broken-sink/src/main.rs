//! `vecstream` with a sink that commits a batch's offsets *before* writing it to Weaviate.
//!
//! Wrong on purpose: a crash between the commit and the upsert loses the batch. It exists
//! only so that `loadtest/pipeline/run.sh --chaos --broken-sink` can show that the chaos
//! check's verdict turns FAIL when delivery is broken. Never deploy it.

use std::sync::{Arc, Once};

use futures::future::BoxFuture;
use rdkafka::message::OwnedMessage;
use tokio::sync::watch;
use vecstream_pipeline::{CommitStrategy, PipelineError, Sink};

/// Offsets first, then the effects.
#[derive(Debug)]
struct OffsetsThenEffects;

static WARNED: Once = Once::new();

impl CommitStrategy for OffsetsThenEffects {
    fn process<'a>(
        &'a self,
        sink: &'a Sink,
        batch: &'a [OwnedMessage],
        shutdown: &'a watch::Receiver<bool>,
    ) -> BoxFuture<'a, Result<(), PipelineError>> {
        WARNED.call_once(|| {
            tracing::warn!(
                "this sink is deliberately broken (vecstream-broken-sink): it commits offsets \
                 before upserting and loses data on a crash; it exists to show that the load \
                 test's chaos check fails"
            )
        });
        Box::pin(async move {
            sink.commit_offsets(batch, shutdown).await?;
            sink.apply(batch, shutdown).await
        })
    }
}

fn main() -> std::process::ExitCode {
    vecstream::main_with(vecstream::Hooks {
        sink_commit: Arc::new(OffsetsThenEffects),
    })
}
