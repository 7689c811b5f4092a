//! The one error mapping at the Temporal edge.
//!
//! Every activity error goes through [`activity_error`] (or [`ActivityResultExt::activity_err`]):
//! an error's [`Classify`] class decides whether Temporal retries it
//! ([`ErrorClass::Retryable`]: an ordinary, retryable application failure) or fails the
//! activity for good ([`ErrorClass::Permanent`]: a non-retryable application failure).
//! Errors of other crates that do not implement [`Classify`] are wrapped in [`JobError`],
//! which classifies them by their type (an I/O error by its kind), never by their text.
//!
//! Also here: [`is_already_started`], the typed test for Temporal's "workflow already
//! started" answer to a start.

use temporalio_client::errors::WorkflowStartError;
use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;
use vecstream_core::{Classify, ErrorClass};
use vecstream_engine::EngineError;
use vecstream_kafka::KafkaEdgeError;
use vecstream_pipeline::PipelineError;
use vecstream_weaviate::WeaviateError;

/// Failures of the workflows crate's own work, and of libraries without a [`Classify`].
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Bad input (a pairs file, a suite, a model setting, a request that makes no sense):
    /// retrying gives the same answer.
    #[error("{0}")]
    Invalid(String),
    /// A file or directory of the worker.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The embedding engine (loading a model, embedding, the model store).
    #[error("{context}: {source}")]
    Engine {
        context: String,
        #[source]
        source: EngineError,
    },
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The embedding providers (remote ones down, throttling, a misconfigured chain).
    #[error(transparent)]
    Provider(#[from] vecstream_providers::ProviderError),
    #[error(transparent)]
    Kafka(#[from] KafkaEdgeError),
    #[error(transparent)]
    Weaviate(#[from] WeaviateError),
    /// A blocking task of the activity panicked or was cancelled with its runtime.
    #[error("a blocking task stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl JobError {
    /// Bad input: never retried.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// An I/O error on `context` (a path, what was being done).
    pub fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            context: context.to_string(),
            source,
        }
    }

    /// An engine error while doing `context`.
    pub fn engine(context: impl std::fmt::Display, source: EngineError) -> Self {
        Self::Engine {
            context: context.to_string(),
            source,
        }
    }
}

impl From<EngineError> for JobError {
    fn from(source: EngineError) -> Self {
        Self::Engine {
            context: "embedding engine".into(),
            source,
        }
    }
}

/// The class of an I/O error by its kind: missing, malformed or forbidden files stay so;
/// anything else (a full disk being cleaned, an interrupted call, a flaky network volume)
/// may pass.
pub fn io_class(e: &std::io::Error) -> ErrorClass {
    vecstream_core::io_class(e.kind())
}

/// Weaviate's class at this edge. Activities retry a bounded number of times, so answers
/// that can be a schema change still propagating (a collection just created or dropped,
/// an alias just moved: 404, 422, a GraphQL error naming the collection) or a cut-short
/// answer are retried here; the stream, which retries without bound, treats them as
/// permanent ([`WeaviateError`]'s own class).
fn weaviate_class(e: &WeaviateError) -> ErrorClass {
    match e {
        WeaviateError::Status {
            status: 404 | 422, ..
        }
        | WeaviateError::GraphQl { .. }
        | WeaviateError::Unexpected { .. } => ErrorClass::Retryable,
        _ => e.class(),
    }
}

impl Classify for JobError {
    fn class(&self) -> ErrorClass {
        match self {
            JobError::Invalid(_) => ErrorClass::Permanent,
            JobError::Io { source, .. } => io_class(source),
            JobError::Engine { source, .. } => source.class(),
            JobError::Pipeline(PipelineError::Weaviate(e)) | JobError::Weaviate(e) => {
                weaviate_class(e)
            }
            JobError::Pipeline(e) => e.class(),
            JobError::Kafka(e) => e.class(),
            JobError::Provider(e) => e.class(),
            JobError::Join(_) => ErrorClass::Retryable,
        }
    }
}

/// The activity error of a classified error: retryable or non-retryable by its class.
pub fn activity_error<E>(e: E) -> ActivityError
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    let failure = match e.class() {
        ErrorClass::Retryable => ApplicationFailure::new(e),
        ErrorClass::Permanent => ApplicationFailure::non_retryable(e),
    };
    ActivityError::application(failure)
}

/// `.activity_err()` on results of classified errors: [`activity_error`] for the error.
pub trait ActivityResultExt<T> {
    fn activity_err(self) -> Result<T, ActivityError>;
}

impl<T, E> ActivityResultExt<T> for Result<T, E>
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    fn activity_err(self) -> Result<T, ActivityError> {
        self.map_err(activity_error)
    }
}

/// Whether a start was refused because a workflow with that id exists already (running, or
/// closed under a reuse policy that forbids another run): the server's `AlreadyExists`
/// status, which the client turns into [`WorkflowStartError::AlreadyStarted`] (with the
/// `WorkflowExecutionAlreadyStartedFailure` detail's run id).
pub fn is_already_started(e: &WorkflowStartError) -> bool {
    match e {
        WorkflowStartError::AlreadyStarted { .. } => true,
        WorkflowStartError::Rpc(status) => {
            status.code() == temporalio_client::tonic::Code::AlreadyExists
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};
    use temporalio_client::tonic::{Code, Status};

    fn non_retryable(e: &ActivityError) -> bool {
        match e {
            ActivityError::Application(f) => f.is_non_retryable(),
            other => panic!("not an application failure: {other:?}"),
        }
    }

    #[test]
    fn the_class_decides_retryable_or_not() {
        let bad = activity_error(JobError::invalid("line 3: no query"));
        assert!(non_retryable(&bad));
        let io = |kind| activity_error(JobError::io("/x", Error::from(kind)));
        assert!(non_retryable(&io(ErrorKind::NotFound)));
        assert!(non_retryable(&io(ErrorKind::InvalidData)));
        assert!(non_retryable(&io(ErrorKind::PermissionDenied)));
        assert!(!non_retryable(&io(ErrorKind::Interrupted)));
        assert!(!non_retryable(&io(ErrorKind::TimedOut)));
        assert!(!non_retryable(&io(ErrorKind::Other)));
        let weaviate_down = WeaviateError::Unreachable {
            url: "http://w".into(),
            message: "refused".into(),
        };
        assert!(!non_retryable(&activity_error(JobError::from(
            weaviate_down
        ))));
        let weaviate_400 = WeaviateError::Status {
            status: 400,
            what: "x".into(),
            body: "bad".into(),
        };
        let r: Result<(), _> = Err(weaviate_400);
        assert!(non_retryable(&r.activity_err().unwrap_err()));
        let model = EngineError::Model {
            path: "/m".into(),
            message: "no config.json".into(),
        };
        assert!(non_retryable(&activity_error(JobError::engine(
            "loading /m",
            model
        ))));
        assert!(non_retryable(&activity_error(JobError::from(
            EngineError::Stopped
        ))));
        let oom = EngineError::device("cuda", "workspace", "CUDA_ERROR_OUT_OF_MEMORY");
        assert!(!non_retryable(&activity_error(JobError::from(oom))));
        // A collection just created may not be queryable yet: retried (a bounded number of
        // times) at this edge, while the stream would treat it as permanent.
        let not_yet = WeaviateError::GraphQl {
            what: "count".into(),
            message: "Cannot query field \"Chunk_x\" on type \"GetObjectsObj\"".into(),
        };
        assert!(!non_retryable(&activity_error(JobError::from(not_yet))));
    }

    #[test]
    fn the_message_names_the_cause() {
        let e = JobError::io("pairs /p.jsonl", Error::from(ErrorKind::NotFound));
        assert!(e.to_string().starts_with("pairs /p.jsonl: "), "{e}");
    }

    #[test]
    fn already_started_is_matched_by_type_not_text() {
        let typed = WorkflowStartError::AlreadyStarted {
            run_id: Some("r1".into()),
            source: Status::new(Code::AlreadyExists, "anything"),
        };
        assert!(is_already_started(&typed));
        // A bare AlreadyExists status (no decoded detail) is the same answer.
        let bare = WorkflowStartError::Rpc(Status::new(Code::AlreadyExists, ""));
        assert!(is_already_started(&bare));
        // Text that merely mentions "already" or "exists" is not.
        let other = WorkflowStartError::Rpc(Status::new(
            Code::InvalidArgument,
            "namespace already exists; task queue exists",
        ));
        assert!(!is_already_started(&other));
        let unavailable = WorkflowStartError::Rpc(Status::new(Code::Unavailable, "already"));
        assert!(!is_already_started(&unavailable));
    }
}
