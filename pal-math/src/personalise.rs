//! Personalising a new user from A/B answers, in plain Rust (runs in the browser): a particle
//! posterior over the user's simplex weights, updated by each answer with the model's own
//! Bradley–Terry likelihood; the next question is the candidate pair with the largest expected
//! information gain about the weights; the posterior spread says how sure the estimate is.

use rand::SeedableRng;
use rand_distr::{Distribution, Exp1};

use crate::config::Variant;
use crate::reference::{Head, PalWeights, sigmoid};

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
        let point = match self.model.config.variant {
            Variant::A => self.ideal_points[m].clone(),
            Variant::B => {
                let mut u = vec![0.0; self.model.config.d];
                for (w, g) in self.particles[m].iter().zip(&q.prompt_maps) {
                    u.iter_mut().zip(g).for_each(|(a, b)| *a += w * b);
                }
                u
            }
        };
        let diff = self.model.reward_of_features(&point, &q.left)
            - self.model.reward_of_features(&point, &q.right)
            + q.prior;
        let logit = match self.model.config.variant {
            Variant::A => self.model.scale() * diff,
            Variant::B => diff,
        };
        f64::from(sigmoid(logit)).clamp(1e-9, 1.0 - 1e-9)
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
