// One dense layer for a batch of rows: y = x W + b, then GELU (exact-erf form) when asked.
// x: [rows, d_in], W: [d_in, d_out] row-major, b: [d_out], y: [rows, d_out].
// 16×16 output tiles; each workgroup stages 16×16 tiles of x and W in shared memory.

struct LinearParams {
    rows: u32,
    d_in: u32,
    d_out: u32,
    gelu: u32,
}

@group(0) @binding(0) var<uniform> p: LinearParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const TILE: u32 = 16u;
var<workgroup> xs: array<array<f32, 16>, 16>;
var<workgroup> ws: array<array<f32, 16>, 16>;

// erf by the rational approximation used in pal_math::reference::erf (|error| < 1.2e-7).
fn erf_approx(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(poly);
    return select(erfc - 1.0, 1.0 - erfc, v >= 0.0);
}

fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    var acc = 0.0;
    let tiles = (p.d_in + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t = t + 1u) {
        let xc = t * TILE + lid.x;
        let wr = t * TILE + lid.y;
        xs[lid.y][lid.x] = select(0.0, x[row * p.d_in + xc], row < p.rows && xc < p.d_in);
        ws[lid.y][lid.x] = select(0.0, w[wr * p.d_out + col], wr < p.d_in && col < p.d_out);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + xs[lid.y][i] * ws[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < p.rows && col < p.d_out) {
        var v = acc + b[col];
        if (p.gelu != 0u) {
            v = gelu(v);
        }
        y[row * p.d_out + col] = v;
    }
}
