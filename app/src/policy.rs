//! The visitor's side of personalisation, as plain Rust: their answers, the particle posterior
//! over their simplex weights (`pal_math::personalise`), and the next A/B question — the most
//! informative of a set of candidate (prompt, item, item) triples. When the bundle names the
//! items compared under each prompt (`candidates.json`), every question pairs two of them.

use pal_format::candidates::{Candidates, NO_PROMPT};
use pal_math::personalise::{Personaliser, Question, fit_residual};
use pal_math::{EmbeddingStore, PalWeights, Variant};

/// Particles of the posterior and its seed (the same answers give the same posterior).
const PARTICLES: usize = 300;
const SEED: u64 = 7;
/// Candidate questions scored per answer.
pub const CANDIDATES: usize = 40;
/// Items of the shown ranking whose pairs join the candidates once a prompt is chosen.
pub const TOP_M: usize = 6;

/// One A/B question: a prompt row and two item rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub prompt: usize,
    pub left: usize,
    pub right: usize,
}

/// One answer of the visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub pair: Pair,
    pub chose_left: bool,
}

/// What the visitor's answers say: the posterior mean weights, their spread (1 = nothing
/// known yet), the visitor's own residual δ on residual models (fitted to the answers at the
/// mean weights) and the next question (none when no candidate pair exists).
#[derive(Debug, Clone, PartialEq)]
pub struct Posterior {
    pub mean: Vec<f32>,
    pub residual: Option<Vec<f32>>,
    pub spread: f32,
    pub next: Option<Pair>,
}

/// One prompt row and the item rows compared under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub prompt: usize,
    pub items: Vec<usize>,
}

/// The candidates of a bundle as rows of its stores (ids the stores lack are dropped, and so are
/// prompts left with fewer than two items).
pub fn pools(
    candidates: &Candidates,
    items: &EmbeddingStore,
    prompts: Option<&EmbeddingStore>,
) -> Vec<Pool> {
    candidates
        .prompts
        .iter()
        .filter_map(|(p, ids)| {
            let prompt = match prompts {
                Some(s) => s.position(p)?,
                None if p == NO_PROMPT => 0,
                None => return None,
            };
            let items: Vec<usize> = ids.iter().filter_map(|id| items.position(id)).collect();
            (items.len() >= 2).then_some(Pool { prompt, items })
        })
        .collect()
}

/// The model's inputs the policy reads: weights, item and prompt embeddings, and the per-prompt
/// candidate pools (empty: any two items under any prompt).
pub struct Model<'a> {
    pub weights: &'a PalWeights,
    pub items: &'a EmbeddingStore,
    pub prompts: Option<&'a EmbeddingStore>,
    pub pools: &'a [Pool],
}

impl Model<'_> {
    /// Prompt row `p`'s embedding for PAL-B; PAL-A has no prompt.
    pub fn prompt_vec(&self, p: usize) -> Vec<f32> {
        match (self.prompts, self.weights.config.variant) {
            (Some(s), Variant::B) => s.row(p).to_vec(),
            _ => vec![],
        }
    }

    fn question(&self, p: Pair) -> Question {
        Question::new(
            self.weights,
            &self.prompt_vec(p.prompt),
            self.items.row(p.left),
            self.items.row(p.right),
        )
    }

    /// Up to `n` candidate pairs of two different items under a prompt — two items of one pool
    /// when there are pools; `random(m)` draws an index below `m`.
    pub fn candidates(&self, n: usize, random: &mut dyn FnMut(usize) -> usize) -> Vec<Pair> {
        if !self.pools.is_empty() {
            let pick = |random: &mut dyn FnMut(usize) -> usize, m: usize| random(m).min(m - 1);
            return (0..n)
                .map(|_| {
                    let pool = &self.pools[pick(random, self.pools.len())];
                    Pair {
                        prompt: pool.prompt,
                        left: pool.items[pick(random, pool.items.len())],
                        right: pool.items[pick(random, pool.items.len())],
                    }
                })
                .filter(|p| p.left != p.right)
                .collect();
        }
        let items = self.items.len();
        let prompts = self.prompts.map_or(1, EmbeddingStore::len).max(1);
        if items < 2 {
            return vec![];
        }
        (0..n)
            .map(|_| Pair {
                prompt: random(prompts).min(prompts - 1),
                left: random(items).min(items - 1),
                right: random(items).min(items - 1),
            })
            .filter(|p| p.left != p.right)
            .collect()
    }

    /// Candidate pairs under the prompt the visitor chose (its pool's items), or under any
    /// prompt when they chose none or the chosen prompt has no pool.
    /// Once a prompt is chosen, every pair of the current `top` rows (the ranking shown) that are
    /// candidates of it joins the drawn pairs: the questions that settle the visible order.
    pub fn candidates_under(
        &self,
        chosen: Option<usize>,
        n: usize,
        random: &mut dyn FnMut(usize) -> usize,
        top: &[usize],
    ) -> Vec<Pair> {
        let pool = chosen.and_then(|p| self.pools.iter().find(|q| q.prompt == p));
        match pool {
            Some(pool) => {
                let mut out = Model {
                    pools: std::slice::from_ref(pool),
                    ..*self
                }
                .candidates(n, random);
                let shown: Vec<usize> = top
                    .iter()
                    .copied()
                    .filter(|i| pool.items.contains(i))
                    .take(TOP_M)
                    .collect();
                for (a, &left) in shown.iter().enumerate() {
                    for &right in &shown[a + 1..] {
                        out.push(Pair {
                            prompt: pool.prompt,
                            left,
                            right,
                        });
                    }
                }
                out
            }
            None => self.candidates(n, random),
        }
    }

    /// The posterior after `answers`, and the most informative of `candidates` to ask next.
    pub fn posterior(&self, answers: &[Answer], candidates: &[Pair]) -> Posterior {
        let mut post = Personaliser::new(self.weights, PARTICLES, SEED);
        let asked: Vec<(Question, bool)> = answers
            .iter()
            .map(|a| (self.question(a.pair), a.chose_left))
            .collect();
        for (q, chose_left) in &asked {
            post.observe(q, *chose_left);
        }
        let qs: Vec<Question> = candidates.iter().map(|&p| self.question(p)).collect();
        let mean = post.mean();
        let pairs: Vec<(&Question, bool)> = asked.iter().map(|(q, y)| (q, *y)).collect();
        Posterior {
            residual: fit_residual(self.weights, &mean, &pairs),
            mean,
            spread: post.spread(),
            next: post.best_question(&qs).map(|i| candidates[i]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pal_math::ModelConfig;
    use pal_math::reference::softmax;

    /// A small deterministic generator of indices (xorshift).
    fn rng(seed: u64) -> impl FnMut(usize) -> usize {
        let mut s = seed.max(1);
        move |m| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % m as u64) as usize
        }
    }

    fn store(prefix: &str, n: usize, dim: usize, seed: u64) -> EmbeddingStore {
        let mut r = rng(seed);
        let data = (0..n * dim)
            .map(|_| r(2001) as f32 / 1000.0 - 1.0)
            .collect();
        let ids = (0..n).map(|i| format!("{prefix}{i}")).collect();
        EmbeddingStore::new(ids, dim, data).unwrap()
    }

    #[test]
    fn candidates_are_pairs_of_two_items_under_a_prompt() {
        let w = PalWeights::init(&ModelConfig::pal_b(6, 4, 8, 3), 1, 0);
        let (items, prompts) = (store("i", 9, 6, 1), store("p", 3, 4, 2));
        let m = Model {
            weights: &w,
            items: &items,
            prompts: Some(&prompts),
            pools: &[],
        };
        let c = m.candidates(CANDIDATES, &mut rng(3));
        assert!(!c.is_empty() && c.len() <= CANDIDATES);
        for p in &c {
            assert!(
                p.left != p.right && p.left < 9 && p.right < 9 && p.prompt < 3,
                "{p:?}"
            );
        }
        let one = store("i", 1, 6, 1);
        let m1 = Model { items: &one, ..m };
        assert!(m1.candidates(10, &mut rng(3)).is_empty());
    }

    #[test]
    fn the_posterior_is_a_simplex_and_asks_a_candidate() {
        let w = PalWeights::init(&ModelConfig::pal_b(6, 4, 8, 3), 1, 0);
        let (items, prompts) = (store("i", 12, 6, 4), store("p", 2, 4, 5));
        let m = Model {
            weights: &w,
            items: &items,
            prompts: Some(&prompts),
            pools: &[],
        };
        let c = m.candidates(CANDIDATES, &mut rng(9));
        let prior = m.posterior(&[], &c);
        assert!((prior.mean.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(c.contains(&prior.next.unwrap()));
        assert_eq!(m.posterior(&[], &[]).next, None);
        // A visitor who answers as prototype 1 would: the posterior leans towards it.
        let truth = softmax(&[0.0, 6.0, 0.0]);
        let answers: Vec<Answer> = m
            .candidates(60, &mut rng(11))
            .into_iter()
            .map(|pair| {
                let p = m.prompt_vec(pair.prompt);
                let l = w.reward(&truth, &p, items.row(pair.left));
                let r = w.reward(&truth, &p, items.row(pair.right));
                Answer {
                    pair,
                    chose_left: l > r,
                }
            })
            .collect();
        let post = m.posterior(&answers, &c);
        assert_eq!(post.residual, None, "a model without residuals fits none");
        assert!((post.mean.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(
            post.mean[1] > prior.mean[1],
            "{:?} vs {:?}",
            post.mean,
            prior.mean
        );
        assert!(
            post.spread < prior.spread,
            "{} vs {}",
            post.spread,
            prior.spread
        );
    }

    #[test]
    fn on_a_residual_model_the_visitor_gets_their_own_residual() {
        let mut cfg = ModelConfig::pal_b(6, 4, 8, 3);
        cfg.residual = Some(1.0);
        let w = PalWeights::init(&cfg, 1, 0);
        let (items, prompts) = (store("i", 12, 6, 4), store("p", 2, 4, 5));
        let m = Model {
            weights: &w,
            items: &items,
            prompts: Some(&prompts),
            pools: &[],
        };
        let c = m.candidates(CANDIDATES, &mut rng(9));
        assert_eq!(
            m.posterior(&[], &c).residual,
            None,
            "no answers, no residual"
        );
        // A visitor who prefers items whose first embedding value is larger.
        let answers: Vec<Answer> = m
            .candidates(30, &mut rng(5))
            .into_iter()
            .map(|pair| Answer {
                pair,
                chose_left: items.row(pair.left)[0] > items.row(pair.right)[0],
            })
            .collect();
        let post = m.posterior(&answers, &c);
        let delta = post.residual.expect("a residual for a residual model");
        assert_eq!(delta.len(), cfg.d);
        // The residual moves the visitor towards their answers: under the reference's logits
        // they are likelier with it (the fit lowers loss + λ‖δ‖², so the loss alone drops).
        let log_lik = |d: Option<&[f32]>| {
            answers
                .iter()
                .map(|a| {
                    let p = m.prompt_vec(a.pair.prompt);
                    let point = w.user_point_with(&post.mean, d, &p);
                    let logit =
                        w.logit_at(&point, &p, items.row(a.pair.left), items.row(a.pair.right));
                    let z = if a.chose_left { logit } else { -logit };
                    -(f64::from(-z).exp().ln_1p())
                })
                .sum::<f64>()
        };
        let (with, without) = (log_lik(Some(&delta)), log_lik(None));
        assert!(
            with > without + 1e-3,
            "answers' log-likelihood {with} with δ, {without} without"
        );
    }

    #[test]
    fn with_candidates_every_question_pairs_two_items_of_its_prompt() {
        let w = PalWeights::init(&ModelConfig::pal_b(6, 4, 8, 3), 1, 0);
        let (items, prompts) = (store("i", 12, 6, 4), store("p", 3, 4, 5));
        let mut cand = Candidates::default();
        cand.prompts
            .insert("p0".into(), vec!["i1".into(), "i2".into(), "i3".into()]);
        cand.prompts
            .insert("p2".into(), vec!["i7".into(), "i8".into(), "gone".into()]);
        cand.prompts
            .insert("p1".into(), vec!["i5".into(), "gone".into()]);
        cand.prompts
            .insert("nope".into(), vec!["i1".into(), "i2".into()]);
        let pools = pools(&cand, &items, Some(&prompts));
        assert_eq!(
            pools,
            [
                Pool {
                    prompt: 0,
                    items: vec![1, 2, 3]
                },
                Pool {
                    prompt: 2,
                    items: vec![7, 8]
                }
            ]
        );
        let m = Model {
            weights: &w,
            items: &items,
            prompts: Some(&prompts),
            pools: &pools,
        };
        let c = m.candidates(200, &mut rng(13));
        assert!(c.len() > 100);
        for p in &c {
            let pool = pools.iter().find(|q| q.prompt == p.prompt).unwrap();
            assert!(
                pool.items.contains(&p.left) && pool.items.contains(&p.right),
                "{p:?}"
            );
            assert_ne!(p.left, p.right);
        }
        assert!(c.iter().any(|p| p.prompt == 0) && c.iter().any(|p| p.prompt == 2));
        // A visitor who chose prompt 2 is asked about prompt 2's items only.
        let under = m.candidates_under(Some(2), 50, &mut rng(17), &[]);
        assert!(!under.is_empty());
        assert!(
            under
                .iter()
                .all(|p| p.prompt == 2 && [7, 8].contains(&p.left))
        );
        // A prompt without a pool falls back to every pool.
        let any = m.candidates_under(Some(1), 200, &mut rng(17), &[]);
        // The shown ranking's pairs join, but only items of the chosen prompt's pool.
        let with_top = m.candidates_under(Some(2), 0, &mut rng(17), &[8, 3, 7]);
        assert_eq!(
            with_top,
            [Pair {
                prompt: 2,
                left: 8,
                right: 7
            }]
        );
        assert!(any.iter().any(|p| p.prompt == 0) && any.iter().any(|p| p.prompt == 2));
        let next = m.posterior(&[], &c).next.unwrap();
        assert!(c.contains(&next));
    }
}
