use vecstream_core::{Classify, ErrorClass};

/// Failures of the embedding engine.
///
/// `Clone`: one failed batch answers every request in it with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// A model file is malformed or inconsistent, or the model's configuration is refused.
    #[error("model directory {path}: {message}")]
    Model { path: String, message: String },
    /// A model file could not be read; `kind` says whether trying again can help.
    #[error("model directory {path}: {message}")]
    Io {
        path: String,
        kind: std::io::ErrorKind,
        message: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("backend {backend} is not available: {reason}")]
    BackendUnavailable { backend: String, reason: String },
    /// A call into a device failed (an allocation, a launch, a GEMM, a transfer);
    /// `transient` when the failure can pass (see [`EngineError::device`]).
    #[error("{backend} device: {reason}")]
    Device {
        backend: String,
        reason: String,
        transient: bool,
    },
    #[error("{0}")]
    Unsupported(String),
    /// The engine thread is gone: its channel is closed. Nothing restarts it in the
    /// process, so this is permanent: the component stops and its supervisor restarts it.
    #[error("the engine thread stopped")]
    Stopped,
}

/// Device failures that can pass: memory another process or batch held. Matched in the
/// error text, which names the CUDA driver or cuBLAS status. A failed or timed-out launch
/// is not among them: it leaves the CUDA context unusable, and nothing in the process
/// makes a new one, so retrying would fail forever; it is permanent (a restart recovers).
const TRANSIENT_DEVICE_ERRORS: &[&str] =
    &["CUDA_ERROR_OUT_OF_MEMORY", "CUBLAS_STATUS_ALLOC_FAILED"];

impl EngineError {
    /// A failed device call: `what` the engine was doing, `error` the device library's
    /// error. Transient when `error` names one of the statuses above.
    pub fn device(backend: &str, what: &str, error: impl std::fmt::Display) -> Self {
        let reason = format!("{what}: {error}");
        let transient = TRANSIENT_DEVICE_ERRORS.iter().any(|s| reason.contains(s));
        EngineError::Device {
            backend: backend.to_owned(),
            reason,
            transient,
        }
    }

    /// A model file `path` that could not be read.
    pub fn io(path: &std::path::Path, error: &std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

impl Classify for EngineError {
    fn class(&self) -> ErrorClass {
        let retryable = match self {
            EngineError::Device { transient, .. } => *transient,
            EngineError::Io { kind, .. } => vecstream_core::io_class(*kind).is_retryable(),
            EngineError::Stopped
            | EngineError::Model { .. }
            | EngineError::Tokenizer(_)
            | EngineError::BackendUnavailable { .. }
            | EngineError::Unsupported(_) => false,
        };
        if retryable {
            ErrorClass::Retryable
        } else {
            ErrorClass::Permanent
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};
    use std::path::Path;

    use super::*;

    #[test]
    fn transient_failures_are_retryable() {
        let oom = EngineError::device(
            "cuda",
            "allocating the workspace",
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
        );
        let gemm = EngineError::device("cuda", "cuBLAS gemm", "CUBLAS_STATUS_ALLOC_FAILED");
        let interrupted = EngineError::io(
            Path::new("m/model.safetensors"),
            &Error::from(ErrorKind::Interrupted),
        );
        let timed_out = EngineError::io(
            Path::new("m/config.json"),
            &Error::from(ErrorKind::TimedOut),
        );
        let disk_full = EngineError::io(
            Path::new("store/v2/adapter.safetensors"),
            &Error::from(ErrorKind::StorageFull),
        );
        for e in [oom, gemm, interrupted, timed_out, disk_full] {
            assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
        }
    }

    #[test]
    fn bad_models_configs_and_precisions_are_permanent() {
        let errors = [
            EngineError::Model {
                path: "m/config.json".into(),
                message: "expected value at line 1".into(),
            },
            EngineError::io(
                Path::new("m/config.json"),
                &Error::from(ErrorKind::NotFound),
            ),
            EngineError::io(Path::new("m"), &Error::from(ErrorKind::PermissionDenied)),
            EngineError::Tokenizer("no [SEP] or </s> token in the vocabulary".into()),
            EngineError::BackendUnavailable {
                backend: "cuda".into(),
                reason: "no CUDA driver (libcuda) on this machine".into(),
            },
            EngineError::device("cuda", "NVRTC compiling kernels/", "CompileError { .. }"),
            // A failed launch leaves the context unusable: only a restart recovers.
            EngineError::device(
                "cuda",
                "kernel layer_norm",
                "DriverError(CUDA_ERROR_LAUNCH_FAILED, \"unspecified launch failure\")",
            ),
            EngineError::Stopped,
            EngineError::Unsupported("precision bf16 is not supported on the CPU".into()),
        ];
        for e in errors {
            assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
        }
    }

    #[test]
    fn an_unreadable_file_reads_like_a_bad_one() {
        let e = EngineError::io(Path::new("m/config.json"), &Error::other("disk on fire"));
        assert_eq!(e.to_string(), "model directory m/config.json: disk on fire");
        assert_eq!(
            EngineError::device("cuda", "cuBLAS gemm", "x").to_string(),
            "cuda device: cuBLAS gemm: x"
        );
    }
}
