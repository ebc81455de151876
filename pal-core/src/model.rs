//! PAL-A and PAL-B as a burn module: batched forward and loss, built from and read back into
//! [`PalWeights`](crate::reference::PalWeights) so the reference math stays the single spec.

use burn::module::{Module, Param, ParamId};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{gelu, log_sigmoid, sigmoid, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{IdealPoint, Link, ModelConfig, Variant};
use crate::reference::{
    COS_EPS, ContentPrior, DIST_EPS, Head, Linear, MAX_SCALE, MAX_SHARPNESS, Mlp, PalWeights,
};

/// One linear layer for a stack of K maps: weight `[K, in, out]`, bias `[K, 1, out]`.
#[derive(Module, Debug)]
pub struct StackLinear {
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<3>>,
}

/// K MLPs with identical shapes evaluated together (K = 1 for the item map f).
#[derive(Module, Debug)]
pub struct MlpStack {
    layers: Vec<StackLinear>,
    dropout: Dropout,
}

/// A batch of comparisons as tensors (`labels`: 1.0 = left preferred).
#[derive(Debug, Clone)]
pub struct Batch {
    pub users: Tensor<1, Int>,
    /// `[B, D_prompt]`; PAL-A ignores it.
    pub prompts: Option<Tensor<2>>,
    pub left: Tensor<2>,
    pub right: Tensor<2>,
    pub labels: Tensor<1>,
}

/// The PAL model on a burn device.
#[derive(Module, Debug)]
pub struct PalModel {
    item_map: MlpStack,
    prompt_maps: Option<MlpStack>,
    prototypes: Option<Param<Tensor<2>>>,
    user_logits: Param<Tensor<2>>,
    log_scale: Param<Tensor<1>>,
    /// The content prior's `[b, ln a, t]` (only with `config.content_prior`).
    prior: Option<Param<Tensor<1>>>,
    /// Per-user residuals `[n_users, d]` (only with `config.residual`).
    residuals: Option<Param<Tensor<2>>>,
    #[module(skip)]
    config: ModelConfig,
}

/// Which parameters a training run updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    ItemMap,
    Head,
    Users,
    Scale,
}

/// Hands out stable parameter ids so optimizer state survives a save/load cycle.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> ParamId {
        self.0 += 1;
        ParamId::from(self.0)
    }
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn param<const D: usize>(ids: &mut Ids, t: Tensor<D>) -> Param<Tensor<D>> {
    let t = if t.device().is_autodiff() {
        t.require_grad()
    } else {
        t
    };
    Param::initialized(ids.next(), t)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor")
}

impl MlpStack {
    fn new(maps: &[&Mlp], dropout: f64, ids: &mut Ids, device: &Device) -> Self {
        let k = maps.len();
        let layers = (0..maps[0].layers.len())
            .map(|i| {
                let (d_in, d_out) = (maps[0].layers[i].d_in, maps[0].layers[i].d_out);
                let w = maps
                    .iter()
                    .flat_map(|m| m.layers[i].weight.clone())
                    .collect();
                let b = maps.iter().flat_map(|m| m.layers[i].bias.clone()).collect();
                StackLinear {
                    weight: param(ids, tensor(w, [k, d_in, d_out], device)),
                    bias: param(ids, tensor(b, [k, 1, d_out], device)),
                }
            })
            .collect();
        Self {
            layers,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    /// `x`: `[1 or K, B, in]` → `[K, B, out]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let [k, _, _] = layer.weight.dims();
            let [hk, b, d] = h.dims();
            if hk != k {
                h = h.expand([k, b, d]);
            }
            h = h.matmul(layer.weight.val()) + layer.bias.val();
            if i < last {
                h = self.dropout.forward(gelu(h));
            }
        }
        h
    }

    /// Applies a single map (K = 1) to rows: `[B, in]` → `[B, out]`.
    fn forward_rows(&self, x: Tensor<2>) -> Tensor<2> {
        let [b, _] = x.dims();
        let out = self.forward(x.unsqueeze::<3>());
        let [_, _, d] = out.dims();
        out.reshape([b, d])
    }

    fn to_mlps(&self, read: &Reader<'_>) -> Vec<Mlp> {
        let [k, _, _] = self.layers[0].weight.dims();
        let mut maps = vec![Mlp { layers: vec![] }; k];
        for layer in &self.layers {
            let [_, d_in, d_out] = layer.weight.dims();
            let w = read.get(&layer.weight);
            let b = read.get(&layer.bias);
            for (j, map) in maps.iter_mut().enumerate() {
                map.layers.push(Linear {
                    d_in,
                    d_out,
                    weight: w[j * d_in * d_out..(j + 1) * d_in * d_out].to_vec(),
                    bias: b[j * d_out..(j + 1) * d_out].to_vec(),
                });
            }
        }
        maps
    }
}

/// Reads parameters as values, or as their gradients in a backward pass's result.
struct Reader<'a>(Option<&'a burn::tensor::Gradients>);

impl Reader<'_> {
    fn get<const D: usize>(&self, p: &Param<Tensor<D>>) -> Vec<f32> {
        let v = p.val();
        match self.0 {
            None => values(v),
            Some(grads) => match v.grad(grads) {
                Some(g) => values(g),
                None => vec![0.0; v.shape().num_elements()],
            },
        }
    }
}

/// Row-wise cosine of two `[B, d]` tensors → `[B]`, with the reference's norm floor.
fn row_cosine(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let [n, _] = a.dims();
    let dots = (a.clone() * b.clone()).sum_dim(1).reshape([n]);
    dots / (row_norm(a).clamp_min(COS_EPS) * row_norm(b).clamp_min(COS_EPS))
}

/// Row-wise L2 norm of `[B, d]` → `[B]`.
fn row_norm(x: Tensor<2>) -> Tensor<1> {
    let [b, _] = x.dims();
    x.powi_scalar(2).sum_dim(1).sqrt().reshape([b])
}

impl PalModel {
    /// Builds the model on `device` (use `device.autodiff()` to train) from reference weights.
    pub fn from_weights(w: &PalWeights, device: &Device) -> Self {
        let cfg = &w.config;
        let mut ids = Ids(0);
        let item_map = MlpStack::new(&[&w.item_map], cfg.dropout, &mut ids, device);
        let (prompt_maps, prototypes) = match &w.head {
            Head::PromptMaps(maps) => {
                let refs: Vec<&Mlp> = maps.iter().collect();
                (
                    Some(MlpStack::new(&refs, cfg.dropout, &mut ids, device)),
                    None,
                )
            }
            Head::Prototypes(protos) => {
                let flat = protos.iter().flatten().copied().collect();
                let shape = [protos.len(), protos[0].len()];
                (None, Some(param(&mut ids, tensor(flat, shape, device))))
            }
        };
        let n_users = w.user_logits.len();
        let logits = w.user_logits.iter().flatten().copied().collect();
        Self {
            item_map,
            prompt_maps,
            prototypes,
            user_logits: param(&mut ids, tensor(logits, [n_users, cfg.k], device)),
            log_scale: param(&mut ids, tensor(vec![w.log_scale], [1], device)),
            prior: cfg.content_prior.then(|| {
                let v = w.prior.to_array().to_vec();
                param(&mut ids, tensor(v, [3], device))
            }),
            residuals: cfg.residual.map(|_| {
                let v = w.user_residuals.iter().flatten().copied().collect();
                param(&mut ids, tensor(v, [n_users, cfg.d], device))
            }),
            config: cfg.clone(),
        }
    }

    /// Reads the weights back into plain Rust.
    pub fn to_weights(&self) -> PalWeights {
        self.read(&Reader(None))
    }

    /// The gradients of a backward pass laid out as weights (zeros where a parameter has none).
    pub fn grads_as_weights(&self, grads: &burn::tensor::Gradients) -> PalWeights {
        self.read(&Reader(Some(grads)))
    }

    fn read(&self, read: &Reader<'_>) -> PalWeights {
        let head = match (&self.prompt_maps, &self.prototypes) {
            (Some(maps), _) => Head::PromptMaps(maps.to_mlps(read)),
            (None, Some(p)) => {
                let [k, dim] = p.dims();
                let v = read.get(p);
                Head::Prototypes((0..k).map(|i| v[i * dim..(i + 1) * dim].to_vec()).collect())
            }
            (None, None) => unreachable!("a PAL model has prompt maps or prototypes"),
        };
        let [n_users, k] = self.user_logits.dims();
        let logits = read.get(&self.user_logits);
        PalWeights {
            config: self.config.clone(),
            item_map: self.item_map.to_mlps(read).remove(0),
            head,
            user_logits: (0..n_users)
                .map(|i| logits[i * k..(i + 1) * k].to_vec())
                .collect(),
            log_scale: read.get(&self.log_scale)[0],
            prior: self.prior.as_ref().map_or(ContentPrior::default(), |p| {
                ContentPrior::from_slice(&read.get(p))
            }),
            user_residuals: self.residuals.as_ref().map_or(vec![], |r| {
                let [n, d] = r.dims();
                let v = read.get(r);
                (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
            }),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Parameter ids of one training group.
    pub fn group_ids(&self, group: Group) -> Vec<ParamId> {
        let stack = |s: &MlpStack| {
            s.layers
                .iter()
                .flat_map(|l| [l.weight.id, l.bias.id])
                .collect::<Vec<_>>()
        };
        match group {
            Group::ItemMap => stack(&self.item_map),
            Group::Head => match (&self.prompt_maps, &self.prototypes) {
                (Some(m), _) => stack(m),
                (None, Some(p)) => vec![p.id],
                (None, None) => vec![],
            },
            Group::Users => std::iter::once(self.user_logits.id)
                .chain(self.residuals.as_ref().map(|r| r.id))
                .collect(),
            Group::Scale => std::iter::once(self.log_scale.id)
                .chain(self.prior.as_ref().map(|p| p.id))
                .collect(),
        }
    }

    fn scale(&self) -> Tensor<1> {
        self.log_scale.val().exp().clamp_max(MAX_SCALE)
    }

    /// Simplex weights of the batch's users, `[B, K]`.
    pub fn user_weights(&self, users: Tensor<1, Int>) -> Tensor<2> {
        softmax(self.user_logits.val().select(0, users), 1)
    }

    /// User points `[B, d]`: PAL-A ideal points or PAL-B `Σ w_k g_k(c)`.
    fn user_points(&self, weights: Tensor<2>, prompts: Option<Tensor<2>>) -> Tensor<2> {
        if let Some(protos) = &self.prototypes {
            let mix = weights.matmul(protos.val());
            return match self.config.ideal_point {
                IdealPoint::FPw => self.item_map.forward_rows(mix),
                IdealPoint::Pw => mix,
            };
        }
        let maps = self.prompt_maps.as_ref().expect("PAL-B has prompt maps");
        let prompts = prompts.expect("PAL-B batches carry prompts");
        let [b, k] = weights.dims();
        let g = maps.forward(prompts.unsqueeze::<3>()); // [K, B, d]
        let w = weights.transpose().reshape([k, b, 1]);
        let [_, _, d] = g.dims();
        (g * w).sum_dim(0).reshape([b, d])
    }

    /// Rewards `[B]` of items `[B, D]` at user points `[B, d]` (before PAL-A's scale).
    fn rewards(&self, points: Tensor<2>, fx: Tensor<2>) -> Tensor<1> {
        let [b, _] = fx.dims();
        match self.config.variant {
            Variant::A => {
                let sq = (fx - points).powi_scalar(2).sum_dim(1).reshape([b]);
                (sq + DIST_EPS).sqrt().neg()
            }
            // Residual points carry the scale: `⟨f̂(x), s·m̂ + δ⟩`.
            Variant::B if self.residuals.is_some() => {
                let dots = (fx.clone() * points).sum_dim(1).reshape([b]);
                dots / row_norm(fx).clamp_min(COS_EPS)
            }
            Variant::B => row_cosine(fx, points) * self.scale(),
        }
    }

    /// With residuals: PAL-B's scaled unit mixture `s·m̂` plus `δ_user`, PAL-A's point plus
    /// `δ_user`.
    fn add_residuals(&self, points: Tensor<2>, users: Tensor<1, Int>) -> Tensor<2> {
        let Some(r) = &self.residuals else {
            return points;
        };
        let [b, _] = points.dims();
        let points = match self.config.variant {
            Variant::B => {
                let n = row_norm(points.clone()).clamp_min(COS_EPS).reshape([b, 1]);
                points / n * self.scale().reshape([1, 1])
            }
            Variant::A => points,
        };
        points + r.val().select(0, users)
    }

    /// The residual penalty `λ Σ_i ‖δ_i‖² / n` for a mean loss over `n` training comparisons
    /// (`PalWeights::residual_penalty`); `None` without residuals.
    pub fn residual_penalty(&self, n: usize) -> Option<Tensor<1>> {
        let (r, lambda) = (self.residuals.as_ref()?, self.config.residual?);
        Some(r.val().powi_scalar(2).sum() * (lambda / n.max(1) as f32))
    }

    /// Reward difference `r_l − r_r`, log-odds of left, and user points for a batch.
    fn diffs(&self, batch: &Batch) -> (Tensor<1>, Tensor<1>, Tensor<2>) {
        let [b, _] = batch.left.dims();
        let points = self.user_points(
            self.user_weights(batch.users.clone()),
            batch.prompts.clone(),
        );
        let points = self.add_residuals(points, batch.users.clone());
        let f = self.item_map.forward_rows(Tensor::cat(
            vec![batch.left.clone(), batch.right.clone()],
            0,
        ));
        let fl = f.clone().narrow(0, 0, b);
        let fr = f.narrow(0, b, b);
        let mut diff = self.rewards(points.clone(), fl) - self.rewards(points.clone(), fr);
        if let (Some(prior), Some(prompts)) = (&self.prior, &batch.prompts) {
            let p = prior.val();
            let weight = p.clone().narrow(0, 0, 1);
            let sharpness = p.clone().narrow(0, 1, 1).exp().clamp_max(MAX_SHARPNESS);
            let threshold = p.narrow(0, 2, 1);
            let gate = |x: &Tensor<2>| {
                let cos = row_cosine(x.clone(), prompts.clone());
                sigmoid((cos - threshold.clone()) * sharpness.clone()) * weight.clone()
            };
            diff = diff + gate(&batch.left) - gate(&batch.right);
        }
        let logit = match self.config.variant {
            Variant::A => diff.clone() * self.scale(),
            Variant::B => diff.clone(),
        };
        (diff, logit, points)
    }

    /// Log-odds that the left item is preferred, `[B]`.
    pub fn logits(&self, batch: &Batch) -> Tensor<1> {
        self.diffs(batch).1
    }

    /// Mean training loss of a batch (norm bound included), a 1-element tensor.
    pub fn loss(&self, batch: &Batch) -> Tensor<1> {
        let (diff, logit, points) = self.diffs(batch);
        let y = batch.labels.clone() * 2.0 - 1.0;
        let base = match (self.config.variant, self.config.link) {
            (Variant::A, Link::Hinge) => (y * diff).neg().add_scalar(1.0).clamp_min(0.0),
            _ => log_sigmoid(y * logit).neg(),
        };
        let base = base.mean();
        match self.config.norm_bound {
            None => base,
            Some(nb) => {
                let over = row_norm(points).sub_scalar(nb.beta).clamp_min(0.0);
                base + over.mean() * nb.lambda
            }
        }
    }
}
