//! Errors of scoring: an input of the wrong shape, or a GPU failure.

/// Errors of scoring.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("input `{what}`: expected {expected} values, found {found}")]
    Shape {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("GPU: {0}")]
    Gpu(String),
}
