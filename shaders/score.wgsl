// Rewards of N items at one user point u (features f: [N, d]):
//   PAL-B (variant 1): s · f·u / (max(‖f‖, ε) max(‖u‖, ε))
//   PAL-A (variant 0): −sqrt(‖f − u‖² + 1e-12)
// matching pal_math::reference::PalWeights::reward_of_features.

struct ScoreParams {
    n: u32,
    d: u32,
    variant: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: ScoreParams;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const COS_EPS: f32 = 1e-8;
const DIST_EPS: f32 = 1e-12;

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
            let c = u[j];
            dot = dot + a * c;
            ff = ff + a * a;
            uu = uu + c * c;
        }
        out[n] = p.scale * dot / (max(sqrt(ff), COS_EPS) * max(sqrt(uu), COS_EPS));
    } else {
        var sq = 0.0;
        for (var j = 0u; j < p.d; j = j + 1u) {
            let diff = f[base + j] - u[j];
            sq = sq + diff * diff;
        }
        out[n] = -sqrt(sq + DIST_EPS);
    }
}
