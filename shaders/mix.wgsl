// The user's point as a weighted sum of K rows: m[j] = Σ_k w[k] · g[k, j].
// PAL-B mixes the prompt maps' outputs g_k(c); PAL-A mixes its prototypes.
// Residual models (pal_math::reference::PalWeights::user_point_with): with `normalise` the
// mixture is divided by max(‖m‖, 1e-8) and multiplied by the logit scale s (PAL-B), and with
// `residual` the user's δ is added:
//   u[j] = s · m[j] / max(‖m‖, ε) + δ[j]   or   u[j] = m[j] + δ[j].

struct MixParams {
    k: u32,
    d: u32,
    normalise: u32,
    residual: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: MixParams;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> u: array<f32>;
@group(0) @binding(4) var<storage, read> delta: array<f32>;

const COS_EPS: f32 = 1e-8;

fn mixed(j: u32) -> f32 {
    var acc = 0.0;
    for (var k = 0u; k < p.k; k = k + 1u) {
        acc = acc + weights[k] * g[k * p.d + j];
    }
    return acc;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.d) {
        return;
    }
    var m = mixed(j);
    if (p.normalise != 0u) {
        // Every invocation sums the whole norm: one point of d ≤ a few thousand values.
        var sq = 0.0;
        for (var i = 0u; i < p.d; i = i + 1u) {
            let v = mixed(i);
            sq = sq + v * v;
        }
        m = p.scale * m / max(sqrt(sq), COS_EPS);
    }
    if (p.residual != 0u) {
        m = m + delta[j];
    }
    u[j] = m;
}
