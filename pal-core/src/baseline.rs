//! Per-user independent baseline: one L2-regularised logistic regression per user on
//! `x_left − x_right` (no sharing across users). The BTL baseline is PAL with K = 1 on
//! [`pooled`](crate::pipeline::pooled) users.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{PalError, Result};
use crate::reference::{dot, sigmoid};
use crate::train::Metrics;
use pal_format::comparison::Comparison;
use pal_format::dataset::Dataset;

/// Settings of the per-user logistic regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerUserConfig {
    pub l2: f32,
    pub iterations: usize,
    pub lr: f32,
}

impl Default for PerUserConfig {
    fn default() -> Self {
        Self {
            l2: 0.1,
            iterations: 300,
            lr: 0.2,
        }
    }
}

/// One weight vector per user over item-embedding differences.
#[derive(Debug, Clone, PartialEq)]
pub struct PerUserModel {
    pub weights: HashMap<String, Vec<f32>>,
    pub dim: usize,
}

fn diff(data: &Dataset, c: &Comparison) -> Result<Vec<f32>> {
    let get = |id: &str| {
        data.items
            .get(id)
            .ok_or_else(|| PalError::Data(format!("unknown item `{id}`")))
    };
    let (l, r) = (get(&c.left)?, get(&c.right)?);
    Ok(l.iter().zip(r).map(|(a, b)| a - b).collect())
}

impl PerUserModel {
    /// Fits each user by full-batch gradient descent on the mean logistic loss + L2.
    pub fn fit(data: &Dataset, rows: &[Comparison], cfg: &PerUserConfig) -> Result<Self> {
        let dim = data.items.dim();
        let mut by_user: HashMap<&str, Vec<(Vec<f32>, f32)>> = HashMap::new();
        for c in rows {
            by_user
                .entry(c.user.as_str())
                .or_default()
                .push((diff(data, c)?, f32::from(c.label)));
        }
        let weights = by_user
            .into_iter()
            .map(|(u, xs)| {
                let mut w = vec![0.0f32; dim];
                let n = xs.len() as f32;
                for _ in 0..cfg.iterations {
                    let mut g: Vec<f32> = w.iter().map(|v| cfg.l2 * v).collect();
                    for (x, y) in &xs {
                        let e = (sigmoid(dot(&w, x)) - y) / n;
                        g.iter_mut().zip(x).for_each(|(gi, xi)| *gi += e * xi);
                    }
                    w.iter_mut().zip(&g).for_each(|(wi, gi)| *wi -= cfg.lr * gi);
                }
                (u.to_string(), w)
            })
            .collect();
        Ok(Self { weights, dim })
    }

    /// Log-loss, accuracy and calibration on comparisons; unknown users are an error.
    pub fn score(&self, data: &Dataset, rows: &[Comparison]) -> Result<Metrics> {
        let mut logits = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for c in rows {
            let w = self
                .weights
                .get(&c.user)
                .ok_or_else(|| PalError::UnknownUser {
                    user: c.user.clone(),
                    context: "per-user baseline".into(),
                })?;
            logits.push(dot(w, &diff(data, c)?));
            labels.push(c.label);
        }
        Ok(Metrics::of(&logits, &labels))
    }
}
