//! The reader's one error type: every failure in one line, naming the problem.

/// Everything that can go wrong reading an R file; messages name the problem in one line.
#[derive(Debug, thiserror::Error)]
pub enum RDataError {
    #[error("not an R data file: {0}")]
    NotRData(String),
    #[error("cannot decompress the {format} stream: {reason}")]
    Decompress {
        format: &'static str,
        reason: String,
    },
    #[error("R serialization: {0}")]
    Malformed(String),
    #[error("R serialization: unsupported {0}")]
    Unsupported(String),
}
