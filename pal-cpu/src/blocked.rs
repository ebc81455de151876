//! The blocked product around a microkernel: B is packed per `(NC, KC)` block and shared, each
//! task packs its own `MC × KC` block of A and runs the microkernel over `MR × NR` tiles
//! (the classic loop nest: the B micro-panel stays in L1, the A block in L2).

#![allow(unsafe_code)]

use rayon::prelude::*;

use crate::scratch::{Scratch, Slot};
use crate::view::View;

/// A microkernel and the packed layout it reads.
pub(crate) trait Micro {
    /// One packed value: an f32, or a pair of bf16 along k.
    type Packed: Scratch;
    /// Tile rows and columns.
    const MR: usize;
    const NR: usize;
    /// k values per packed value (1 for f32, 2 for bf16 pairs).
    const G: usize;
    /// k per block (a multiple of `G`).
    const KC: usize;
    /// Columns of B per packed block.
    const NC: usize;
    /// Most rows of A per task.
    const MC: usize;

    /// Packs `lo` (k even) and `hi` (the next k, 0 past the end).
    fn pack(lo: f32, hi: f32) -> Self::Packed;

    /// One line with contiguous k: `dst[q·w] = pack(line[q·G], line[q·G + 1])` for every
    /// group, 0 past the end. Kernels may override it with a vector conversion.
    fn pack_along(line: &[f32], w: usize, dst: &mut [Self::Packed]) {
        let slots = dst.iter_mut().step_by(w);
        if Self::G == 1 {
            slots.zip(line).for_each(|(d, &v)| *d = Self::pack(v, 0.0));
        } else {
            let pairs = line.chunks(2);
            slots
                .zip(pairs)
                .for_each(|(d, p)| *d = Self::pack(p[0], p.get(1).copied().unwrap_or(0.0)));
        }
    }

    /// Contiguous lines at one k (pair): `dst[l] = pack(lo[l], hi[l] or 0)`.
    fn pack_across(lo: &[f32], hi: Option<&[f32]>, dst: &mut [Self::Packed]) {
        match hi {
            Some(hi) => dst
                .iter_mut()
                .zip(lo.iter().zip(hi))
                .for_each(|(d, (&l, &h))| *d = Self::pack(l, h)),
            None => dst
                .iter_mut()
                .zip(lo)
                .for_each(|(d, &l)| *d = Self::pack(l, 0.0)),
        }
    }

    /// `out[i·ldc + j] = (out if add) + Σ_q a[q·MR + i] · b[q·NR + j]` for an `MR × NR` tile,
    /// over `groups` packed values.
    ///
    /// # Safety
    /// `a` holds `groups · MR` values, `b` `groups · NR`, `out` an `MR × NR` tile with row stride
    /// `ldc`, and the CPU has the kernel's features.
    unsafe fn tile(
        groups: usize,
        a: *const Self::Packed,
        b: *const Self::Packed,
        out: *mut f32,
        ldc: usize,
        add: bool,
    );
}

/// Where a block's lines (rows of A, columns of B) start and how they step through a slice:
/// `value(line, k) = data[base + line · line_step + k · k_step]`.
#[derive(Clone, Copy)]
struct Lines<'a> {
    data: &'a [f32],
    base: usize,
    line_step: usize,
    k_step: usize,
}

/// Packs lines `0..lines` for k in `0..kc` into `w`-wide panels, `out[panel][q][l]`, zero past
/// the last line and the last k. Reads the source in its contiguous direction: along k for
/// row-major A and transposed B, across lines for row-major B and transposed A.
fn pack_panels<M: Micro>(
    w: usize,
    lines: usize,
    kc: usize,
    src: Lines<'_>,
    out: &mut [M::Packed],
    parallel: bool,
) {
    let groups = kc.div_ceil(M::G);
    let (ls, ks) = (src.line_step, src.k_step);
    // Work goes out in spans of whole panels covering ≥ 64 lines, so that lines packed across
    // (contiguous lines) convert in long vector runs even when a panel is only 14 wide.
    let per_span = 64usize.div_ceil(w);
    let span = |(si, dst): (usize, &mut [M::Packed])| {
        let p0 = si * per_span;
        let panels = dst.len() / (groups * w);
        if ks == 1 || ls != 1 {
            for (p, dst) in dst.chunks_mut(groups * w).enumerate() {
                pack_one_panel::<M>(w, lines, kc, src, p0 + p, dst);
            }
            return;
        }
        // Lines are contiguous: one k (pair) at a time across the span's lines, then dealt out
        // to its panels.
        let l0 = p0 * w;
        let here = (panels * w).min(lines - l0);
        let mut run = vec![M::Packed::default(); here];
        if here < panels * w || !kc.is_multiple_of(M::G) {
            dst.fill(M::Packed::default());
        }
        for q in 0..groups {
            let (k0, k1) = (q * M::G, q * M::G + 1);
            let row = |k: usize| &src.data[src.base + k * ks + l0..][..here];
            let hi = (M::G == 2 && k1 < kc).then(|| row(k1));
            M::pack_across(row(k0), hi, &mut run);
            for (p, vals) in run.chunks(w).enumerate() {
                let at = p * groups * w + q * w;
                dst[at..at + vals.len()].copy_from_slice(vals);
            }
        }
    };
    let used = &mut out[..lines.div_ceil(w) * groups * w];
    if parallel {
        used.par_chunks_mut(per_span * groups * w)
            .enumerate()
            .for_each(span);
    } else {
        used.chunks_mut(per_span * groups * w)
            .enumerate()
            .for_each(span);
    }
}

/// One panel of a source whose k values are contiguous per line (or neither direction is).
fn pack_one_panel<M: Micro>(
    w: usize,
    lines: usize,
    kc: usize,
    src: Lines<'_>,
    panel: usize,
    dst: &mut [M::Packed],
) {
    let groups = kc.div_ceil(M::G);
    let (ls, ks) = (src.line_step, src.k_step);
    let l0 = panel * w;
    let here = w.min(lines - l0);
    if here < w || !kc.is_multiple_of(M::G) {
        dst.fill(M::Packed::default());
    }
    for l in 0..here {
        let at = src.base + (l0 + l) * ls;
        if ks == 1 {
            M::pack_along(&src.data[at..at + kc], w, &mut dst[l..]);
        } else {
            // Neither direction contiguous (strided views): value by value.
            let read = |k: usize| if k < kc { src.data[at + k * ks] } else { 0.0 };
            dst[l..]
                .iter_mut()
                .step_by(w)
                .take(groups)
                .enumerate()
                .for_each(|(q, d)| *d = M::pack(read(q * M::G), read(q * M::G + 1)));
        }
    }
}

/// Where tasks write: row-major `[m, n]`; tasks own disjoint tiles.
#[derive(Clone, Copy)]
struct Out {
    ptr: *mut f32,
    n: usize,
}
// SAFETY: every task writes only its own rows × columns of the output (see `run`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// `out[m, n] = (out if add) + a[m, k] · b[k, n]` on `threads` threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<M: Micro>(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    out: &mut [f32],
    add: bool,
    threads: usize,
) {
    View::assert_product(m, n, k, &a, &b, out.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !add {
            out.fill(0.0);
        }
        return;
    }
    let dst = Out {
        ptr: out.as_mut_ptr(),
        n,
    };
    // Row blocks of at most MC rows, at least two per thread where the rows allow, evened
    // out so no thread gets a short last block.
    let target = if threads > 1 { 2 * threads } else { 1 };
    let blocks = m
        .div_ceil(M::MC)
        .max(target)
        .next_multiple_of(threads.max(1))
        .min(m.div_ceil(M::MR));
    let mc = m.div_ceil(blocks).next_multiple_of(M::MR);
    let blocks = m.div_ceil(mc);
    let b_len = M::NC.min(n).next_multiple_of(M::NR) * M::KC.div_ceil(M::G);
    M::Packed::with(Slot::B, b_len, |b_pack| {
        for jc in (0..n).step_by(M::NC) {
            let nc = M::NC.min(n - jc);
            let panels = nc.div_ceil(M::NR);
            // With fewer row blocks than wanted, split the column panels too (≥ 4 a task).
            let splits = if blocks < target {
                target.div_ceil(blocks).min(panels.div_ceil(4)).max(1)
            } else {
                1
            };
            let per_split = panels.div_ceil(splits);
            let tasks: Vec<(usize, usize, usize)> = (0..blocks)
                .flat_map(|bi| {
                    (0..splits)
                        .map(move |s| (bi * mc, s * per_split, ((s + 1) * per_split).min(panels)))
                })
                .filter(|&(_, j0, j1)| j0 < j1)
                .collect();
            for pc in (0..k).step_by(M::KC) {
                let kc = M::KC.min(k - pc);
                let groups = kc.div_ceil(M::G);
                let accumulate = add || pc > 0;
                pack_lines::<M>(M::NR, b.t(), jc, nc, pc, kc, b_pack, threads > 1);
                let b_pack = &*b_pack;
                // Split row blocks share one packing of A; whole ones pack their own (in L2).
                let shared_len = if splits > 1 {
                    m.next_multiple_of(M::MR) * groups
                } else {
                    0
                };
                M::Packed::with(Slot::SharedA, shared_len, |shared| {
                    if splits > 1 {
                        pack_lines::<M>(M::MR, a, 0, m, pc, kc, shared, threads > 1);
                    }
                    let shared = &*shared;
                    let task = |&(r0, j0, j1): &(usize, usize, usize)| {
                        let rows = mc.min(m - r0);
                        let own_len = if splits > 1 {
                            0
                        } else {
                            rows.next_multiple_of(M::MR) * groups
                        };
                        M::Packed::with(Slot::A, own_len, |own| {
                            let a_pack: &[M::Packed] = if splits > 1 {
                                &shared[(r0 / M::MR) * groups * M::MR..]
                            } else {
                                pack_lines::<M>(M::MR, a, r0, rows, pc, kc, own, false);
                                own
                            };
                            let ctx = Block {
                                dst,
                                m,
                                jc,
                                nc,
                                groups,
                                accumulate,
                            };
                            tiles::<M>(ctx, a_pack, b_pack, r0, rows, j0..j1);
                        });
                    };
                    if threads > 1 {
                        tasks.par_iter().for_each(task);
                    } else {
                        tasks.iter().for_each(task);
                    }
                });
            }
        }
    });
}

/// What every tile of one packed block shares.
#[derive(Clone, Copy)]
struct Block {
    dst: Out,
    m: usize,
    jc: usize,
    nc: usize,
    groups: usize,
    accumulate: bool,
}

/// Runs the microkernel over rows `r0..r0 + rows` and column panels `panels` of a block.
fn tiles<M: Micro>(
    ctx: Block,
    a_pack: &[M::Packed],
    b_pack: &[M::Packed],
    r0: usize,
    rows: usize,
    panels: std::ops::Range<usize>,
) {
    let Block {
        dst,
        m,
        jc,
        nc,
        groups,
        accumulate,
    } = ctx;
    let mut tile = [0.0f32; 14 * 32];
    assert!(M::MR * M::NR <= tile.len(), "scratch tile too small");
    for jr in panels {
        let c0 = jc + jr * M::NR;
        let cols = M::NR.min(jc + nc - c0);
        let bp = &b_pack[jr * groups * M::NR..(jr + 1) * groups * M::NR];
        for ir in 0..rows.div_ceil(M::MR) {
            let ap = &a_pack[ir * groups * M::MR..(ir + 1) * groups * M::MR];
            let r = r0 + ir * M::MR;
            let here = M::MR.min(m - r);
            // SAFETY: `ap` and `bp` have the lengths `tile` reads; a whole tile at (r, c0) lies
            // inside the output and belongs to this task, else the kernel writes the scratch
            // tile; the kernel's CPU features were checked when its path was chosen.
            unsafe {
                if here == M::MR && cols == M::NR {
                    let at = dst.ptr.add(r * dst.n + c0);
                    M::tile(groups, ap.as_ptr(), bp.as_ptr(), at, dst.n, accumulate);
                } else {
                    M::tile(
                        groups,
                        ap.as_ptr(),
                        bp.as_ptr(),
                        tile.as_mut_ptr(),
                        M::NR,
                        false,
                    );
                    write_tile(dst, &tile, M::NR, r, here, c0, cols, accumulate);
                }
            }
        }
    }
}

/// Packs lines `l0..l0 + lines` of `v` (its rows; pass a transpose for B's columns), k values
/// `pc..pc + kc`, into `w`-wide panels.
#[allow(clippy::too_many_arguments)]
fn pack_lines<M: Micro>(
    w: usize,
    v: View<'_>,
    l0: usize,
    lines: usize,
    pc: usize,
    kc: usize,
    out: &mut [M::Packed],
    parallel: bool,
) {
    let src = Lines {
        data: v.data,
        base: l0 * v.row + pc * v.col,
        line_step: v.row,
        k_step: v.col,
    };
    pack_panels::<M>(w, lines, kc, src, out, parallel);
}

/// Adds (or writes) the `rows × cols` corner of a tile into the output at `(r, c)`.
#[allow(clippy::too_many_arguments)]
fn write_tile(
    dst: Out,
    tile: &[f32],
    nr: usize,
    r: usize,
    rows: usize,
    c: usize,
    cols: usize,
    add: bool,
) {
    for i in 0..rows {
        let src = &tile[i * nr..i * nr + cols];
        // SAFETY: rows r..r+rows and columns c..c+cols lie inside the [m, n] output, and this
        // task is the only one writing them.
        let row = unsafe { std::slice::from_raw_parts_mut(dst.ptr.add((r + i) * dst.n + c), cols) };
        if add {
            row.iter_mut().zip(src).for_each(|(o, t)| *o += t);
        } else {
            row.copy_from_slice(src);
        }
    }
}
