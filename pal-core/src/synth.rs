//! The paper's synthetic setting: preferences drawn from a known PAL model (ground truth saved),
//! so accuracy can be compared with the truth's own and recovered weights checked.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, Normal};
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, Variant};
use crate::error::{PalError, Result};
use crate::reference::{Head, PalWeights, sigmoid};
use crate::store::EmbeddingStore;
use pal_format::comparison::Comparison;
use pal_format::dataset::Split;
use pal_format::model_dir::TrainedModel;

/// How users relate to the K prototypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// Each user follows exactly one prototype (groups).
    OnePrototype,
    /// Each user mixes prototypes with Dirichlet(1) weights.
    Mixture,
}

/// The ground-truth map f.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TruthMap {
    Linear,
    Mlp,
}

/// Sizes and noise of a synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    pub variant: Variant,
    pub d_item: usize,
    pub d_prompt: usize,
    /// Preference-space dimension of the truth.
    pub d: usize,
    pub k: usize,
    pub users: usize,
    pub train_pairs: usize,
    pub val_pairs: usize,
    pub test_pairs: usize,
    pub unseen_users: usize,
    pub unseen_train_pairs: usize,
    pub unseen_test_pairs: usize,
    pub items: usize,
    pub prompts: usize,
    pub regime: Regime,
    pub truth_map: TruthMap,
    /// Standard deviation of the truth's log-odds over random pairs (lower = noisier labels).
    pub signal: f32,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            variant: Variant::B,
            d_item: 8,
            d_prompt: 4,
            d: 16,
            k: 3,
            users: 60,
            train_pairs: 50,
            val_pairs: 10,
            test_pairs: 25,
            unseen_users: 20,
            unseen_train_pairs: 100,
            unseen_test_pairs: 50,
            items: 400,
            prompts: 5,
            regime: Regime::OnePrototype,
            truth_map: TruthMap::Linear,
            signal: 4.0,
            seed: 7,
        }
    }
}

impl SynthConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(PalError::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.items < 2 {
            return bad("items", "need at least 2 items");
        }
        if self.users == 0 || self.train_pairs == 0 || self.test_pairs == 0 {
            return bad("users", "need ≥ 1 user with ≥ 1 train and test pair");
        }
        if self.variant == Variant::B && (self.prompts == 0 || self.d_prompt == 0) {
            return bad("prompts", "PAL-B data needs prompts");
        }
        if !(self.signal.is_finite() && self.signal > 0.0) {
            return bad("signal", "must be > 0");
        }
        self.truth_config().validate()
    }

    fn truth_config(&self) -> ModelConfig {
        let mut c = match self.variant {
            Variant::A => ModelConfig::pal_a(self.d_item, self.d, self.k),
            Variant::B => ModelConfig::pal_b(self.d_item, self.d_prompt, self.d, self.k),
        };
        c.layers = match self.truth_map {
            TruthMap::Linear => 1,
            TruthMap::Mlp => 2,
        };
        c
    }
}

/// A generated dataset with its ground truth (seen users first, then unseen).
pub struct Synthetic {
    pub items: EmbeddingStore,
    pub prompts: Option<EmbeddingStore>,
    pub splits: Vec<(Split, Vec<Comparison>)>,
    pub truth: TrainedModel,
}

fn gaussian_rows(prefix: &str, n: usize, dim: usize, rng: &mut StdRng) -> Result<EmbeddingStore> {
    let normal = Normal::new(0.0f32, 1.0).expect("unit normal");
    let ids = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let data = (0..n * dim).map(|_| normal.sample(rng)).collect();
    EmbeddingStore::new(ids, dim, data)
}

fn simplex(regime: Regime, k: usize, user: usize, rng: &mut StdRng) -> Vec<f32> {
    match regime {
        Regime::OnePrototype => (0..k).map(|j| f32::from(j == user % k)).collect(),
        Regime::Mixture => {
            let g = Gamma::new(1.0f32, 1.0).expect("valid gamma");
            let v: Vec<f32> = (0..k).map(|_| g.sample(rng)).collect();
            let s: f32 = v.iter().sum();
            v.into_iter().map(|x| x / s).collect()
        }
    }
}

/// Precomputed features so labels cost O(d) per comparison.
struct Features {
    items: Vec<Vec<f32>>,
    prompt_maps: Vec<Vec<Vec<f32>>>,
}

impl Features {
    fn point(&self, truth: &PalWeights, w: &[f32], prompt: usize) -> Vec<f32> {
        match &truth.head {
            Head::Prototypes(_) => truth.user_point(w, &[]),
            Head::PromptMaps(_) => {
                let mut u = vec![0.0; truth.config.d];
                for (wk, g) in w.iter().zip(&self.prompt_maps[prompt]) {
                    u.iter_mut().zip(g).for_each(|(a, b)| *a += wk * b);
                }
                u
            }
        }
    }

    /// Truth log-odds of left over right (same link as the reference `logit`).
    fn logit(&self, truth: &PalWeights, point: &[f32], l: usize, r: usize) -> f32 {
        let diff = truth.reward_of_features(point, &self.items[l])
            - truth.reward_of_features(point, &self.items[r]);
        match truth.config.variant {
            Variant::A => truth.scale() * diff,
            Variant::B => diff,
        }
    }
}

/// Generates a dataset; deterministic for a given config.
pub fn generate(cfg: &SynthConfig) -> Result<Synthetic> {
    cfg.validate()?;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let tcfg = cfg.truth_config();
    let n_total = cfg.users + cfg.unseen_users;
    let mut truth = PalWeights::init(&tcfg, n_total, rng.random());
    if let Head::Prototypes(p) = &mut truth.head {
        let normal = Normal::new(0.0f32, 1.0).expect("unit normal");
        p.iter_mut()
            .for_each(|row| row.iter_mut().for_each(|v| *v = normal.sample(&mut rng)));
    }
    for (u, logits) in truth.user_logits.iter_mut().enumerate() {
        *logits = simplex(cfg.regime, cfg.k, u, &mut rng)
            .into_iter()
            .map(|w| w.max(1e-4).ln())
            .collect();
    }
    let items = gaussian_rows("item", cfg.items, cfg.d_item, &mut rng)?;
    let prompts = match cfg.variant {
        Variant::B => Some(gaussian_rows(
            "prompt",
            cfg.prompts,
            cfg.d_prompt,
            &mut rng,
        )?),
        Variant::A => None,
    };
    let feats = Features {
        items: (0..items.len())
            .map(|i| truth.item_map.forward(items.row(i)))
            .collect(),
        prompt_maps: match (&truth.head, &prompts) {
            (Head::PromptMaps(maps), Some(p)) => (0..p.len())
                .map(|i| maps.iter().map(|g| g.forward(p.row(i))).collect())
                .collect(),
            _ => vec![],
        },
    };
    let n_prompts = prompts.as_ref().map_or(1, EmbeddingStore::len);
    let draw = |rng: &mut StdRng| {
        let l = rng.random_range(0..cfg.items);
        let mut r = rng.random_range(0..cfg.items - 1);
        if r >= l {
            r += 1;
        }
        (rng.random_range(0..n_prompts), l, r)
    };
    // Calibrate the truth's scale so its log-odds have standard deviation `signal`.
    truth.log_scale = 0.0;
    let raw: Vec<f32> = (0..2000)
        .map(|i| {
            let (p, l, r) = draw(&mut rng);
            let w = truth.user_weights(i % n_total);
            feats.logit(&truth, &feats.point(&truth, &w, p), l, r)
        })
        .collect();
    let mean = raw.iter().sum::<f32>() / raw.len() as f32;
    let sd = (raw.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / raw.len() as f32).sqrt();
    truth.log_scale = (cfg.signal / sd.max(1e-6))
        .ln()
        .min(crate::reference::MAX_SCALE.ln());

    let user_id = |u: usize| {
        if u < cfg.users {
            format!("user{u}")
        } else {
            format!("new{}", u - cfg.users)
        }
    };
    let sample = |users: std::ops::Range<usize>, n: usize, rng: &mut StdRng| {
        let mut rows = Vec::new();
        for u in users {
            let w = truth.user_weights(u);
            for _ in 0..n {
                let (p, l, r) = draw(rng);
                let z = feats.logit(&truth, &feats.point(&truth, &w, p), l, r);
                rows.push(Comparison {
                    user: user_id(u),
                    prompt: prompts.as_ref().map(|s| s.ids()[p].clone()),
                    left: items.ids()[l].clone(),
                    right: items.ids()[r].clone(),
                    label: u8::from(rng.random::<f32>() < sigmoid(z)),
                });
            }
        }
        rows
    };
    let seen = 0..cfg.users;
    let unseen = cfg.users..n_total;
    let mut splits = vec![
        (
            Split::Train,
            sample(seen.clone(), cfg.train_pairs, &mut rng),
        ),
        (Split::Val, sample(seen.clone(), cfg.val_pairs, &mut rng)),
        (Split::Test, sample(seen, cfg.test_pairs, &mut rng)),
    ];
    if cfg.unseen_users > 0 {
        splits.push((
            Split::UnseenTrain,
            sample(unseen.clone(), cfg.unseen_train_pairs, &mut rng),
        ));
        splits.push((
            Split::UnseenTest,
            sample(unseen, cfg.unseen_test_pairs, &mut rng),
        ));
    }
    splits.retain(|(_, rows)| !rows.is_empty());
    let users = (0..n_total).map(user_id).collect();
    let meta = serde_json::json!({ "synthetic": cfg });
    Ok(Synthetic {
        items,
        prompts,
        splits,
        truth: TrainedModel::new(truth, users, meta),
    })
}

impl Synthetic {
    /// Writes the dataset directory, the ground truth under `DIR/truth`, and a dataset card.
    pub fn write(&self, dir: &std::path::Path, cfg: &SynthConfig) -> Result<()> {
        use pal_format::dataset::{CARD_FILE, ITEMS_FILE, PROMPTS_FILE};
        std::fs::create_dir_all(dir).map_err(|e| crate::PalError::io(dir, e))?;
        self.items.save(&dir.join(ITEMS_FILE))?;
        if let Some(p) = &self.prompts {
            p.save(&dir.join(PROMPTS_FILE))?;
        }
        for (split, rows) in &self.splits {
            pal_format::comparison::write_jsonl(&dir.join(split.file_name()), rows)?;
        }
        self.truth.save(&dir.join("truth"))?;
        let sizes: serde_json::Map<_, _> = self
            .splits
            .iter()
            .map(|(s, r)| (s.file_name().to_string(), r.len().into()))
            .collect();
        let card = serde_json::json!({
            "name": "synthetic",
            "source": "generated: preferences drawn from a known PAL model (ground truth in truth/)",
            "license": "CC0-1.0",
            "rule": "P(left) = σ(truth log-odds); truth scale calibrated so log-odds have sd = signal",
            "config": cfg,
            "sizes": sizes,
            "seen_users": cfg.users,
            "unseen_users": cfg.unseen_users,
        });
        let text = serde_json::to_string_pretty(&card).expect("card serialises");
        pal_format::write_atomic(&dir.join(CARD_FILE), text.as_bytes())
    }
}
