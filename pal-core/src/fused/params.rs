//! All of a PAL model's parameters in one flat buffer, laid out group by group (item map, head —
//! PAL-B prompt maps or PAL-A prototypes —, user logits and residuals, scale and content prior) so each optimizer group is one
//! contiguous range.

use std::ops::Range;

use crate::model::Group;
use crate::reference::{ContentPrior, Head, Linear, Mlp, PalWeights};

/// Where one linear layer's weight `[d_in, d_out]` and bias `[d_out]` live.
#[derive(Debug, Clone)]
pub(crate) struct LayerAt {
    pub w: usize,
    pub b: usize,
    pub d_in: usize,
    pub d_out: usize,
}

impl LayerAt {
    pub fn weight(&self) -> Range<usize> {
        self.w..self.w + self.d_in * self.d_out
    }

    pub fn bias(&self) -> Range<usize> {
        self.b..self.b + self.d_out
    }
}

/// Where one MLP's layers live.
#[derive(Debug, Clone)]
pub(crate) struct MlpAt {
    pub layers: Vec<LayerAt>,
}

impl MlpAt {
    pub fn d_out(&self) -> usize {
        self.layers.last().map_or(0, |l| l.d_out)
    }
}

/// Offsets of every parameter in the flat buffer.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub item: MlpAt,
    /// PAL-B prompt maps (empty for PAL-A).
    pub prompt: Vec<MlpAt>,
    /// PAL-A prototypes `[k, proto_dim]` (empty range for PAL-B).
    pub protos: Range<usize>,
    pub proto_dim: usize,
    /// User logits `[n_users, k]`.
    pub users: usize,
    pub n_users: usize,
    pub k: usize,
    /// User residuals `[n_users, d]` right after the logits (same optimizer group).
    pub residuals: Option<usize>,
    /// Preference-space dimension (the residuals' length).
    pub d: usize,
    pub scale: usize,
    /// The content prior's `[b, ln a, t]`, right after the scale (same optimizer group).
    pub prior: Option<usize>,
    pub len: usize,
}

impl Layout {
    /// The range of one optimizer group.
    pub fn group(&self, g: Group) -> Range<usize> {
        let head_start = self
            .prompt
            .first()
            .map_or(self.protos.start, |m| m.layers[0].w);
        match g {
            Group::ItemMap => 0..head_start,
            Group::Head => head_start..self.users,
            Group::Users => self.users..self.scale,
            Group::Scale => self.scale..self.len,
        }
    }
}

fn push_mlp(flat: &mut Vec<f32>, mlp: &Mlp) -> MlpAt {
    let layers = mlp
        .layers
        .iter()
        .map(|l| {
            let w = flat.len();
            flat.extend_from_slice(&l.weight);
            let b = flat.len();
            flat.extend_from_slice(&l.bias);
            LayerAt {
                w,
                b,
                d_in: l.d_in,
                d_out: l.d_out,
            }
        })
        .collect();
    MlpAt { layers }
}

fn read_mlp(flat: &[f32], at: &MlpAt) -> Mlp {
    Mlp {
        layers: at
            .layers
            .iter()
            .map(|l| Linear {
                d_in: l.d_in,
                d_out: l.d_out,
                weight: flat[l.weight()].to_vec(),
                bias: flat[l.bias()].to_vec(),
            })
            .collect(),
    }
}

/// Flattens weights of either variant.
pub(crate) fn flatten(w: &PalWeights) -> (Layout, Vec<f32>) {
    let mut flat = Vec::new();
    let item = push_mlp(&mut flat, &w.item_map);
    let (prompt, protos, proto_dim) = match &w.head {
        Head::PromptMaps(maps) => {
            let prompt = maps.iter().map(|m| push_mlp(&mut flat, m)).collect();
            (prompt, flat.len()..flat.len(), 0)
        }
        Head::Prototypes(ps) => {
            let start = flat.len();
            ps.iter().for_each(|p| flat.extend_from_slice(p));
            (vec![], start..flat.len(), ps.first().map_or(0, Vec::len))
        }
    };
    let users = flat.len();
    let k = w.config.k;
    for row in &w.user_logits {
        flat.extend_from_slice(row);
    }
    let residuals = w.config.residual.map(|_| {
        let at = flat.len();
        w.user_residuals
            .iter()
            .for_each(|r| flat.extend_from_slice(r));
        at
    });
    let scale = flat.len();
    flat.push(w.log_scale);
    let prior = w.config.content_prior.then(|| {
        flat.extend_from_slice(&w.prior.to_array());
        scale + 1
    });
    let layout = Layout {
        item,
        prompt,
        protos,
        proto_dim,
        users,
        n_users: w.user_logits.len(),
        k,
        residuals,
        d: w.config.d,
        scale,
        prior,
        len: flat.len(),
    };
    (layout, flat)
}

/// The inverse of [`flatten`].
pub(crate) fn unflatten(layout: &Layout, flat: &[f32], config: &crate::ModelConfig) -> PalWeights {
    let k = layout.k;
    PalWeights {
        config: config.clone(),
        item_map: read_mlp(flat, &layout.item),
        head: if layout.prompt.is_empty() {
            Head::Prototypes(
                flat[layout.protos.clone()]
                    .chunks(layout.proto_dim)
                    .map(<[f32]>::to_vec)
                    .collect(),
            )
        } else {
            Head::PromptMaps(layout.prompt.iter().map(|m| read_mlp(flat, m)).collect())
        },
        user_logits: flat[layout.users..layout.users + layout.n_users * k]
            .chunks(k)
            .map(<[f32]>::to_vec)
            .collect(),
        user_residuals: layout.residuals.map_or(vec![], |at| {
            flat[at..at + layout.n_users * layout.d]
                .chunks(layout.d)
                .map(<[f32]>::to_vec)
                .collect()
        }),
        log_scale: flat[layout.scale],
        prior: layout.prior.map_or(ContentPrior::default(), |p| {
            ContentPrior::from_slice(&flat[p..p + 3])
        }),
    }
}
