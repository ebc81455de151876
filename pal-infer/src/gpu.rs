//! The GPU path: weights uploaded once; per request, the item map runs over all items, the
//! user point is mixed from prompt maps (PAL-B) or prototypes (PAL-A), and one kernel scores
//! every item. Kernels live in `shaders/`.

use pal_math::reference::{Head, Mlp};
use pal_math::{IdealPoint, PalWeights, UserPref, Variant};
use wgpu::util::{BufferInitDescriptor, DeviceExt};
use wgpu::{Buffer, BufferUsages, CommandEncoder, ComputePipeline, Device, Queue};

use crate::error::InferError;
use crate::shaders::{self, LinearParams, MixParams, ScoreParams, SortParams};

struct Layer {
    w: Buffer,
    b: Buffer,
    d_in: u32,
    d_out: u32,
}

/// The adapter a scorer runs on, as its driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu` (lavapipe, SwiftShader), …
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
}

/// A device with the model's weights and the three pipelines.
pub struct GpuScorer {
    pub weights: PalWeights,
    pub adapter_name: String,
    /// What the adapter says of itself (name, backend, kind, driver), for benchmark reports.
    pub adapter_info: AdapterSummary,
    device: Device,
    queue: Queue,
    linear: ComputePipeline,
    mix: ComputePipeline,
    score: ComputePipeline,
    sort: ComputePipeline,
    item_map: Vec<Layer>,
    prompt_maps: Vec<Vec<Layer>>,
    prototypes: Option<Buffer>,
    /// Most item rows one dispatch chain may take without exceeding buffer/binding limits.
    max_rows: usize,
}

const STORAGE: BufferUsages = BufferUsages::STORAGE
    .union(BufferUsages::COPY_SRC)
    .union(BufferUsages::COPY_DST);

fn gpu_err(e: impl std::fmt::Display) -> InferError {
    InferError::Gpu(e.to_string())
}

impl GpuScorer {
    /// Opens the first adapter and uploads the weights; errors when there is no adapter.
    pub async fn new(weights: &PalWeights) -> Result<Self, InferError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(gpu_err)?;
        let info = adapter.get_info();
        let adapter_name = format!("{} ({:?})", info.name, info.backend);
        let adapter_info = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("pal"),
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(gpu_err)?;
        let pipeline = |src: &str, label: &str| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let (linear, mix, score) = (
            pipeline(shaders::LINEAR, "linear"),
            pipeline(shaders::MIX, "mix"),
            pipeline(shaders::SCORE, "score"),
        );
        let sort = pipeline(shaders::TOPK, "topk");
        let upload = |m: &Mlp| -> Vec<Layer> {
            m.layers
                .iter()
                .map(|l| Layer {
                    w: storage(&device, &l.weight),
                    b: storage(&device, &l.bias),
                    d_in: l.d_in as u32,
                    d_out: l.d_out as u32,
                })
                .collect()
        };
        let item_map = upload(&weights.item_map);
        let limits = device.limits();
        let bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let widest = weights
            .item_map
            .layers
            .iter()
            .map(|l| l.d_in.max(l.d_out))
            .max()
            .unwrap_or(1) as u64;
        let max_rows = (bytes / (4 * widest)).min(65535 * 16) as usize;
        let (prompt_maps, prototypes) = match &weights.head {
            Head::PromptMaps(maps) => (maps.iter().map(upload).collect(), None),
            Head::Prototypes(p) => (vec![], Some(storage(&device, &p.concat()))),
        };
        Ok(Self {
            weights: weights.clone(),
            adapter_name,
            adapter_info,
            device,
            queue,
            linear,
            mix,
            score,
            sort,
            item_map,
            prompt_maps,
            prototypes,
            max_rows: max_rows.max(1),
        })
    }

    /// Caps the item rows per dispatch chain (memory budgets; tests of the chunking).
    pub fn with_max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows.clamp(1, self.max_rows);
        self
    }

    fn uniform<T: bytemuck::Pod>(&self, v: &T) -> Buffer {
        self.device.create_buffer_init(&BufferInitDescriptor {
            label: None,
            contents: bytemuck::bytes_of(v),
            usage: BufferUsages::UNIFORM,
        })
    }

    fn empty(&self, floats: usize) -> Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (floats.max(1) * 4) as u64,
            usage: STORAGE,
            mapped_at_creation: false,
        })
    }

    fn dispatch(
        &self,
        enc: &mut CommandEncoder,
        pipeline: &ComputePipeline,
        buffers: &[&Buffer],
        groups: (u32, u32),
    ) {
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, 1);
    }

    /// Runs an MLP over `rows` rows of `input`; returns the output buffer `[rows, d_out]`.
    fn mlp(&self, enc: &mut CommandEncoder, layers: &[Layer], input: Buffer, rows: u32) -> Buffer {
        let last = layers.len() - 1;
        let mut cur = input;
        for (i, l) in layers.iter().enumerate() {
            let out = self.empty(rows as usize * l.d_out as usize);
            let params = self.uniform(&LinearParams {
                rows,
                d_in: l.d_in,
                d_out: l.d_out,
                gelu: u32::from(i < last),
            });
            self.dispatch(
                enc,
                &self.linear,
                &[&params, &cur, &l.w, &l.b, &out],
                (l.d_out.div_ceil(16), rows.div_ceil(16)),
            );
            cur = out;
        }
        cur
    }

    /// `Σ_k w_k rows_k` (`[d]`), divided by its norm and multiplied by the logit scale when
    /// `normalise`, plus `delta` when given.
    #[allow(clippy::too_many_arguments)]
    fn mix_rows(
        &self,
        enc: &mut CommandEncoder,
        w: &Buffer,
        rows: &Buffer,
        k: u32,
        d: u32,
        normalise: bool,
        delta: Option<&Buffer>,
    ) -> Buffer {
        let out = self.empty(d as usize);
        let params = self.uniform(&MixParams {
            k,
            d,
            normalise: u32::from(normalise),
            residual: u32::from(delta.is_some()),
            scale: self.weights.scale(),
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        });
        // An unused binding still needs a buffer of its own.
        let delta = match delta {
            Some(b) => b.clone(),
            None => storage(&self.device, &[]),
        };
        self.dispatch(
            enc,
            &self.mix,
            &[&params, w, rows, &out, &delta],
            (d.div_ceil(64), 1),
        );
        out
    }

    /// The user's point `[d]` for a user (weights, residual) and a prompt.
    fn user_point(&self, enc: &mut CommandEncoder, user: UserPref<'_>, prompt: &[f32]) -> Buffer {
        let cfg = &self.weights.config;
        let wb = storage(&self.device, user.weights);
        let (k, d) = (cfg.k as u32, cfg.d as u32);
        let residual = cfg.residual.is_some();
        let delta = user
            .residual
            .filter(|_| residual)
            .map(|r| storage(&self.device, r));
        match (&self.prototypes, cfg.variant) {
            (Some(protos), Variant::A) => {
                let dim = cfg.prototype_dim() as u32;
                match cfg.ideal_point {
                    IdealPoint::FPw => {
                        let mixed = self.mix_rows(enc, &wb, protos, k, dim, false, None);
                        let point = self.mlp(enc, &self.item_map, mixed, 1);
                        match &delta {
                            // f(Σ w p) + δ: one more pass with the single row f(Σ w p).
                            Some(delta) => {
                                let one = storage(&self.device, &[1.0]);
                                self.mix_rows(enc, &one, &point, 1, d, false, Some(delta))
                            }
                            None => point,
                        }
                    }
                    IdealPoint::Pw => {
                        self.mix_rows(enc, &wb, protos, k, dim, false, delta.as_ref())
                    }
                }
            }
            _ => {
                let g = self.empty((k * d) as usize);
                for (i, map) in self.prompt_maps.iter().enumerate() {
                    let out = self.mlp(enc, map, storage(&self.device, prompt), 1);
                    enc.copy_buffer_to_buffer(&out, 0, &g, (i as u64) * d as u64 * 4, d as u64 * 4);
                }
                self.mix_rows(enc, &wb, &g, k, d, residual, delta.as_ref())
            }
        }
    }

    /// Rewards of every item in `items` (`[n, d_item]`), in chunks that fit the device limits.
    pub async fn scores<'a>(
        &self,
        user: impl Into<UserPref<'a>>,
        prompt: &[f32],
        items: &[f32],
    ) -> Result<Vec<f32>, InferError> {
        let user = user.into();
        let d_item = self.weights.config.d_item;
        let mut out = Vec::with_capacity(items.len() / d_item);
        for chunk in items.chunks(self.max_rows * d_item) {
            out.extend(self.scores_chunk(user, prompt, chunk).await?);
        }
        Ok(out)
    }

    /// f(x) of every item in `items` (`[n, d_item]` → `[n, d]`), in chunks that fit the device
    /// limits: computed once, then ranking needs only the user's point ([`crate::cpu::ItemFeatures`]).
    pub async fn features(&self, items: &[f32]) -> Result<Vec<f32>, InferError> {
        let (d_item, d) = (self.weights.config.d_item, self.weights.config.d);
        let mut out = Vec::with_capacity(items.len() / d_item * d);
        for chunk in items.chunks(self.max_rows * d_item) {
            let n = chunk.len() / d_item;
            if n == 0 {
                continue;
            }
            let mut enc = self.device.create_command_encoder(&Default::default());
            let feats = self.mlp(
                &mut enc,
                &self.item_map,
                storage(&self.device, chunk),
                n as u32,
            );
            let bytes = (n * d * 4) as u64;
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("features readback"),
                size: bytes,
                usage: BufferUsages::MAP_READ | BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.copy_buffer_to_buffer(&feats, 0, &staging, 0, bytes);
            self.queue.submit([enc.finish()]);
            out.extend(read_back::<f32>(&self.device, &staging).await?);
        }
        Ok(out)
    }

    async fn scores_chunk(
        &self,
        user: UserPref<'_>,
        prompt: &[f32],
        items: &[f32],
    ) -> Result<Vec<f32>, InferError> {
        let cfg = &self.weights.config;
        let n = items.len() / cfg.d_item;
        if n == 0 {
            return Ok(vec![]);
        }
        let mut enc = self.device.create_command_encoder(&Default::default());
        let point = self.user_point(&mut enc, user, prompt);
        let x = storage(&self.device, items);
        let feats = self.mlp(&mut enc, &self.item_map, x.clone(), n as u32);
        let out = self.empty(n);
        let prior = self.weights.prior;
        let params = self.uniform(&ScoreParams {
            n: n as u32,
            d: cfg.d as u32,
            variant: u32::from(cfg.variant == Variant::B),
            scale: self.weights.scale(),
            prior: u32::from(cfg.content_prior),
            d_x: cfg.d_item as u32,
            prior_weight: prior.weight,
            prior_sharpness: prior.sharpness(),
            prior_threshold: prior.threshold,
            residual: u32::from(cfg.variant == Variant::B && cfg.residual.is_some()),
            _pad1: 0,
            _pad2: 0,
        });
        // The prompt as the prior sees it (a one-float stand-in when unused).
        let c = storage(&self.device, if cfg.content_prior { prompt } else { &[] });
        let groups = groups_for(n);
        self.dispatch(
            &mut enc,
            &self.score,
            &[&params, &feats, &point, &out, &x, &c],
            groups,
        );
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (n * 4) as u64,
            usage: BufferUsages::MAP_READ | BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.copy_buffer_to_buffer(&out, 0, &staging, 0, (n * 4) as u64);
        self.queue.submit([enc.finish()]);
        read_back(&self.device, &staging).await
    }
}

impl GpuScorer {
    /// The `k` highest scores with their indices, best first (ties by index), sorted on the GPU
    /// by bitonic passes of `topk.wgsl`.
    pub async fn top_k(&self, scores: &[f32], k: usize) -> Result<Vec<(usize, f32)>, InferError> {
        let n = scores.len();
        if n == 0 || k == 0 {
            return Ok(vec![]);
        }
        let m = n.next_power_of_two();
        let mut padded = scores.to_vec();
        padded.resize(m, f32::NEG_INFINITY);
        let index: Vec<u32> = (0..m as u32).collect();
        let sb = storage(&self.device, &padded);
        let ib = self.device.create_buffer_init(&BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&index),
            usage: STORAGE,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        let groups = groups_for(m);
        let mut size = 2u32;
        while size as usize <= m {
            let mut j = size / 2;
            while j > 0 {
                let params = self.uniform(&SortParams {
                    n: m as u32,
                    j,
                    k: size,
                    _pad: 0,
                });
                self.dispatch(&mut enc, &self.sort, &[&params, &sb, &ib], groups);
                j /= 2;
            }
            size *= 2;
        }
        let k = k.min(n);
        let staging = |label| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (k * 4) as u64,
                usage: BufferUsages::MAP_READ | BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let (s_out, i_out) = (staging("top scores"), staging("top index"));
        enc.copy_buffer_to_buffer(&sb, 0, &s_out, 0, (k * 4) as u64);
        enc.copy_buffer_to_buffer(&ib, 0, &i_out, 0, (k * 4) as u64);
        self.queue.submit([enc.finish()]);
        let top: Vec<f32> = read_back(&self.device, &s_out).await?;
        let idx: Vec<u32> = read_back(&self.device, &i_out).await?;
        Ok(idx.into_iter().map(|i| i as usize).zip(top).collect())
    }
}

/// Workgroups of 64 covering `n` invocations, split over y past the 65535 per-dimension limit
/// (the kernels index as `gid.x + gid.y * 65535 * 64`).
fn groups_for(n: usize) -> (u32, u32) {
    let blocks = (n as u32).div_ceil(64);
    if blocks <= 65535 {
        (blocks, 1)
    } else {
        (65535, blocks.div_ceil(65535))
    }
}

fn storage(device: &Device, v: &[f32]) -> Buffer {
    let pad = [0.0f32];
    device.create_buffer_init(&BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(if v.is_empty() { &pad } else { v }),
        usage: STORAGE,
    })
}

async fn read_back<T: bytemuck::Pod>(
    device: &Device,
    staging: &Buffer,
) -> Result<Vec<T>, InferError> {
    let slice = staging.slice(..);
    let (tx, rx) = futures_channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        })
        .map_err(gpu_err)?;
    #[cfg(target_arch = "wasm32")]
    let _ = device;
    rx.await.map_err(gpu_err)?.map_err(gpu_err)?;
    let values = {
        let data = slice.get_mapped_range().map_err(gpu_err)?;
        bytemuck::cast_slice::<u8, T>(&data).to_vec()
    };
    staging.unmap();
    Ok(values)
}
