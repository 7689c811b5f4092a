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
}
