//! The fused CPU training engine for PAL-A and PAL-B: one flat parameter buffer, forward passes
//! on `gemm`, a hand-derived backward pass and a one-pass AdamW, with no autodiff graph and no
//! per-step allocations once buffers have grown. Held to the reference and to burn's training by
//! `tests/fused.rs`.

mod adamw;
mod head;
mod ideal;
mod kernels;
mod mlp;
mod params;
mod state;

use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::{IdealPoint, ModelConfig, Variant};
use crate::error::{PalError, Result};
use crate::model::Group;
use crate::reference::{ContentPrior, PalWeights};
use adamw::Rates;
use head::{HeadGrads, HeadInput};
use mlp::MlpCache;
use pal_cpu::{Precision, Products};
use pal_format::dataset::Encoded;
use params::Layout;

/// Why `config` cannot train on the fused engine, if it cannot.
pub fn unsupported(config: &ModelConfig) -> Option<&'static str> {
    if config.dropout > 0.0 {
        Some("the fused engine has no dropout; models with dropout train on burn")
    } else {
        None
    }
}

/// A row-major embedding table.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub dim: usize,
}

/// Item and prompt tables a batch's indices point into.
#[derive(Debug, Clone, Copy)]
pub struct HostTables<'a> {
    pub items: Rows<'a>,
    pub prompts: Rows<'a>,
}

/// One optimizer group: its learning rate, weight decay and update count.
#[derive(Debug, Clone)]
struct GroupState {
    group: Group,
    rates: Rates,
    steps: u64,
}

#[derive(Debug, Default)]
struct Workspace {
    items: Vec<f32>,
    prompts: Vec<f32>,
    theta: Vec<f32>,
    labels: Vec<f32>,
    /// The content prior's `(cos(x_l, c), cos(x_r, c))` per comparison.
    sims: Vec<f32>,
    /// PAL-A: simplex weights `[B, K]`, prototype mixtures `[B, proto_dim]` and their gradients.
    weights: Vec<f32>,
    mix: Vec<f32>,
    dpoints: Vec<f32>,
    dmix: Vec<f32>,
    dw: Vec<f32>,
    item: MlpCache,
    prompt: Vec<MlpCache>,
    df: Vec<f32>,
    dg: Vec<Vec<f32>>,
    dtheta: Vec<f32>,
    /// Residual models: the batch users' `δ` rows `[B, d]`, PAL-A's points `a + δ` and the
    /// gradient for the `δ` rows.
    resid: Vec<f32>,
    apoints: Vec<f32>,
    dres: Vec<f32>,
}

/// Where the fused steps' time went (summed over steps).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepProfile {
    pub steps: u64,
    /// Gathering embedding rows and user logits.
    pub gather: Duration,
    /// The maps' forward passes.
    pub forward: Duration,
    /// Head forward and backward (softmax, cosine, loss).
    pub head: Duration,
    /// The maps' backward passes.
    pub backward: Duration,
    pub optimizer: Duration,
}

/// A PAL model's parameters with AdamW state, trained by hand-derived gradients.
#[derive(Debug)]
pub struct FusedTrainer {
    config: ModelConfig,
    layout: Layout,
    params: Vec<f32>,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    groups: Vec<GroupState>,
    ws: Workspace,
    profile: StepProfile,
    /// The kernel path and precision of every product.
    products: Products,
}

/// Copies rows `idx` of `table` into `out` (parallel for large batches).
fn gather(table: Rows<'_>, idx: impl Iterator<Item = u32> + Clone, n: usize, out: &mut Vec<f32>) {
    let dim = table.dim;
    out.resize(n * dim, 0.0);
    let idx: Vec<u32> = idx.collect();
    out[..n * dim]
        .par_chunks_mut(dim)
        .zip(idx.par_iter())
        .for_each(|(row, &i)| {
            let i = i as usize;
            row.copy_from_slice(&table.data[i * dim..(i + 1) * dim]);
        });
}

impl FusedTrainer {
    /// Starts from `w`, training `groups` with their (learning rate, weight decay), with
    /// products at `precision` on the process's kernel path ([`pal_cpu::chosen`]).
    pub fn new(w: &PalWeights, groups: &[(Group, f64, f64)], precision: Precision) -> Result<Self> {
        let products = Products::new(precision).map_err(|e| PalError::Config {
            field: "PAL_CPU_KERNELS",
            reason: e.to_string(),
        })?;
        Self::with_products(w, groups, products)
    }

    /// As [`FusedTrainer::new`] on a given kernel path (tests run every path this CPU has).
    pub fn with_products(
        w: &PalWeights,
        groups: &[(Group, f64, f64)],
        products: Products,
    ) -> Result<Self> {
        if let Some(why) = unsupported(&w.config) {
            return Err(PalError::Config {
                field: "engine",
                reason: why.into(),
            });
        }
        let (layout, params) = params::flatten(w);
        let len = params.len();
        let ws = Workspace {
            prompt: (0..layout.k).map(|_| MlpCache::default()).collect(),
            dg: vec![Vec::new(); layout.k],
            ..Workspace::default()
        };
        Ok(Self {
            config: w.config.clone(),
            layout,
            params,
            grads: vec![0.0; len],
            m: vec![0.0; len],
            v: vec![0.0; len],
            groups: groups
                .iter()
                .map(|&(group, lr, weight_decay)| GroupState {
                    group,
                    rates: Rates { lr, weight_decay },
                    steps: 0,
                })
                .collect(),
            ws,
            profile: StepProfile::default(),
            products,
        })
    }

    /// The kernel path and precision of this trainer's products.
    pub fn products(&self) -> Products {
        self.products
    }

    /// The current weights.
    pub fn weights(&self) -> PalWeights {
        params::unflatten(&self.layout, &self.params, &self.config)
    }

    /// Gathers the batch `idx` of `enc` and runs every map forward.
    fn forward(&mut self, tables: HostTables<'_>, enc: &Encoded, idx: &[usize]) -> Result<()> {
        let (n, rows) = (idx.len(), self.item_rows(idx.len()));
        let check = |name: &'static str, rows: Rows<'_>, v: &[u32]| -> Result<()> {
            let have = rows.data.len() / rows.dim.max(1);
            match idx.iter().map(|&i| v[i] as usize).find(|&r| r >= have) {
                Some(r) => Err(PalError::Data(format!(
                    "{name} index {r} is outside the table of {have} rows"
                ))),
                None => Ok(()),
            }
        };
        check("item", tables.items, &enc.left)?;
        check("item", tables.items, &enc.right)?;
        if self.config.variant == Variant::B {
            check("prompt", tables.prompts, &enc.prompts)?;
        }
        if let Some(&u) = idx
            .iter()
            .map(|&i| &enc.users[i])
            .find(|&&u| u as usize >= self.layout.n_users)
        {
            return Err(PalError::Data(format!(
                "user index {u} is outside the model's {} users",
                self.layout.n_users
            )));
        }
        let t0 = Instant::now();
        let ws = &mut self.ws;
        let pairs = idx
            .iter()
            .map(|&i| enc.left[i])
            .chain(idx.iter().map(|&i| enc.right[i]));
        gather(tables.items, pairs, 2 * n, &mut ws.items);
        let k = self.layout.k;
        ws.theta.clear();
        for &i in idx {
            let at = self.layout.users + enc.users[i] as usize * k;
            ws.theta.extend_from_slice(&self.params[at..at + k]);
        }
        ws.labels.clear();
        ws.labels
            .extend(idx.iter().map(|&i| f32::from(enc.labels[i])));
        let lay = &self.layout;
        if let Some(at) = lay.residuals {
            let d = lay.d;
            ws.resid.clear();
            for &i in idx {
                let r = at + enc.users[i] as usize * d;
                ws.resid.extend_from_slice(&self.params[r..r + d]);
            }
        }
        if self.config.variant == Variant::B {
            let prompts = idx.iter().map(|&i| enc.prompts[i]);
            gather(tables.prompts, prompts, n, &mut ws.prompts);
            if self.config.content_prior {
                head::prior_sims(&ws.items, &ws.prompts, tables.prompts.dim, &mut ws.sims);
            }
        } else {
            // PAL-A: w = softmax(θ), mixtures w·P; f(w·P) runs with the items as rows 2B..3B.
            ws.weights.resize(n * k, 0.0);
            for (w, t) in ws.weights.chunks_mut(k).zip(ws.theta.chunks(k)) {
                head::softmax(t, w);
            }
            ws.mix.resize(n * lay.proto_dim, 0.0);
            kernels::matmul(
                self.products,
                &ws.weights,
                &self.params[lay.protos.clone()],
                &mut ws.mix,
                k,
            );
            if rows == 3 * n {
                ws.items.extend_from_slice(&ws.mix);
            }
        }
        let t1 = Instant::now();
        ws.item
            .forward(self.products, &self.params, &lay.item, &ws.items, rows);
        for (cache, map) in ws.prompt.iter_mut().zip(&lay.prompt) {
            cache.forward(self.products, &self.params, map, &ws.prompts, n);
        }
        if self.config.variant == Variant::A && lay.residuals.is_some() {
            // PAL-A's points plus the users' residuals.
            let d = lay.d;
            let base: &[f32] = match self.config.ideal_point {
                IdealPoint::FPw => &ws.item.output(&lay.item, rows)[2 * n * d..],
                IdealPoint::Pw => &ws.mix[..n * d],
            };
            ws.apoints.clear();
            ws.apoints
                .extend(base.iter().zip(&ws.resid).map(|(a, r)| a + r));
        }
        self.profile.gather += t1 - t0;
        self.profile.forward += t1.elapsed();
        Ok(())
    }

    /// Rows of the last item-map pass (PAL-A `f(Pw)` adds the B mixtures).
    fn item_rows(&self, n: usize) -> usize {
        match (self.config.variant, self.config.ideal_point) {
            (Variant::A, IdealPoint::FPw) => 3 * n,
            _ => 2 * n,
        }
    }

    /// PAL-A's head input after [`FusedTrainer::forward`].
    fn ideal_input(&self, n: usize) -> ideal::IdealInput<'_> {
        let (ws, lay) = (&self.ws, &self.layout);
        let d = lay.item.d_out();
        let f = ws.item.output(&lay.item, self.item_rows(n));
        ideal::IdealInput {
            f: &f[..2 * n * d],
            points: match (self.config.ideal_point, lay.residuals) {
                (_, Some(_)) => &ws.apoints[..n * d],
                (IdealPoint::FPw, None) => &f[2 * n * d..],
                (IdealPoint::Pw, None) => &ws.mix[..n * d],
            },
            log_scale: self.params[lay.scale],
            link: self.config.link,
            d,
        }
    }

    /// Log-odds of "left preferred" for the comparisons `idx` of `enc`.
    pub fn logits(
        &mut self,
        tables: HostTables<'_>,
        enc: &Encoded,
        idx: &[usize],
    ) -> Result<Vec<f32>> {
        self.forward(tables, enc, idx)?;
        let n = idx.len();
        let mut out = vec![0.0; n];
        if self.config.variant == Variant::A {
            ideal::logits(&self.ideal_input(n), &mut out);
            return Ok(out);
        }
        head::logits(&self.reward_input(n), self.layout.k, &mut out);
        Ok(out)
    }

    /// PAL-B's head input after [`FusedTrainer::forward`].
    fn reward_input(&self, n: usize) -> HeadInput<'_> {
        let (ws, lay) = (&self.ws, &self.layout);
        HeadInput {
            theta: &ws.theta,
            g: ws
                .prompt
                .iter()
                .zip(&lay.prompt)
                .map(|(c, m)| c.output(m, n))
                .collect(),
            f: ws.item.output(&lay.item, 2 * n),
            log_scale: self.params[lay.scale],
            prior: lay.prior.map(|p| {
                (
                    ContentPrior::from_slice(&self.params[p..]),
                    &ws.sims[..2 * n],
                )
            }),
            residual: lay.residuals.map(|_| &ws.resid[..n * lay.d]),
            d: lay.item.d_out(),
        }
    }

    /// PAL-B head: loss and the scalars' gradients; fills `df`, `dg` and `dtheta`.
    fn reward_head(&mut self, n: usize) -> head::HeadOut {
        let (k, d) = (self.layout.k, self.layout.item.d_out());
        let mut df = std::mem::take(&mut self.ws.df);
        let mut dg = std::mem::take(&mut self.ws.dg);
        let mut dtheta = std::mem::take(&mut self.ws.dtheta);
        let mut dres = std::mem::take(&mut self.ws.dres);
        df.resize(2 * n * d, 0.0);
        let out = head::backward(
            &self.reward_input(n),
            &self.ws.labels,
            self.config.norm_bound,
            HeadGrads {
                df: &mut df[..2 * n * d],
                dg: &mut dg,
                dtheta: &mut dtheta[..n * k],
                dresidual: &mut dres,
            },
        );
        (self.ws.df, self.ws.dg, self.ws.dtheta, self.ws.dres) = (df, dg, dtheta, dres);
        out
    }

    /// PAL-A head: loss, `d loss/d log_scale` (PAL-A has no content prior); fills `df` (for f's
    /// rows, the ideal points' included under `f(Pw)`) and `dpoints`.
    fn ideal_head(&mut self, n: usize) -> head::HeadOut {
        let d = self.layout.item.d_out();
        let rows = self.item_rows(n);
        let mut df = std::mem::take(&mut self.ws.df);
        let mut dpoints = std::mem::take(&mut self.ws.dpoints);
        df.resize(rows * d, 0.0);
        dpoints.resize(n * d, 0.0);
        let (loss, dlog_scale) = ideal::backward(
            &self.ideal_input(n),
            &self.ws.labels,
            self.config.norm_bound,
            &mut df[..2 * n * d],
            &mut dpoints,
        );
        if rows == 3 * n {
            df[2 * n * d..].copy_from_slice(&dpoints);
        }
        if self.layout.residuals.is_some() {
            // a' = a + δ: δ gets the points' gradient.
            self.ws.dres.clear();
            self.ws.dres.extend_from_slice(&dpoints);
        }
        (self.ws.df, self.ws.dpoints) = (df, dpoints);
        head::HeadOut {
            loss,
            dlog_scale,
            dprior: [0.0; 3],
        }
    }

    /// PAL-A backward below the head: through f (and its ideal-point rows), the mixtures `w·P`
    /// and the softmax, into the item map, prototype and `dtheta` gradients.
    fn ideal_backward(&mut self, n: usize) {
        let (lay, ws) = (&self.layout, &mut self.ws);
        let k = lay.k;
        let fpw = self.config.ideal_point == IdealPoint::FPw;
        let dx = fpw.then_some((2 * n, &mut ws.dmix));
        ws.item.backward(
            self.products,
            &self.params,
            &mut self.grads,
            &lay.item,
            &ws.items,
            &mut ws.df,
            dx,
        );
        let dmix: &[f32] = if fpw { &ws.dmix } else { &ws.dpoints };
        kernels::weight_grad(
            self.products,
            &ws.weights,
            dmix,
            &mut self.grads[lay.protos.clone()],
            k,
        );
        ws.dw.resize(n * k, 0.0);
        kernels::input_grad(
            self.products,
            dmix,
            &self.params[lay.protos.clone()],
            &mut ws.dw,
            lay.proto_dim,
        );
        head::softmax_backward(&ws.weights, &ws.dw, &mut ws.dtheta[..n * k], k);
    }

    /// One training step on the comparisons `idx` of `enc`; returns the batch's mean loss.
    /// A non-finite loss is returned without updating anything.
    pub fn step(&mut self, tables: HostTables<'_>, enc: &Encoded, idx: &[usize]) -> Result<f32> {
        self.forward(tables, enc, idx)?;
        let t0 = Instant::now();
        let n = idx.len();
        let k = self.layout.k;
        self.ws.dtheta.resize(n * k, 0.0);
        let head::HeadOut {
            mut loss,
            dlog_scale: dscale,
            dprior,
        } = match self.config.variant {
            Variant::A => self.ideal_head(n),
            Variant::B => self.reward_head(n),
        };
        if !loss.is_finite() {
            return Ok(loss);
        }
        let trains = |g: Group| self.groups.iter().any(|s| s.group == g);
        let t1 = Instant::now();
        if self.config.variant == Variant::A {
            self.ideal_backward(n);
        } else {
            let (lay, ws) = (&self.layout, &mut self.ws);
            if trains(Group::ItemMap) {
                ws.item.backward(
                    self.products,
                    &self.params,
                    &mut self.grads,
                    &lay.item,
                    &ws.items,
                    &mut ws.df,
                    None,
                );
            }
            if trains(Group::Head) {
                for ((cache, map), dg) in
                    ws.prompt.iter_mut().zip(&lay.prompt).zip(ws.dg.iter_mut())
                {
                    cache.backward(
                        self.products,
                        &self.params,
                        &mut self.grads,
                        map,
                        &ws.prompts,
                        dg,
                        None,
                    );
                }
            }
        }
        let lay = &self.layout;
        self.grads[lay.group(Group::Users)].fill(0.0);
        for (j, &i) in idx.iter().enumerate() {
            let at = lay.users + enc.users[i] as usize * k;
            for c in 0..k {
                self.grads[at + c] += self.ws.dtheta[j * k + c];
            }
        }
        if let (Some(at), Some(lambda)) = (lay.residuals, self.config.residual) {
            // The batch rows' dδ, then the penalty λ Σ‖δ‖² / N over every user.
            let d = lay.d;
            for (j, &i) in idx.iter().enumerate() {
                let r = at + enc.users[i] as usize * d;
                for c in 0..d {
                    self.grads[r + c] += self.ws.dres[j * d + c];
                }
            }
            let coef = lambda / enc.len().max(1) as f32;
            let table = at..at + lay.n_users * d;
            let mut sq = 0.0f64;
            for (g, &v) in self.grads[table.clone()]
                .iter_mut()
                .zip(&self.params[table])
            {
                *g += 2.0 * coef * v;
                sq += (v * v) as f64;
            }
            loss += coef * sq as f32;
        }
        self.grads[lay.scale] = dscale;
        if let Some(p) = lay.prior {
            self.grads[p..p + 3].copy_from_slice(&dprior);
        }
        let t2 = Instant::now();
        for s in &mut self.groups {
            let r = lay.group(s.group);
            s.steps += 1;
            adamw::step(
                self.products.path(),
                &mut self.params[r.clone()],
                &self.grads[r.clone()],
                &mut self.m[r.clone()],
                &mut self.v[r],
                s.steps,
                s.rates,
            );
        }
        let p = &mut self.profile;
        p.steps += 1;
        p.head += t1 - t0;
        p.backward += t2 - t1;
        p.optimizer += t2.elapsed();
        Ok(loss)
    }

    /// Where the time of all steps so far went (forward and gather include `logits` calls).
    pub fn profile(&self) -> StepProfile {
        self.profile
    }

    /// The gradient of the last [`FusedTrainer::step`], laid out as weights.
    pub fn last_gradient(&self) -> PalWeights {
        params::unflatten(&self.layout, &self.grads, &self.config)
    }
}
