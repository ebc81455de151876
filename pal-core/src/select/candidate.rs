//! One point of the model search's grid and its cross-validated score: what the search hands
//! out while it runs and takes back to resume.

use serde::{Deserialize, Serialize};

/// One point of the grid and how it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub k: usize,
    pub residual: Option<f32>,
    /// Linear layers per map.
    #[serde(default)]
    pub layers: usize,
    /// The epoch with the lowest mean validation loss.
    pub epochs: usize,
    pub cv_log_loss: f32,
    pub cv_accuracy: f32,
}
