// The user's point as a weighted sum of K rows: u[j] = Σ_k w[k] · g[k, j].
// PAL-B mixes the prompt maps' outputs g_k(c); PAL-A mixes its prototypes.

struct MixParams {
    k: u32,
    d: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: MixParams;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> u: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.d) {
        return;
    }
    var acc = 0.0;
    for (var k = 0u; k < p.k; k = k + 1u) {
        acc = acc + weights[k] * g[k * p.d + j];
    }
    u[j] = acc;
}
