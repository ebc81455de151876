// One compare-and-swap pass of a bitonic sort over (score, index) pairs, descending by score and
// ascending by index on ties. The host pads to a power of two with -inf scores and runs the
// passes (k = 2, 4, …, n; j = k/2, …, 1); the first k pairs are then the top-k.

struct SortParams {
    n: u32,
    j: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: SortParams;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<storage, read_write> index: array<u32>;

// True when (a, ia) should come before (b, ib): higher score first, lower index on ties.
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    return a > b || (a == b && ia < ib);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    let l = i ^ p.j;
    if (i >= p.n || l <= i) {
        return;
    }
    let first_half = (i & p.k) == 0u;
    let a = scores[i];
    let b = scores[l];
    let ia = index[i];
    let ib = index[l];
    // In blocks sorted descending, (i, l) must be in `before` order; in the others, reversed.
    let swap = select(before(a, ia, b, ib), !before(a, ia, b, ib), first_half);
    if (swap) {
        scores[i] = b;
        scores[l] = a;
        index[i] = ib;
        index[l] = ia;
    }
}
