//! `out = x · wᵀ` for row-major `x` (m×k) and `w` (n×k), the layout of every linear layer's weight.
//!
//! Batch invariance: every output element is computed by one fixed sequence of operations that
//! depends only on its x row and weight row, whichever tile it falls in, however many rows the
//! call has, whatever the thread split:
//! - f32-path weights (f32, bf16, fp8, other block formats decoded to f32 rows):
//!   [`dot_fma`]`(x_row, w_row)` — 16 lane accumulators updated with fused multiply-adds in index
//!   order, then a fixed pairwise tree. Tiles only decide which dot products run side by side:
//!   4 x-rows × 4 weight rows (16 accumulators, one AVX-512 register each) while both remain,
//!   narrower at the edges. Compiled for AVX-512, AVX2 and plain x86-64, picked once per machine;
//!   all three compute the same fused operations.
//! - ggml Q4_1 / Q8_0 weights: each x row is quantized to 8 bits in blocks of 32 (per row, as
//!   llama.cpp does) and multiplied with integer dot products, in the order fixed in
//!   [`super::q8_dot`]; the same path for one row (decode) and many (prefill), AVX2 or portable.

use super::SyncPtr;
use super::dot::{LANES, reduce};
use super::par::for_each_task;
use super::q8_dot::{Int8Kernel, QuantRows, pick_int8};
use super::weight::{PackedKind, PartData, Q4_1_BYTES, Q8_0_BYTES, Weight};

/// Output columns (weight rows) per parallel task in large batches (prefill), and the least per
/// task in a decode step.
const COLS_PER_TASK: usize = 32;
/// Column tasks per thread when the call has one row block (decode; at least [`COLS_PER_TASK`]
/// columns each): few enough that each task streams a long run of contiguous weight rows, enough
/// to even out the threads when one is slowed down.
const TASKS_PER_THREAD: usize = 8;
/// x rows per parallel task in large batches, so prefill keeps every thread busy.
const ROWS_PER_TASK: usize = 64;
const TILE: usize = 4;

pub fn matmul_t(x: &[f32], m: usize, w: &Weight, out: &mut [f32]) {
    let (k, n) = (w.k, w.rows());
    assert_eq!(x.len(), m * k, "matmul_t: x is not m×k");
    assert_eq!(out.len(), m * n, "matmul_t: out is not m×n");
    // x rows quantized once per call (each row on its own) when some weight rows take the int8 path
    let int8 = w
        .parts
        .iter()
        .any(|p| matches!(p.data, PartData::Q4_1(_) | PartData::Q8_0(_)));
    let quant = int8.then(|| QuantRows::new(x, m, k));
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let row_block = if m >= ROWS_PER_TASK {
        ROWS_PER_TASK
    } else {
        m.max(1)
    };
    let row_tasks = m.div_ceil(row_block);
    // One row block (decode): about TASKS_PER_THREAD long column runs per thread, so each
    // task streams (and prefetches) a long stretch of contiguous weight rows.
    let cols_per_task = if row_tasks == 1 {
        let threads = rayon::current_num_threads();
        n.div_ceil(threads * TASKS_PER_THREAD)
            .next_multiple_of(8)
            .max(COLS_PER_TASK)
    } else {
        COLS_PER_TASK
    };
    let col_tasks = n.div_ceil(cols_per_task);
    let (kernel, i8k) = (pick_kernel(), pick_int8());
    for_each_task(col_tasks * row_tasks, &|task| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let cols = ct * cols_per_task..((ct + 1) * cols_per_task).min(n);
        let rows = rt * row_block..((rt + 1) * row_block).min(m);
        // SAFETY: tasks write disjoint (row, col) ranges of `out`, which outlives the loop; the
        // kernels' CPU features were checked by `pick_kernel` / `pick_int8`.
        unsafe { kernel(x, quant.as_ref(), i8k, w, rows, cols, out_ptr) };
    });
}

type Range = std::ops::Range<usize>;
type Kernel = unsafe fn(&[f32], Option<&QuantRows>, Int8Kernel, &Weight, Range, Range, SyncPtr);

fn pick_kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return tile_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return tile_avx2;
        }
    }
    tile_generic
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_avx512(
    x: &[f32],
    q: Option<&QuantRows>,
    i8k: Int8Kernel,
    w: &Weight,
    rows: Range,
    cols: Range,
    out: SyncPtr,
) {
    unsafe { tile_inline::<Avx512>(x, q, i8k, w, rows, cols, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(
    x: &[f32],
    q: Option<&QuantRows>,
    i8k: Int8Kernel,
    w: &Weight,
    rows: Range,
    cols: Range,
    out: SyncPtr,
) {
    unsafe { tile_inline::<Portable>(x, q, i8k, w, rows, cols, out) }
}

/// Without hardware FMA `mul_add` is a (correct, slow) library call: same results, rare machines.
unsafe fn tile_generic(
    x: &[f32],
    q: Option<&QuantRows>,
    i8k: Int8Kernel,
    w: &Weight,
    rows: Range,
    cols: Range,
    out: SyncPtr,
) {
    unsafe { tile_inline::<Portable>(x, q, i8k, w, rows, cols, out) }
}

/// R×C dot products side by side, each with exactly [`dot_fma`]'s lane accumulation.
trait Micro {
    fn run<const R: usize, const C: usize>(
        xs: &[&[f32]; R],
        ws: &[&[f32]; C],
        put: &mut impl FnMut(usize, usize, [f32; LANES]),
    );
}

struct Portable;
impl Micro for Portable {
    #[inline(always)]
    fn run<const R: usize, const C: usize>(
        xs: &[&[f32]; R],
        ws: &[&[f32]; C],
        put: &mut impl FnMut(usize, usize, [f32; LANES]),
    ) {
        micro(xs, ws, put)
    }
}

/// AVX-512: one 16-lane register per accumulator, so a 4×4 tile keeps all 16 in registers.
#[cfg(target_arch = "x86_64")]
struct Avx512;
#[cfg(target_arch = "x86_64")]
impl Micro for Avx512 {
    #[inline(always)]
    fn run<const R: usize, const C: usize>(
        xs: &[&[f32]; R],
        ws: &[&[f32]; C],
        put: &mut impl FnMut(usize, usize, [f32; LANES]),
    ) {
        use std::arch::x86_64::*;
        let k = ws[0].len();
        let full = k / LANES * LANES;
        // SAFETY: only reached from `tile_avx512` (AVX-512F checked); loads stay below `full`.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); C]; R];
            let mut t = 0;
            while t < full {
                let wv: [__m512; C] =
                    std::array::from_fn(|c| _mm512_loadu_ps(ws[c].as_ptr().add(t)));
                for i in 0..R {
                    let xv = _mm512_loadu_ps(xs[i].as_ptr().add(t));
                    for c in 0..C {
                        acc[i][c] = _mm512_fmadd_ps(xv, wv[c], acc[i][c]);
                    }
                }
                t += LANES;
            }
            for i in 0..R {
                for c in 0..C {
                    let mut a = [0f32; LANES];
                    _mm512_storeu_ps(a.as_mut_ptr(), acc[i][c]);
                    for t in full..k {
                        a[t % LANES] = xs[i][t].mul_add(ws[c][t], a[t % LANES]);
                    }
                    put(i, c, a);
                }
            }
        }
    }
}

/// Weight rows in ggml Q4_1/Q8_0 go to the int8 kernel a run (up to the end of their part) at a
/// time; the others are fetched (decoded, if packed) [`TILE`] at a time and used against every x
/// row of the task.
#[inline(always)]
unsafe fn tile_inline<M: Micro>(
    x: &[f32],
    quant: Option<&QuantRows>,
    i8k: Int8Kernel,
    w: &Weight,
    rows: Range,
    cols: Range,
    out: SyncPtr,
) {
    let (k, n) = (w.k, w.rows());
    // decoded-row scratch, allocated only if some row takes the f32 path
    let mut bufs = Vec::new();
    let mut j = cols.start;
    while j < cols.end {
        if let Some(q) = quant
            && let Some((kind, bytes, left)) = int8_run(w, j)
        {
            let nc = left.min(cols.end - j);
            let rb = bytes.len() / left;
            // SAFETY: the caller's contract (disjoint, in-bounds output; features checked).
            unsafe { i8k(kind, q, &bytes[..nc * rb], rows.clone(), out, n, j) };
            j += nc;
            continue;
        }
        let int8 = |j: usize| quant.is_some() && w.packed_row(j).is_some();
        let mut nc = 1;
        while nc < TILE && j + nc < cols.end && !int8(j + nc) {
            nc += 1;
        }
        let mut wrs: [&[f32]; TILE] = [&[]; TILE];
        bufs.resize(TILE * k, 0f32);
        for (c, buf) in bufs.chunks_mut(k).enumerate().take(nc) {
            wrs[c] = w.row(j + c, buf);
        }
        let mut r = rows.start;
        while r < rows.end {
            let nr = TILE.min(rows.end - r);
            let xs: [&[f32]; TILE] = std::array::from_fn(|i| {
                if i < nr {
                    &x[(r + i) * k..(r + i + 1) * k]
                } else {
                    &[]
                }
            });
            let mut put = |i: usize, c: usize, acc: [f32; LANES]| unsafe {
                *out.at((r + i) * n + j + c) = reduce(acc)
            };
            match (nr, nc) {
                (4, 4) => M::run::<4, 4>(&xs, &wrs, &mut put),
                (4, _) => {
                    for (c, wr) in wrs.iter().enumerate().take(nc) {
                        M::run::<4, 1>(&xs, &[*wr], &mut |i, _, a| put(i, c, a));
                    }
                }
                (_, 4) => {
                    for (i, xr) in xs.iter().enumerate().take(nr) {
                        M::run::<1, 4>(&[*xr], &wrs, &mut |_, c, a| put(i, c, a));
                    }
                }
                _ => {
                    for (i, xr) in xs.iter().enumerate().take(nr) {
                        for (c, wr) in wrs.iter().enumerate().take(nc) {
                            M::run::<1, 1>(&[*xr], &[*wr], &mut |_, _, a| put(i, c, a));
                        }
                    }
                }
            }
            r += nr;
        }
        j += nc;
    }
}

/// The ggml Q4_1/Q8_0 part row `j` lies in: its format, the bytes of rows `j..` to the part's end,
/// and how many rows that is.
fn int8_run(w: &Weight, mut j: usize) -> Option<(PackedKind, &[u8], usize)> {
    for p in &w.parts {
        if j < p.rows {
            let (kind, bytes, size) = match &p.data {
                PartData::Q4_1(b) => (PackedKind::Q4_1, b, Q4_1_BYTES),
                PartData::Q8_0(b) => (PackedKind::Q8_0, b, Q8_0_BYTES),
                _ => return None,
            };
            return Some((kind, &bytes[j * (w.k / 32 * size)..], p.rows - j));
        }
        j -= p.rows;
    }
    None
}

/// R×C dot products side by side, each exactly [`dot_fma`]'s lane accumulation. Fixed-size
/// array views keep the accumulators in vector registers.
#[inline(always)]
fn micro<const R: usize, const C: usize>(
    xs: &[&[f32]; R],
    ws: &[&[f32]; C],
    put: &mut impl FnMut(usize, usize, [f32; LANES]),
) {
    let k = ws[0].len();
    let full = k / LANES * LANES;
    let mut acc = [[[0f32; LANES]; C]; R];
    let mut t = 0;
    while t < full {
        let wc: [&[f32; LANES]; C] =
            std::array::from_fn(|c| ws[c][t..t + LANES].try_into().unwrap());
        let xc: [&[f32; LANES]; R] =
            std::array::from_fn(|i| xs[i][t..t + LANES].try_into().unwrap());
        for i in 0..R {
            for c in 0..C {
                for l in 0..LANES {
                    acc[i][c][l] = xc[i][l].mul_add(wc[c][l], acc[i][c][l]);
                }
            }
        }
        t += LANES;
    }
    for t in full..k {
        for i in 0..R {
            for c in 0..C {
                acc[i][c][t % LANES] = xs[i][t].mul_add(ws[c][t], acc[i][c][t % LANES]);
            }
        }
    }
    for (i, row) in acc.into_iter().enumerate() {
        for (c, a) in row.into_iter().enumerate() {
            put(i, c, a);
        }
    }
}

/// The reference order every matmul output element follows.
#[cfg(test)]
pub fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot_fma: length mismatch");
    let mut acc = [0f32; LANES];
    for (t, (x, y)) in a.iter().zip(b).enumerate() {
        acc[t % LANES] = x.mul_add(*y, acc[t % LANES]);
    }
    reduce(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn equals_reference_and_is_batch_invariant() {
        let (k, n) = (83, 70);
        let w = data(n * k, 7);
        let x = data(37 * k, 3);
        let mut full = vec![0.0; 37 * n];
        // two parts, the second packed as raw little-endian f32 bytes: stacking and row
        // decoding must not change a bit
        let (top, bottom) = w.split_at(30 * k);
        let bytes: Vec<u8> = bottom.iter().flat_map(|v| v.to_le_bytes()).collect();
        let decode: crate::cpu::RowDecoder = std::sync::Arc::new(|b: &[u8], o: &mut [f32]| {
            for (o, c) in o.iter_mut().zip(b.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        });
        let wt = Weight::f32(30, k, top.to_vec()).stack(Weight::packed(n - 30, k, bytes, decode));
        matmul_t(&x, 37, &wt, &mut full);
        for r in 0..37 {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|t| x[r * k + t] as f64 * w[j * k + t] as f64)
                    .sum();
                assert!((full[r * n + j] as f64 - exact).abs() < 1e-4);
                // bit-identical to the plain dot, whatever tile the row fell in
                assert_eq!(
                    full[r * n + j].to_bits(),
                    dot_fma(&x[r * k..(r + 1) * k], &w[j * k..(j + 1) * k]).to_bits()
                );
            }
        }
        // every compiled variant this CPU can run gives the same bits
        let mut kernels: Vec<Kernel> = vec![tile_generic];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(tile_avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(tile_avx512);
            }
        }
        for kern in kernels {
            let mut o = vec![0.0; 37 * n];
            unsafe {
                kern(
                    &x,
                    None,
                    pick_int8(),
                    &wt,
                    0..37,
                    0..n,
                    SyncPtr(o.as_mut_ptr()),
                )
            };
            assert_eq!(o, full);
        }
        for m in [1usize, 2, 3, 5, 13] {
            let mut part = vec![0.0; m * n];
            matmul_t(&x[..m * k], m, &wt, &mut part);
            assert_eq!(part, full[..m * n], "rows differ at m={m}");
        }
    }

    /// Packed Q4_1 / Q8_0 weights stacked with an f32 part (format changes mid-group, ragged
    /// groups, several tasks): every element is the canonical int8 dot of its row (or the f32 dot),
    /// for every kernel pair this CPU runs, and a row alone equals the same row in a batch of 7.
    #[test]
    fn packed_rows_take_the_int8_path_and_are_batch_invariant() {
        use crate::cpu::q8_dot::{cols_portable, dot_q4_1, dot_q8_0};
        use crate::cpu::weight::{Q4_1_BYTES, Q8_0_BYTES, random_blocks};
        let (k, m) = (96usize, 7usize);
        let (n41, n80, nf) = (45usize, 27usize, 6usize);
        let b41 = random_blocks(11, n41 * k / 32 * Q4_1_BYTES, Q4_1_BYTES, 2);
        let b80 = random_blocks(12, n80 * k / 32 * Q8_0_BYTES, Q8_0_BYTES, 1);
        let wf = data(nf * k, 5);
        let w = Weight::q4_1(n41, k, b41.clone())
            .stack(Weight::f32(nf, k, wf.clone()))
            .stack(Weight::q8_0(n80, k, b80.clone()));
        let n = w.rows();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
            .collect();
        let mut batched = vec![0f32; m * n];
        matmul_t(&x, m, &w, &mut batched);
        for r in 0..m {
            let xr = &x[r * k..(r + 1) * k];
            let q = QuantRows::new(xr, 1, k);
            for j in 0..n {
                let want = if j < n41 {
                    let wr = &b41[j * k / 32 * Q4_1_BYTES..(j + 1) * k / 32 * Q4_1_BYTES];
                    dot_q4_1(wr, &q.q, &q.d, &q.s)
                } else if j < n41 + nf {
                    dot_fma(xr, &wf[(j - n41) * k..(j - n41 + 1) * k])
                } else {
                    let jj = j - n41 - nf;
                    let wr = &b80[jj * k / 32 * Q8_0_BYTES..(jj + 1) * k / 32 * Q8_0_BYTES];
                    dot_q8_0(wr, &q.q, &q.d)
                };
                assert_eq!(batched[r * n + j].to_bits(), want.to_bits(), "({r},{j})");
            }
            let mut one = vec![0f32; n];
            matmul_t(xr, 1, &w, &mut one);
            assert_eq!(one, batched[r * n..(r + 1) * n], "row {r}");
        }
        // every f32 kernel × int8 kernel this CPU runs, in one task or split at odd places
        let mut kernels: Vec<Kernel> = vec![tile_generic];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            kernels.push(tile_avx2);
        }
        let q = QuantRows::new(&x, m, k);
        for kern in kernels {
            for i8k in [cols_portable as Int8Kernel, pick_int8()] {
                for split in [n, 5, 13] {
                    let mut o = vec![0f32; m * n];
                    for c0 in (0..n).step_by(split) {
                        for rows in [0..3, 3..m] {
                            let cols = c0..(c0 + split).min(n);
                            let p = SyncPtr(o.as_mut_ptr());
                            unsafe { kern(&x, Some(&q), i8k, &w, rows, cols, p) };
                        }
                    }
                    assert_eq!(o, batched, "split {split}");
                }
            }
        }
    }
}
