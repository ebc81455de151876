//! Weight files: PAL weights as named plain tensors in safetensors bytes, shapes checked on read.
//!
//! Tensor names: `item_map.{layer}.weight` `[in, out]`, `item_map.{layer}.bias` `[out]`,
//! `prompt_maps.{k}.{layer}.weight|bias` (PAL-B), `prototypes` `[K, dim]` (PAL-A),
//! `user_logits` `[users, K]`, `log_scale` `[1]`, `content_prior` `[3]` (b, ln a, t; only with the content prior), `user_residuals` `[users, d]`
//! (only with residuals).

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::config::ModelConfig;
use crate::error::{PalError, Result};
use crate::reference::{ContentPrior, Head, Linear, Mlp, PalWeights};

/// Every tensor of `w` as (name, shape, values), in file order.
pub fn named_tensors(w: &PalWeights) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    let mut mlp = |prefix: &str, m: &Mlp| {
        for (i, l) in m.layers.iter().enumerate() {
            out.push((
                format!("{prefix}.{i}.weight"),
                vec![l.d_in, l.d_out],
                l.weight.clone(),
            ));
            out.push((format!("{prefix}.{i}.bias"), vec![l.d_out], l.bias.clone()));
        }
    };
    mlp("item_map", &w.item_map);
    let protos = match &w.head {
        Head::PromptMaps(maps) => {
            maps.iter()
                .enumerate()
                .for_each(|(k, m)| mlp(&format!("prompt_maps.{k}"), m));
            None
        }
        Head::Prototypes(p) => Some(p),
    };
    if let Some(p) = protos {
        out.push(("prototypes".into(), vec![p.len(), p[0].len()], p.concat()));
    }
    let k = w.config.k;
    out.push((
        "user_logits".into(),
        vec![w.user_logits.len(), k],
        w.user_logits.concat(),
    ));
    out.push(("log_scale".into(), vec![1], vec![w.log_scale]));
    if w.config.content_prior {
        out.push(("content_prior".into(), vec![3], w.prior.to_array().to_vec()));
    }
    if w.config.residual.is_some() {
        out.push((
            "user_residuals".into(),
            vec![w.user_residuals.len(), w.config.d],
            w.user_residuals.concat(),
        ));
    }
    out
}

/// Serialises weights to safetensors bytes.
pub fn weights_to_bytes(w: &PalWeights) -> Result<Vec<u8>> {
    let tensors = named_tensors(w);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| PalError::Data(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| PalError::Data(e.to_string()))
}

/// Reads weights for `config` from safetensors bytes, checking every shape.
pub fn weights_from_bytes(
    config: &ModelConfig,
    n_users: usize,
    bytes: &[u8],
    path: &Path,
) -> Result<PalWeights> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| PalError::file(path, format!("not a safetensors file: {e}")))?;
    let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let v = st
            .tensor(name)
            .map_err(|_| PalError::file(path, format!("missing tensor `{name}`")))?;
        if v.dtype() != Dtype::F32 || v.shape() != shape {
            return Err(PalError::file(
                path,
                format!(
                    "tensor `{name}`: expected F32 {shape:?}, found {:?} {:?}",
                    v.dtype(),
                    v.shape()
                ),
            ));
        }
        let vals: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if vals.iter().any(|x| !x.is_finite()) {
            return Err(PalError::file(
                path,
                format!("tensor `{name}` has non-finite values"),
            ));
        }
        Ok(vals)
    };
    let mlp = |prefix: &str, d_in: usize| -> Result<Mlp> {
        let widths = config.widths(d_in);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Ok(Linear {
                    d_in: w[0],
                    d_out: w[1],
                    weight: get(&format!("{prefix}.{i}.weight"), &[w[0], w[1]])?,
                    bias: get(&format!("{prefix}.{i}.bias"), &[w[1]])?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Mlp { layers })
    };
    let k = config.k;
    let dim = config.prototype_dim();
    let head = match config.variant {
        crate::Variant::B => Head::PromptMaps(
            (0..k)
                .map(|i| mlp(&format!("prompt_maps.{i}"), dim))
                .collect::<Result<_>>()?,
        ),
        crate::Variant::A => {
            let p = get("prototypes", &[k, dim])?;
            Head::Prototypes(p.chunks(dim).map(<[f32]>::to_vec).collect())
        }
    };
    let logits = get("user_logits", &[n_users, k])?;
    Ok(PalWeights {
        config: config.clone(),
        item_map: mlp("item_map", config.d_item)?,
        head,
        user_logits: logits.chunks(k).map(<[f32]>::to_vec).collect(),
        log_scale: get("log_scale", &[1])?[0],
        prior: if config.content_prior {
            ContentPrior::from_slice(&get("content_prior", &[3])?)
        } else {
            ContentPrior::default()
        },
        user_residuals: if config.residual.is_some() {
            let d = config.d;
            get("user_residuals", &[n_users, d])?
                .chunks(d)
                .map(<[f32]>::to_vec)
                .collect()
        } else {
            vec![]
        },
    })
}
