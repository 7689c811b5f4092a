/// Whether an error can go away by itself.
///
/// Decides what the pipeline does with a failed record: `Retryable` pauses and backs off
/// (the broker, registry or vector store is down), `Permanent` sends the record to the DLQ
/// or fails the command with a clear message (the input is wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A transient failure: retry with backoff; never drop the record.
    Retryable,
    /// Bad input or configuration: retrying gives the same answer.
    Permanent,
}

impl ErrorClass {
    /// Short lower-case name, used in logs, metrics labels and DLQ headers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        }
    }

    /// True for [`ErrorClass::Retryable`].
    pub fn is_retryable(self) -> bool {
        self == ErrorClass::Retryable
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an I/O error, by its kind (the one rule for every crate): a file that is
/// missing, unreadable by permission, malformed or of the wrong type stays so; anything
/// else (interrupted, timed out, a full or busy device, a network volume's hiccup) can pass.
pub fn io_class(kind: std::io::ErrorKind) -> ErrorClass {
    use std::io::ErrorKind as K;
    match kind {
        K::NotFound
        | K::InvalidData
        | K::InvalidInput
        | K::PermissionDenied
        | K::AlreadyExists
        | K::IsADirectory
        | K::NotADirectory
        | K::Unsupported
        | K::ReadOnlyFilesystem => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

/// Implemented by every library error enum of vecstream.
pub trait Classify {
    /// Whether retrying the failed operation can succeed.
    fn class(&self) -> ErrorClass;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_labels() {
        assert_eq!(ErrorClass::Retryable.to_string(), "retryable");
        assert_eq!(ErrorClass::Permanent.as_str(), "permanent");
        assert!(ErrorClass::Retryable.is_retryable());
        assert!(!ErrorClass::Permanent.is_retryable());
    }

    #[test]
    fn io_errors_are_classed_by_kind() {
        use std::io::ErrorKind as K;
        for k in [K::NotFound, K::PermissionDenied, K::InvalidData] {
            assert_eq!(io_class(k), ErrorClass::Permanent, "{k:?}");
        }
        for k in [K::Interrupted, K::TimedOut, K::StorageFull, K::Other] {
            assert_eq!(io_class(k), ErrorClass::Retryable, "{k:?}");
        }
    }
}

/// `error` and each of its sources, joined by `: ` (an HTTP client's "error sending
/// request" says why only in its sources: an untrusted certificate, a refused connection).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod chain_tests {
    #[test]
    fn an_error_chain_names_every_cause_once() {
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, inner);
        assert_eq!(
            super::error_chain(&outer),
            "invalid peer certificate: UnknownIssuer"
        );
        #[derive(Debug)]
        struct Send(std::io::Error);
        impl std::fmt::Display for Send {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Send {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Send(std::io::Error::other("UnknownIssuer"));
        assert_eq!(
            super::error_chain(&e),
            "error sending request: UnknownIssuer"
        );
    }
}
