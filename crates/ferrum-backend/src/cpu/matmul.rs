//! `out = x · wᵀ` for row-major `x` (m×k) and `w` (n×k), the layout of every linear layer's weight.
//! Each output element is exactly `dot(x_row, w_row)`; tiles of 4 rows of `x` share each loaded `w`
//! row (the weights are the bytes that matter) without changing any element's summation order.

use super::SyncPtr;
use super::dot::{LANES, dot_lanes, reduce};
use super::weight::Weight;
use rayon::prelude::*;

/// Output columns (weight rows) per parallel task: small enough to spread a decode step's GEMV
/// over the threads, large enough to amortize the task.
const COLS_PER_TASK: usize = 32;
const ROW_TILE: usize = 4;
const COL_TILE: usize = 4;

pub fn matmul_t(x: &[f32], m: usize, w: &Weight, out: &mut [f32]) {
    let (k, n) = (w.k, w.rows());
    assert_eq!(x.len(), m * k, "matmul_t: x is not m×k");
    assert_eq!(out.len(), m * n, "matmul_t: out is not m×n");
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let col_tasks = n.div_ceil(COLS_PER_TASK);
    // Large batches also split rows, so prefill keeps every thread busy on narrow layers.
    let row_block = if m >= 64 { 64 } else { m.max(1) };
    let row_tasks = m.div_ceil(row_block);
    (0..col_tasks * row_tasks).into_par_iter().for_each(|task| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let cols = ct * COLS_PER_TASK..((ct + 1) * COLS_PER_TASK).min(n);
        let rows = rt * row_block..((rt + 1) * row_block).min(m);
        // SAFETY: tasks write disjoint (row, col) ranges of `out`, which outlives the loop.
        unsafe { tile(x, w, rows, cols, out_ptr) };
    });
}

type Range = std::ops::Range<usize>;

unsafe fn tile(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return unsafe { tile_avx2(x, w, rows, cols, out) };
    }
    unsafe { tile_inline(x, w, rows, cols, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    unsafe { tile_inline(x, w, rows, cols, out) }
}

/// Weight rows are fetched (decoded, if packed) `COL_TILE` at a time and used for every row of
/// `x` in the tile: 4 x-rows × 1 w-row per micro-step while 4 rows remain, then 1 × 4. Either
/// way 8 independent accumulator chains hide the add latency, and each output element keeps
/// exactly `dot`'s summation order.
#[inline(always)]
unsafe fn tile_inline(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    let (k, n) = (w.k, w.rows());
    let mut bufs = vec![0f32; COL_TILE * k];
    let mut j = cols.start;
    while j < cols.end {
        let nc = COL_TILE.min(cols.end - j);
        let mut wrs: [&[f32]; COL_TILE] = [&[]; COL_TILE];
        for (c, buf) in bufs.chunks_mut(k).enumerate().take(nc) {
            wrs[c] = w.row(j + c, buf);
        }
        let mut r = rows.start;
        while r + ROW_TILE <= rows.end {
            let xs: [&[f32]; ROW_TILE] = std::array::from_fn(|i| &x[(r + i) * k..(r + i + 1) * k]);
            for (c, wr) in wrs.iter().enumerate().take(nc) {
                for (i, a) in dot_rows(&xs, wr).into_iter().enumerate() {
                    unsafe { *out.at((r + i) * n + j + c) = reduce(a) };
                }
            }
            r += ROW_TILE;
        }
        for r in r..rows.end {
            let xr = &x[r * k..(r + 1) * k];
            if nc == COL_TILE {
                for (c, a) in dot_rows(&wrs, xr).into_iter().enumerate() {
                    unsafe { *out.at(r * n + j + c) = reduce(a) };
                }
            } else {
                for (c, wr) in wrs.iter().enumerate().take(nc) {
                    unsafe { *out.at(r * n + j + c) = reduce(dot_lanes(xr, wr)) };
                }
            }
        }
        j += nc;
    }
}

/// `ROW_TILE` dot products against one weight row, each with exactly `dot_lanes`' order.
#[inline(always)]
fn dot_rows(xs: &[&[f32]; ROW_TILE], wr: &[f32]) -> [[f32; LANES]; ROW_TILE] {
    let mut acc = [[0f32; LANES]; ROW_TILE];
    let k = wr.len();
    let full = k / LANES * LANES;
    let mut c = 0;
    while c < full {
        let wc = &wr[c..c + LANES];
        for (i, xr) in xs.iter().enumerate() {
            let xc = &xr[c..c + LANES];
            for l in 0..LANES {
                acc[i][l] += xc[l] * wc[l];
            }
        }
        c += LANES;
    }
    for t in full..k {
        for (i, xr) in xs.iter().enumerate() {
            acc[i][t % LANES] += xr[t] * wr[t];
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::dot;

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
                    dot(&x[r * k..(r + 1) * k], &w[j * k..(j + 1) * k]).to_bits()
                );
            }
        }
        for m in [1usize, 2, 5, 13] {
            let mut part = vec![0.0; m * n];
            matmul_t(&x[..m * k], m, &wt, &mut part);
            assert_eq!(part, full[..m * n], "rows differ at m={m}");
        }
    }
}
