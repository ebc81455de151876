//! Cold start from covariates: a new user with known covariates (age, gender, region, …) and no
//! comparisons gets user parameters predicted from the seen users' — ridge regression from
//! their covariates to their logits θ (and residuals δ) — as psychotree's Bradley–Terry trees
//! split the population on covariates. Numeric covariates are standardised, others one-hot
//! (values unseen in training, and missing ones, encode as all zeros); a categorical covariate
//! with more levels than a tenth of the users (a respondent's own first name) is left out, and the
//! ridge penalty is chosen by 3-fold cross-validation over the users.

use std::collections::BTreeMap;

use crate::error::{PalError, Result};
use pal_format::model_dir::TrainedModel;
use pal_format::user_features::UserFeatures;

/// How one covariate becomes features.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    /// `(value − mean) / sd`; missing values are 0 (the mean).
    Numeric { name: String, mean: f64, sd: f64 },
    /// One feature per value seen in training.
    Levels { name: String, levels: Vec<String> },
}

/// Covariates → features, fitted on the seen users.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoder {
    columns: Vec<Column>,
}

impl Encoder {
    /// Chooses each covariate's encoding from the values of `users`.
    pub fn fit(features: &UserFeatures, users: &[String]) -> Self {
        let columns = features
            .names()
            .into_iter()
            .filter_map(|name| {
                let values: Vec<&String> = users
                    .iter()
                    .filter_map(|u| features.users.get(u)?.get(&name))
                    .collect();
                if values.is_empty() {
                    return None;
                }
                let nums: Option<Vec<f64>> = values.iter().map(|v| v.parse().ok()).collect();
                match nums {
                    Some(x) if x.iter().all(|v: &f64| v.is_finite()) => {
                        let n = x.len() as f64;
                        let mean = x.iter().sum::<f64>() / n;
                        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                        Some(Column::Numeric {
                            name,
                            mean,
                            sd: var.sqrt().max(1e-9),
                        })
                    }
                    _ => {
                        let mut levels: Vec<String> = values.into_iter().cloned().collect();
                        levels.sort();
                        levels.dedup();
                        (levels.len() <= (users.len() / 10).max(2))
                            .then_some(Column::Levels { name, levels })
                    }
                }
            })
            .collect();
        Self { columns }
    }

    /// Number of features (without the intercept).
    pub fn width(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match c {
                Column::Numeric { .. } => 1,
                Column::Levels { levels, .. } => levels.len(),
            })
            .sum()
    }

    /// One user's features.
    pub fn encode(&self, covariates: Option<&BTreeMap<String, String>>) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.width());
        for c in &self.columns {
            match c {
                Column::Numeric { name, mean, sd } => out.push(
                    covariates
                        .and_then(|m| m.get(name)?.parse::<f64>().ok())
                        .filter(|v| v.is_finite())
                        .map_or(0.0, |v| (v - mean) / sd),
                ),
                Column::Levels { name, levels } => {
                    let v = covariates.and_then(|m| m.get(name));
                    out.extend(levels.iter().map(|l| f64::from(Some(l) == v)));
                }
            }
        }
        out
    }
}

/// Ridge regression `Y ≈ [1, X] B` with penalty `alpha` on every weight but the intercept.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStart {
    encoder: Encoder,
    /// `[1 + width, outputs]`, row-major.
    coef: Vec<f64>,
    outputs: usize,
    k: usize,
}

/// Solves `A x = b` for symmetric positive definite `A` (`n × n`, row-major) in place.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize, m: usize) -> Result<Vec<f64>> {
    // Gauss–Jordan with partial pivoting on [A | B], B with m columns.
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
            .expect("a row");
        if a[pivot * n + col].abs() < 1e-12 {
            return Err(PalError::Data(
                "cold start: singular covariate system".into(),
            ));
        }
        for j in 0..n {
            a.swap(col * n + j, pivot * n + j);
        }
        for j in 0..m {
            b.swap(col * m + j, pivot * m + j);
        }
        let d = a[col * n + col];
        for j in 0..n {
            a[col * n + j] /= d;
        }
        for j in 0..m {
            b[col * m + j] /= d;
        }
        for i in (0..n).filter(|&i| i != col) {
            let f = a[i * n + col];
            if f != 0.0 {
                for j in 0..n {
                    a[i * n + j] -= f * a[col * n + j];
                }
                for j in 0..m {
                    b[i * m + j] -= f * b[col * m + j];
                }
            }
        }
    }
    Ok(b)
}

/// Ridge coefficients `[p, outputs]` for rows `(x with intercept first, y)`.
fn ridge<'a>(
    rows: impl Iterator<Item = &'a (Vec<f64>, Vec<f64>)>,
    p: usize,
    outputs: usize,
    alpha: f64,
) -> Result<Vec<f64>> {
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p * outputs];
    for (x, y) in rows {
        for a in 0..p {
            for b in 0..p {
                xtx[a * p + b] += x[a] * x[b];
            }
            for o in 0..outputs {
                xty[a * outputs + o] += x[a] * y[o];
            }
        }
    }
    // The intercept is not penalised; a tiny floor keeps it solvable with no rows.
    xtx[0] += 1e-9;
    for a in 1..p {
        xtx[a * p + a] += alpha;
    }
    solve(xtx, xty, p, outputs)
}

/// `x · coef` for each output.
fn apply(coef: &[f64], x: &[f64], outputs: usize) -> Vec<f64> {
    (0..outputs)
        .map(|o| {
            x.iter()
                .enumerate()
                .map(|(a, xa)| xa * coef[a * outputs + o])
                .sum()
        })
        .collect()
}

impl ColdStart {
    /// Fits on the model's users that have covariates, the ridge penalty chosen from
    /// `1, 10, 100, 1000` by 3-fold cross-validation (squared error of the predicted parameters).
    pub fn fit(model: &TrainedModel, features: &UserFeatures) -> Result<Self> {
        let w = &model.weights;
        let (k, has_residual) = (w.config.k, !w.user_residuals.is_empty());
        let outputs = k + if has_residual { w.config.d } else { 0 };
        let rows: Vec<usize> = (0..model.users.len())
            .filter(|&i| features.users.contains_key(&model.users[i]))
            .collect();
        if rows.len() < 6 {
            return Err(PalError::Data(
                "cold start needs at least 6 trained users with covariates".into(),
            ));
        }
        let known: Vec<String> = rows.iter().map(|&i| model.users[i].clone()).collect();
        let encoder = Encoder::fit(features, &known);
        let data: Vec<(Vec<f64>, Vec<f64>)> = rows
            .iter()
            .map(|&i| {
                let mut x = vec![1.0];
                x.extend(encoder.encode(features.users.get(&model.users[i])));
                let mut y: Vec<f64> = w.user_logits[i].iter().map(|&v| v as f64).collect();
                if has_residual {
                    y.extend(w.user_residuals[i].iter().map(|&v| v as f64));
                }
                (x, y)
            })
            .collect();
        let p = 1 + encoder.width();
        let mut best = (f64::INFINITY, 1.0);
        for alpha in [1.0, 10.0, 100.0, 1000.0] {
            let mut err = 0.0;
            for f in 0..3 {
                let train = data.iter().enumerate().filter(|(i, _)| i % 3 != f);
                let coef = ridge(train.map(|(_, r)| r), p, outputs, alpha)?;
                for (_, (x, y)) in data.iter().enumerate().filter(|(i, _)| i % 3 == f) {
                    let pred = apply(&coef, x, outputs);
                    err += pred
                        .iter()
                        .zip(y)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>();
                }
            }
            if err < best.0 {
                best = (err, alpha);
            }
        }
        Ok(Self {
            encoder,
            coef: ridge(data.iter(), p, outputs, best.1)?,
            outputs,
            k,
        })
    }

    /// Predicted (logits θ, residual δ if the model has residuals) for covariates.
    pub fn predict(&self, covariates: Option<&BTreeMap<String, String>>) -> (Vec<f32>, Vec<f32>) {
        let mut x = vec![1.0];
        x.extend(self.encoder.encode(covariates));
        let y: Vec<f32> = apply(&self.coef, &x, self.outputs)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        (y[..self.k].to_vec(), y[self.k..].to_vec())
    }

    /// A copy of `model` with `users` appended, their parameters predicted from covariates.
    pub fn add_users(
        &self,
        model: &TrainedModel,
        features: &UserFeatures,
        users: &[String],
    ) -> TrainedModel {
        let mut out = model.clone();
        let have = model.user_map();
        for u in users.iter().filter(|u| !have.contains_key(*u)) {
            let (theta, delta) = self.predict(features.users.get(u));
            out.weights.user_logits.push(theta);
            if !model.weights.user_residuals.is_empty() {
                out.weights.user_residuals.push(delta);
            }
            out.users.push(u.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_numbers_and_levels_and_solves_ridge() {
        let mut f = UserFeatures::default();
        for (u, age, g) in [("a", "20", "m"), ("b", "40", "f"), ("c", "60", "m")] {
            let m = f.users.entry(u.into()).or_default();
            m.insert("age".into(), age.into());
            m.insert("gender".into(), g.into());
        }
        let users: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let e = Encoder::fit(&f, &users);
        // A covariate with a value per user (a name) is left out.
        let mut named = f.clone();
        for (i, m) in named.users.values_mut().enumerate() {
            m.insert("name".into(), format!("n{i}"));
        }
        assert_eq!(Encoder::fit(&named, &users).width(), 3);
        assert_eq!(e.width(), 3);
        let x = e.encode(f.users.get("b"));
        assert!((x[0]).abs() < 1e-12, "age 40 is the mean");
        assert_eq!(&x[1..], [1.0, 0.0], "levels f, m");
        assert_eq!(e.encode(None), vec![0.0, 0.0, 0.0]);
        // 2x = 4, 3y = 9 with two right-hand sides.
        let s = solve(vec![2.0, 0.0, 0.0, 3.0], vec![4.0, 2.0, 9.0, 3.0], 2, 2).unwrap();
        assert_eq!(s, vec![2.0, 1.0, 3.0, 1.0]);
    }
}
