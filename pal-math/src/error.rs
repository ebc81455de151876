//! The library's error type: every failure names what went wrong and where.

use std::path::PathBuf;

/// Errors from configuration, data loading, training and model files.
#[derive(Debug, thiserror::Error)]
pub enum PalError {
    #[error("invalid config field `{field}`: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: field `{field}`: {reason}")]
    Record {
        path: PathBuf,
        line: usize,
        field: &'static str,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{what}: expected dimension {expected}, found {found}")]
    Dim {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("{0}")]
    Data(String),
    #[error("unknown user `{user}` ({context})")]
    UnknownUser { user: String, context: String },
    /// The caller asked a long search (e.g. model selection) to stop.
    #[error("cancelled")]
    Cancelled,
}

impl PalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = PalError> = std::result::Result<T, E>;
