//! The fused CPU engine for PAL-B training: one flat parameter buffer, forward passes on `gemm`,
//! a hand-derived backward pass and a one-pass AdamW, with no autodiff graph and no per-step
//! allocations once buffers have grown. Held to burn's training by `tests/fused.rs`.

mod adamw;
mod head;
mod kernels;
mod mlp;
mod params;

use std::path::Path;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::{ModelConfig, Variant};
use crate::dataset::Encoded;
use crate::error::{PalError, Result};
use crate::model::Group;
use crate::reference::PalWeights;
use adamw::Rates;
use head::{HeadGrads, HeadInput};
use mlp::MlpCache;
use params::Layout;

/// Why `config` cannot train on the fused engine, if it cannot.
pub fn unsupported(config: &ModelConfig) -> Option<&'static str> {
    if config.variant != Variant::B {
        Some("the fused engine implements PAL-B; PAL-A trains on burn")
    } else if config.dropout > 0.0 {
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
    item: MlpCache,
    prompt: Vec<MlpCache>,
    df: Vec<f32>,
    dg: Vec<Vec<f32>>,
    dtheta: Vec<f32>,
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

/// PAL-B parameters with AdamW state, trained by hand-derived gradients.
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
    /// Starts from `w`, training `groups` with their (learning rate, weight decay).
    pub fn new(w: &PalWeights, groups: &[(Group, f64, f64)]) -> Result<Self> {
        if let Some(why) = unsupported(&w.config) {
            return Err(PalError::Config {
                field: "engine",
                reason: why.into(),
            });
        }
        let (layout, params) = params::flatten(w).ok_or(PalError::Config {
            field: "engine",
            reason: "the fused engine needs prompt maps".into(),
        })?;
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
        })
    }

    /// The current weights.
    pub fn weights(&self) -> PalWeights {
        params::unflatten(&self.layout, &self.params, &self.config)
    }

    /// Gathers the batch `idx` of `enc` and runs every map forward.
    fn forward(&mut self, tables: HostTables<'_>, enc: &Encoded, idx: &[usize]) -> Result<()> {
        let n = idx.len();
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
        check("prompt", tables.prompts, &enc.prompts)?;
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
        gather(
            tables.prompts,
            idx.iter().map(|&i| enc.prompts[i]),
            n,
            &mut ws.prompts,
        );
        let k = self.layout.k;
        ws.theta.clear();
        for &i in idx {
            let at = self.layout.users + enc.users[i] as usize * k;
            ws.theta.extend_from_slice(&self.params[at..at + k]);
        }
        ws.labels.clear();
        ws.labels
            .extend(idx.iter().map(|&i| f32::from(enc.labels[i])));
        let t1 = Instant::now();
        ws.item
            .forward(&self.params, &self.layout.item, &ws.items, 2 * n);
        for (cache, map) in ws.prompt.iter_mut().zip(&self.layout.prompt) {
            cache.forward(&self.params, map, &ws.prompts, n);
        }
        self.profile.gather += t1 - t0;
        self.profile.forward += t1.elapsed();
        Ok(())
    }

    /// Log-odds of "left preferred" for the comparisons `idx` of `enc`.
    pub fn logits(
        &mut self,
        tables: HostTables<'_>,
        enc: &Encoded,
        idx: &[usize],
    ) -> Result<Vec<f32>> {
        self.forward(tables, enc, idx)?;
        let (ws, lay) = (&self.ws, &self.layout);
        let n = idx.len();
        let g: Vec<&[f32]> = ws
            .prompt
            .iter()
            .zip(&lay.prompt)
            .map(|(c, m)| c.output(m, n))
            .collect();
        let inp = HeadInput {
            theta: &ws.theta,
            g: &g,
            f: ws.item.output(&lay.item, 2 * n),
            log_scale: self.params[lay.scale],
            d: lay.item.d_out(),
        };
        let mut out = vec![0.0; n];
        head::logits(&inp, lay.k, &mut out);
        Ok(out)
    }

    /// One training step on the comparisons `idx` of `enc`; returns the batch's mean loss.
    /// A non-finite loss is returned without updating anything.
    pub fn step(&mut self, tables: HostTables<'_>, enc: &Encoded, idx: &[usize]) -> Result<f32> {
        self.forward(tables, enc, idx)?;
        let t0 = Instant::now();
        let n = idx.len();
        let lay = &self.layout;
        let (k, d) = (lay.k, lay.item.d_out());
        let ws = &mut self.ws;
        ws.df.resize(2 * n * d, 0.0);
        ws.dtheta.resize(n * k, 0.0);
        let g: Vec<&[f32]> = ws
            .prompt
            .iter()
            .zip(&lay.prompt)
            .map(|(c, m)| c.output(m, n))
            .collect();
        let inp = HeadInput {
            theta: &ws.theta,
            g: &g,
            f: ws.item.output(&lay.item, 2 * n),
            log_scale: self.params[lay.scale],
            d,
        };
        let (loss, dscale) = head::backward(
            &inp,
            &ws.labels,
            self.config.norm_bound,
            HeadGrads {
                df: &mut ws.df[..2 * n * d],
                dg: &mut ws.dg,
                dtheta: &mut ws.dtheta[..n * k],
            },
        );
        if !loss.is_finite() {
            return Ok(loss);
        }
        let trains = |g: Group| self.groups.iter().any(|s| s.group == g);
        let users = lay.group(Group::Users);
        self.grads[users.clone()].fill(0.0);
        for (j, &i) in idx.iter().enumerate() {
            let at = lay.users + enc.users[i] as usize * k;
            for c in 0..k {
                self.grads[at + c] += ws.dtheta[j * k + c];
            }
        }
        self.grads[lay.scale] = dscale;
        let t1 = Instant::now();
        if trains(Group::ItemMap) {
            ws.item.backward(
                &self.params,
                &mut self.grads,
                &lay.item,
                &ws.items,
                2 * n,
                &mut ws.df,
            );
        }
        if trains(Group::Head) {
            for ((cache, map), dg) in ws.prompt.iter_mut().zip(&lay.prompt).zip(ws.dg.iter_mut()) {
                cache.backward(&self.params, &mut self.grads, map, &ws.prompts, n, dg);
            }
        }
        let t2 = Instant::now();
        for s in &mut self.groups {
            let r = lay.group(s.group);
            s.steps += 1;
            adamw::step(
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

    /// Writes the optimizer state (moments and step counts) as safetensors.
    pub fn save_state(&self, path: &Path) -> Result<Vec<u8>> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (m, v) = (bytes(&self.m), bytes(&self.v));
        let shape = vec![self.m.len()];
        fn view(b: &[u8], shape: Vec<usize>) -> TensorView<'_> {
            TensorView::new(Dtype::F32, shape, b).expect("a view sized from its data")
        }
        let steps: Vec<String> = self.groups.iter().map(|s| s.steps.to_string()).collect();
        let meta = std::collections::HashMap::from([("steps".to_string(), steps.join(","))]);
        safetensors::serialize(
            [("m", view(&m, shape.clone())), ("v", view(&v, shape))],
            Some(meta),
        )
        .map_err(|e| PalError::file(path, format!("saving optimizer state: {e}")))
    }

    /// Restores what [`FusedTrainer::save_state`] wrote; a state of another shape is an error.
    pub fn load_state(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        use safetensors::SafeTensors;
        let bad = |why: String| PalError::file(path, format!("optimizer state: {why}"));
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let read = |name: &str| -> Result<Vec<f32>> {
            let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.len() != self.params.len() {
                return Err(bad(format!(
                    "{name} has {} values, the model has {}",
                    v.len(),
                    self.params.len()
                )));
            }
            Ok(v)
        };
        let (m, v) = (read("m")?, read("v")?);
        let steps: Vec<u64> = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("steps"))
            .ok_or_else(|| bad("no step counts".into()))?
            .split(',')
            .map(|s| s.parse().map_err(|_| bad(format!("bad step count {s:?}"))))
            .collect::<Result<_>>()?;
        if steps.len() != self.groups.len() {
            return Err(bad(format!(
                "{} groups saved, {} trained",
                steps.len(),
                self.groups.len()
            )));
        }
        for (s, t) in self.groups.iter_mut().zip(steps) {
            s.steps = t;
        }
        (self.m, self.v) = (m, v);
        Ok(())
    }
}
