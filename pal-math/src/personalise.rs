//! Personalising a new user from A/B answers, in plain Rust (runs in the browser): a particle
//! posterior over the user's simplex weights, updated by each answer with the model's own
//! Bradley–Terry likelihood; the next question is the candidate pair with the largest expected
//! information gain about the weights; the posterior spread says how sure the estimate is.
//! On models with personal residuals, [`fit_residual`] then fits the visitor's own δ to their
//! answers (the few-shot objective of training, with the weights held at the posterior mean).

use rand::SeedableRng;
use rand_distr::{Distribution, Exp1};

use crate::config::Variant;
use crate::reference::{COS_EPS, Head, PalWeights, cosine, distance, dot, norm, sigmoid};

/// The model-side features of one question: user-point ingredients for its prompt and f(x) of
/// both items, computed once so scoring many particles is cheap.
pub struct Question {
    /// PAL-B: g_k(c) for each k; PAL-A: empty (the point does not depend on the prompt).
    prompt_maps: Vec<Vec<f32>>,
    left: Vec<f32>,
    right: Vec<f32>,
    /// The content prior's part of the log-odds, the same for every particle.
    prior: f32,
}

impl Question {
    pub fn new(model: &PalWeights, prompt: &[f32], left: &[f32], right: &[f32]) -> Self {
        let prompt_maps = match &model.head {
            Head::PromptMaps(maps) => maps.iter().map(|g| g.forward(prompt)).collect(),
            Head::Prototypes(_) => vec![],
        };
        Self {
            prompt_maps,
            left: model.item_map.forward(left),
            right: model.item_map.forward(right),
            prior: model.prior_term(prompt, left) - model.prior_term(prompt, right),
        }
    }

    /// The user's point for simplex weights and a residual, as the reference's
    /// `user_point_with` computes it from the cached prompt maps (PAL-A's ideal point comes
    /// precomputed as `ideal`).
    fn point(
        &self,
        model: &PalWeights,
        weights: &[f32],
        ideal: Option<&[f32]>,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        let mixture = match ideal {
            Some(a) => a.to_vec(),
            None => {
                let mut u = vec![0.0; model.config.d];
                for (w, g) in weights.iter().zip(&self.prompt_maps) {
                    u.iter_mut().zip(g).for_each(|(a, b)| *a += w * b);
                }
                u
            }
        };
        model.point_from_mixture(mixture, residual)
    }

    /// Log-odds that the left item is preferred at a user point.
    fn logit(&self, model: &PalWeights, point: &[f32]) -> f32 {
        model.logit_of_diff(
            model.reward_of_features(point, &self.left)
                - model.reward_of_features(point, &self.right)
                + self.prior,
        )
    }

    /// Gradient of [`Question::logit`] with respect to the point.
    fn logit_grad(&self, model: &PalWeights, point: &[f32]) -> Vec<f32> {
        let s = model.scale();
        let un = norm(point).max(COS_EPS);
        // d reward(f, u) / du: PAL-B s·(f/(‖f‖‖u‖) − cos·u/‖u‖²), or f/‖f‖ on residual
        // models (whose points carry s); PAL-A (f − u)/dist.
        let reward_grad = |f: &[f32]| -> Vec<f32> {
            match model.config.variant {
                Variant::B if model.config.residual.is_some() => {
                    let fnorm = norm(f).max(COS_EPS);
                    f.iter().map(|fi| fi / fnorm).collect()
                }
                Variant::B => {
                    let (fnorm, c) = (norm(f).max(COS_EPS), cosine(f, point));
                    f.iter()
                        .zip(point)
                        .map(|(fi, ui)| s * (fi / (fnorm * un) - c * ui / (un * un)))
                        .collect()
                }
                Variant::A => {
                    let dist = distance(f, point);
                    f.iter()
                        .zip(point)
                        .map(|(fi, ui)| s * (fi - ui) / dist)
                        .collect()
                }
            }
        };
        let (l, r) = (reward_grad(&self.left), reward_grad(&self.right));
        l.iter().zip(&r).map(|(a, b)| a - b).collect()
    }
}

/// The objective [`fit_residual`] minimises: `Σ_j −log P(answer_j) + λ‖δ‖²`, and its gradient
/// in δ. `bases` holds each question's point with δ = 0.
pub fn residual_objective(
    model: &PalWeights,
    answers: &[(&Question, bool)],
    bases: &[Vec<f32>],
    lambda: f32,
    delta: &[f32],
) -> (f64, Vec<f32>) {
    let mut value = f64::from(lambda) * f64::from(dot(delta, delta));
    let mut grad: Vec<f32> = delta.iter().map(|v| 2.0 * lambda * v).collect();
    for ((q, chose_left), base) in answers.iter().zip(bases) {
        let point: Vec<f32> = base.iter().zip(delta).map(|(a, b)| a + b).collect();
        let y = if *chose_left { 1.0 } else { -1.0 };
        let z = y * q.logit(model, &point);
        // −log σ(z) = softplus(−z), stable for large |z|.
        value += f64::from((-z).max(0.0) + (-z.abs()).exp().ln_1p());
        let coef = -y * sigmoid(-z);
        grad.iter_mut()
            .zip(q.logit_grad(model, &point))
            .for_each(|(g, d)| *g += coef * d);
    }
    (value, grad)
}

/// A new user's residual δ on a residual model, for simplex `weights` and their answers: the
/// minimiser of [`residual_objective`] with the model's new-user penalty (its training penalty
/// when none was chosen), by gradient descent with backtracking from δ = 0. `None` when the model
/// has no residuals or there are no answers.
pub fn fit_residual(
    model: &PalWeights,
    weights: &[f32],
    answers: &[(&Question, bool)],
) -> Option<Vec<f32>> {
    let lambda = model.config.new_user_residual.or(model.config.residual)?;
    if answers.is_empty() {
        return None;
    }
    let ideal = (model.config.variant == Variant::A).then(|| model.user_point(weights, &[]));
    let bases: Vec<Vec<f32>> = answers
        .iter()
        .map(|(q, _)| q.point(model, weights, ideal.as_deref(), None))
        .collect();
    let mut delta = vec![0.0f32; model.config.d];
    let (mut value, mut grad) = residual_objective(model, answers, &bases, lambda, &delta);
    let mut step = 1.0f32;
    for _ in 0..5000 {
        let gg = dot(&grad, &grad);
        if gg.sqrt() < 1e-6 {
            break;
        }
        // Armijo backtracking along −grad; the step grows again after a success.
        loop {
            let next: Vec<f32> = delta.iter().zip(&grad).map(|(d, g)| d - step * g).collect();
            let (v, g) = residual_objective(model, answers, &bases, lambda, &next);
            if v <= value - 1e-4 * f64::from(step * gg) {
                (delta, value, grad) = (next, v, g);
                step *= 2.0;
                break;
            }
            step *= 0.5;
            if step < 1e-12 {
                return Some(delta);
            }
        }
    }
    Some(delta)
}

/// Posterior over a new user's weights on the simplex.
pub struct Personaliser<'a> {
    model: &'a PalWeights,
    particles: Vec<Vec<f32>>,
    log_post: Vec<f64>,
    /// PAL-A: each particle's ideal point, computed once.
    ideal_points: Vec<Vec<f32>>,
}

fn entropy(p: f64) -> f64 {
    let h = |q: f64| if q <= 0.0 { 0.0 } else { -q * q.ln() };
    h(p) + h(1.0 - p)
}

impl<'a> Personaliser<'a> {
    /// A uniform prior: the K vertices (pure groups) plus `samples` Dirichlet(1) points.
    pub fn new(model: &'a PalWeights, samples: usize, seed: u64) -> Self {
        let k = model.config.k;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut particles: Vec<Vec<f32>> = (0..k)
            .map(|i| (0..k).map(|j| f32::from(i == j)).collect())
            .collect();
        for _ in 0..samples {
            let e: Vec<f32> = (0..k).map(|_| Exp1.sample(&mut rng)).collect();
            let s: f32 = e.iter().sum();
            particles.push(e.into_iter().map(|v| v / s).collect());
        }
        let ideal_points = match model.config.variant {
            Variant::A => particles.iter().map(|w| model.user_point(w, &[])).collect(),
            Variant::B => vec![],
        };
        let n = particles.len();
        Self {
            model,
            particles,
            log_post: vec![0.0; n],
            ideal_points,
        }
    }

    /// P(left) under particle `m`.
    fn prob_left(&self, m: usize, q: &Question) -> f64 {
        let ideal = self.ideal_points.get(m).map(Vec::as_slice);
        let point = q.point(self.model, &self.particles[m], ideal, None);
        f64::from(sigmoid(q.logit(self.model, &point))).clamp(1e-9, 1.0 - 1e-9)
    }

    /// Normalised posterior probabilities of the particles.
    fn posterior(&self) -> Vec<f64> {
        let max = self
            .log_post
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = self.log_post.iter().map(|l| (l - max).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect()
    }

    /// Records the user's answer to a question.
    pub fn observe(&mut self, q: &Question, chose_left: bool) {
        for m in 0..self.particles.len() {
            let p = self.prob_left(m, q);
            self.log_post[m] += if chose_left { p.ln() } else { (1.0 - p).ln() };
        }
    }

    /// Mutual information between the answer and the weights, in nats.
    pub fn information_gain(&self, q: &Question) -> f64 {
        let post = self.posterior();
        let (mut mean_p, mut mean_h) = (0.0, 0.0);
        for (m, pi) in post.iter().enumerate() {
            let p = self.prob_left(m, q);
            mean_p += pi * p;
            mean_h += pi * entropy(p);
        }
        (entropy(mean_p) - mean_h).max(0.0)
    }

    /// Index of the candidate with the largest expected information gain.
    pub fn best_question(&self, candidates: &[Question]) -> Option<usize> {
        candidates
            .iter()
            .map(|q| self.information_gain(q))
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Posterior mean of the weights (on the simplex).
    pub fn mean(&self) -> Vec<f32> {
        let post = self.posterior();
        let mut mean = vec![0.0f64; self.model.config.k];
        for (pi, w) in post.iter().zip(&self.particles) {
            mean.iter_mut()
                .zip(w)
                .for_each(|(a, b)| *a += pi * f64::from(*b));
        }
        mean.into_iter().map(|v| v as f32).collect()
    }

    /// Posterior expected total-variation distance from the mean: 0 = certain.
    pub fn spread(&self) -> f32 {
        let mean = self.mean();
        let post = self.posterior();
        post.iter()
            .zip(&self.particles)
            .map(|(pi, w)| {
                let tv: f32 = 0.5 * w.iter().zip(&mean).map(|(a, b)| (a - b).abs()).sum::<f32>();
                *pi as f32 * tv
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use rand::{Rng, SeedableRng};

    fn row(dim: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// PAL-B and PAL-A (both ideal points) with residuals, random weights.
    fn models() -> Vec<PalWeights> {
        let mut a_pw = ModelConfig::pal_a(6, 5, 3);
        a_pw.ideal_point = crate::config::IdealPoint::Pw;
        [
            ModelConfig::pal_b(6, 4, 5, 3),
            ModelConfig::pal_a(6, 5, 3),
            a_pw,
        ]
        .into_iter()
        .map(|mut c| {
            c.residual = Some(0.5);
            PalWeights::init(&c, 2, 7)
        })
        .collect()
    }

    /// `n` random questions and answers, with the prompts and items they were built from.
    type Asked = Vec<(Question, bool, Vec<f32>, Vec<f32>, Vec<f32>)>;

    fn asked(
        model: &PalWeights,
        n: usize,
        seed: u64,
        answer: impl Fn(&[f32], &[f32], &[f32]) -> bool,
    ) -> Asked {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let cfg = &model.config;
        (0..n)
            .map(|_| {
                let (p, l, r) = (
                    row(cfg.d_prompt.max(1), &mut rng),
                    row(cfg.d_item, &mut rng),
                    row(cfg.d_item, &mut rng),
                );
                let q = Question::new(model, &p, &l, &r);
                let y = answer(&p, &l, &r);
                (q, y, p, l, r)
            })
            .collect()
    }

    fn bases(model: &PalWeights, w: &[f32], answers: &[(&Question, bool)]) -> Vec<Vec<f32>> {
        let ideal = (model.config.variant == Variant::A).then(|| model.user_point(w, &[]));
        answers
            .iter()
            .map(|(q, _)| q.point(model, w, ideal.as_deref(), None))
            .collect()
    }

    #[test]
    fn the_residual_gradient_matches_finite_differences() {
        for model in models() {
            let w = [0.2, 0.5, 0.3];
            let qs = asked(&model, 12, 3, |_, l, _| l[0] > 0.0);
            let answers: Vec<(&Question, bool)> = qs.iter().map(|a| (&a.0, a.1)).collect();
            let b = bases(&model, &w, &answers);
            let delta: Vec<f32> = (0..model.config.d).map(|i| 0.1 * i as f32 - 0.2).collect();
            let (_, grad) = residual_objective(&model, &answers, &b, 0.5, &delta);
            for i in 0..delta.len() {
                let h = 1e-3;
                let at = |s: f32| {
                    let mut d = delta.clone();
                    d[i] += s;
                    residual_objective(&model, &answers, &b, 0.5, &d).0
                };
                let fd = ((at(h) - at(-h)) / (2.0 * f64::from(h))) as f32;
                assert!(
                    (fd - grad[i]).abs() <= 2e-3 * (1.0 + fd.abs()),
                    "{:?} δ[{i}]: analytic {} vs finite difference {fd}",
                    model.config.variant,
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn the_fitted_residual_is_the_minimum_and_scores_like_the_reference() {
        for model in models() {
            let w = [0.6, 0.1, 0.3];
            // Answers from a user whose point leans along the first axis.
            let qs = asked(&model, 20, 5, |_, l, r| l[0] - r[0] > 0.0);
            let answers: Vec<(&Question, bool)> = qs.iter().map(|a| (&a.0, a.1)).collect();
            let delta = fit_residual(&model, &w, &answers).expect("a residual model");
            let b = bases(&model, &w, &answers);
            let (at_fit, _) = residual_objective(&model, &answers, &b, 0.5, &delta);
            let (at_zero, _) =
                residual_objective(&model, &answers, &b, 0.5, &vec![0.0; delta.len()]);
            assert!(at_fit < at_zero - 1e-3, "{at_fit} vs {at_zero} at δ = 0");
            // A local minimum: no step of 1e-3 along any axis lowers the objective (beyond f32
            // noise).
            for i in 0..delta.len() {
                for h in [1e-3f32, -1e-3] {
                    let mut d = delta.clone();
                    d[i] += h;
                    let v = residual_objective(&model, &answers, &b, 0.5, &d).0;
                    assert!(
                        v >= at_fit - 1e-5,
                        "{:?}: δ[{i}] {h:+} lowers {at_fit} to {v}",
                        model.config.variant
                    );
                }
            }
            // Each question's logit with δ is the reference's, from the raw embeddings.
            for (q, _, p, l, r) in &qs {
                let ideal = (model.config.variant == Variant::A).then(|| model.user_point(&w, &[]));
                let mine = q.logit(&model, &q.point(&model, &w, ideal.as_deref(), Some(&delta)));
                let point = model.user_point_with(&w, Some(&delta), p);
                let want = model.logit_at(&point, p, l, r);
                assert!(
                    (mine - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{mine} vs {want}"
                );
            }
        }
    }

    #[test]
    fn no_residual_without_a_residual_model_or_answers() {
        let plain = PalWeights::init(&ModelConfig::pal_b(6, 4, 5, 3), 1, 0);
        let qs = asked(&plain, 3, 1, |_, _, _| true);
        let answers: Vec<(&Question, bool)> = qs.iter().map(|a| (&a.0, a.1)).collect();
        assert_eq!(fit_residual(&plain, &[0.3, 0.3, 0.4], &answers), None);
        assert_eq!(fit_residual(&models()[0], &[0.3, 0.3, 0.4], &[]), None);
    }
}
