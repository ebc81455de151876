// Rewards of N items at one user point u (features f: [N, d]):
//   PAL-B (variant 1): s · f·u / (max(‖f‖, ε) max(‖u‖, ε)), or with `residual` (whose point
//                      u = s·m̂ + δ carries the scale) f·u / max(‖f‖, ε)
//                      + with the content prior (prior 1): b σ(a (cos(x, c) − t)) on the raw
//                        item rows x: [N, d_x] and the prompt c: [d_x]
//   PAL-A (variant 0): −sqrt(‖f − u‖² + 1e-12)
// matching pal_math::reference::PalWeights::reward (reward_of_features + prior_term).

struct ScoreParams {
    n: u32,
    d: u32,
    variant: u32,
    scale: f32,
    prior: u32,
    d_x: u32,
    prior_weight: f32,
    // a = min(exp(ln a), 100), computed on the host.
    prior_sharpness: f32,
    prior_threshold: f32,
    residual: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: ScoreParams;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read> c: array<f32>;

const COS_EPS: f32 = 1e-8;
const DIST_EPS: f32 = 1e-12;

// The content prior of item n: b σ(a (cos(x_n, c) − t)).
fn prior_of(n: u32) -> f32 {
    let base = n * p.d_x;
    var xc = 0.0;
    var xx = 0.0;
    var cc = 0.0;
    for (var j = 0u; j < p.d_x; j = j + 1u) {
        let a = x[base + j];
        let b = c[j];
        xc = xc + a * b;
        xx = xx + a * a;
        cc = cc + b * b;
    }
    let cosine = xc / (max(sqrt(xx), COS_EPS) * max(sqrt(cc), COS_EPS));
    let z = p.prior_sharpness * (cosine - p.prior_threshold);
    // The stable logistic, as the reference's sigmoid.
    var g = 0.0;
    if (z >= 0.0) {
        g = 1.0 / (1.0 + exp(-z));
    } else {
        let e = exp(z);
        g = e / (1.0 + e);
    }
    return p.prior_weight * g;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = gid.x + gid.y * 65535u * 64u;
    if (n >= p.n) {
        return;
    }
    let base = n * p.d;
    if (p.variant == 1u) {
        var dot = 0.0;
        var ff = 0.0;
        var uu = 0.0;
        for (var j = 0u; j < p.d; j = j + 1u) {
            let a = f[base + j];
            let b = u[j];
            dot = dot + a * b;
            ff = ff + a * a;
            uu = uu + b * b;
        }
        var r = 0.0;
        if (p.residual == 1u) {
            r = dot / max(sqrt(ff), COS_EPS);
        } else {
            r = p.scale * dot / (max(sqrt(ff), COS_EPS) * max(sqrt(uu), COS_EPS));
        }
        if (p.prior == 1u) {
            r = r + prior_of(n);
        }
        out[n] = r;
    } else {
        var sq = 0.0;
        for (var j = 0u; j < p.d; j = j + 1u) {
            let diff = f[base + j] - u[j];
            sq = sq + diff * diff;
        }
        out[n] = -sqrt(sq + DIST_EPS);
    }
}
