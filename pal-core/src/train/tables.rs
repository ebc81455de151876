//! Embedding tables on a device (with host copies for the fused engine), batch gathering,
//! batched prediction and the log-loss/accuracy score.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::fused::{HostTables, Rows};
use crate::model::{Batch, PalModel};
use crate::reference::sigmoid;
use pal_format::dataset::{Dataset, Encoded};

/// Embedding tables on a device, gathered per batch, with host copies for the fused engine.
pub struct Tables {
    items: Tensor<2>,
    prompts: Option<Tensor<2>>,
    device: Device,
    host_items: (Vec<f32>, usize),
    host_prompts: (Vec<f32>, usize),
}

fn table(data: &[f32], dim: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(data.to_vec(), [data.len() / dim, dim]),
        device,
    )
}

fn ints(v: &[u32], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

impl Tables {
    pub fn new(data: &Dataset, device: &Device) -> Self {
        Self {
            items: table(data.items.data(), data.items.dim(), device),
            prompts: data
                .prompts
                .as_ref()
                .map(|p| table(p.data(), p.dim(), device)),
            device: device.clone(),
            host_items: (data.items.data().to_vec(), data.items.dim()),
            host_prompts: data
                .prompts
                .as_ref()
                .map_or((vec![], 1), |p| (p.data().to_vec(), p.dim())),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The host copies of both tables.
    pub fn host(&self) -> HostTables<'_> {
        HostTables {
            items: Rows {
                data: &self.host_items.0,
                dim: self.host_items.1,
            },
            prompts: Rows {
                data: &self.host_prompts.0,
                dim: self.host_prompts.1,
            },
        }
    }

    /// The rows `idx` of `enc` as a batch.
    pub fn batch(&self, enc: &Encoded, idx: &[usize]) -> Batch {
        let pick = |v: &[u32]| ints(&idx.iter().map(|&i| v[i]).collect::<Vec<_>>(), &self.device);
        let labels: Vec<f32> = idx.iter().map(|&i| enc.labels[i] as f32).collect();
        let n = labels.len();
        Batch {
            users: pick(&enc.users),
            prompts: self
                .prompts
                .as_ref()
                .map(|p| p.clone().select(0, pick(&enc.prompts))),
            left: self.items.clone().select(0, pick(&enc.left)),
            right: self.items.clone().select(0, pick(&enc.right)),
            labels: Tensor::from_data(TensorData::new(labels, [n]), &self.device),
        }
    }
}

/// Log-odds of "left preferred" for every comparison, computed in batches without autodiff.
pub fn predict(model: &PalModel, tables: &Tables, enc: &Encoded) -> Vec<f32> {
    let mut out = Vec::with_capacity(enc.len());
    let all: Vec<usize> = (0..enc.len()).collect();
    for chunk in all.chunks(4096) {
        let logits = model.logits(&tables.batch(enc, chunk));
        out.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("float tensor"),
        );
    }
    out
}

/// Mean log-loss and accuracy of logits against labels.
pub fn score(logits: &[f32], labels: &[u8]) -> (f32, f32) {
    let n = labels.len().max(1) as f32;
    let mut loss = 0.0f64;
    let mut correct = 0usize;
    for (&z, &y) in logits.iter().zip(labels) {
        let p = sigmoid(z).clamp(1e-7, 1.0 - 1e-7) as f64;
        loss -= if y == 1 { p.ln() } else { (1.0 - p).ln() };
        correct += usize::from((z > 0.0) == (y == 1));
    }
    ((loss / n as f64) as f32, correct as f32 / n)
}

/// Expected calibration error of `P(left) = σ(logit)`: predictions in `bins` equal-width bins
/// of [0, 1], each bin's |mean predicted P − share of left wins| weighted by its size.
pub fn ece(logits: &[f32], labels: &[u8], bins: usize) -> f32 {
    let bins = bins.max(1);
    let mut sum_p = vec![0.0f64; bins];
    let mut wins = vec![0.0f64; bins];
    let mut count = vec![0usize; bins];
    for (&z, &y) in logits.iter().zip(labels) {
        let p = sigmoid(z) as f64;
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sum_p[b] += p;
        wins[b] += f64::from(y);
        count[b] += 1;
    }
    let n = labels.len().max(1) as f64;
    let e: f64 = (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (sum_p[b] - wins[b]).abs() / n)
        .sum();
    e as f32
}

/// Log-loss, accuracy and calibration of logits against labels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metrics {
    pub log_loss: f32,
    pub accuracy: f32,
    /// [`ece`] with 10 bins.
    pub ece: f32,
}

impl Metrics {
    pub fn of(logits: &[f32], labels: &[u8]) -> Self {
        let (log_loss, accuracy) = score(logits, labels);
        Self {
            log_loss,
            accuracy,
            ece: ece(logits, labels, 10),
        }
    }
}
