//! `out = x · wᵀ` for row-major `x` (m×k) and `w` (n×k), the layout of every linear layer's weight.
//!
//! Batch invariance: every output element is [`dot_fma`]`(x_row, w_row)` — 16 lane accumulators
//! updated with fused multiply-adds in index order, then a fixed pairwise tree — whichever tile
//! it falls in and however many rows the call has. Tiles only decide which dot products run
//! side by side: 4 x-rows × 4 weight rows (16 accumulators, one AVX-512 register each) while both
//! remain, narrower at the edges. The kernel is compiled for AVX-512, AVX2 and plain x86-64 and
//! picked once per machine; all three compute the same fused operations.

use super::SyncPtr;
use super::dot::{LANES, reduce};
use super::weight::{PackedKind, Q4_1_BYTES, Q8_0_BYTES, Weight, f16_table};
use rayon::prelude::*;

/// Output columns (weight rows) per parallel task: small enough to spread a decode step's GEMV
/// over the threads, large enough to amortize the task.
const COLS_PER_TASK: usize = 32;
/// x rows per parallel task in large batches, so prefill keeps every thread busy.
const ROWS_PER_TASK: usize = 64;
const TILE: usize = 4;

pub fn matmul_t(x: &[f32], m: usize, w: &Weight, out: &mut [f32]) {
    let (k, n) = (w.k, w.rows());
    assert_eq!(x.len(), m * k, "matmul_t: x is not m×k");
    assert_eq!(out.len(), m * n, "matmul_t: out is not m×n");
    let out_ptr = SyncPtr(out.as_mut_ptr());
    let col_tasks = n.div_ceil(COLS_PER_TASK);
    let row_block = if m >= ROWS_PER_TASK {
        ROWS_PER_TASK
    } else {
        m.max(1)
    };
    let row_tasks = m.div_ceil(row_block);
    let kernel = pick_kernel();
    (0..col_tasks * row_tasks).into_par_iter().for_each(|task| {
        let (rt, ct) = (task / col_tasks, task % col_tasks);
        let cols = ct * COLS_PER_TASK..((ct + 1) * COLS_PER_TASK).min(n);
        let rows = rt * row_block..((rt + 1) * row_block).min(m);
        // SAFETY: tasks write disjoint (row, col) ranges of `out`, which outlives the loop; the
        // kernel's CPU features were checked by `pick_kernel`.
        unsafe { kernel(x, w, rows, cols, out_ptr) };
    });
}

type Range = std::ops::Range<usize>;
type Kernel = unsafe fn(&[f32], &Weight, Range, Range, SyncPtr);

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
unsafe fn tile_avx512(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    unsafe { tile_inline::<Avx512>(x, w, rows, cols, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    unsafe { tile_inline::<Portable>(x, w, rows, cols, out) }
}

/// Without hardware FMA `mul_add` is a (correct, slow) library call: same results, rare machines.
unsafe fn tile_generic(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    unsafe { tile_inline::<Portable>(x, w, rows, cols, out) }
}

/// R×C dot products side by side, each with exactly [`dot_fma`]'s lane accumulation.
trait Micro {
    /// Each x row (k wide, `xs` holds several) against 4 packed weight rows, decoding each
    /// block in registers to exactly the values `Weight::row` gives. `false`: not supported here.
    fn run_packed(
        _xs: &[f32],
        _k: usize,
        _kind: PackedKind,
        _ws: &[&[u8]; 4],
        _put: &mut impl FnMut(usize, usize, [f32; LANES]),
    ) -> bool {
        false
    }
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
    fn run_packed(
        xs: &[f32],
        k: usize,
        kind: PackedKind,
        ws: &[&[u8]; 4],
        put: &mut impl FnMut(usize, usize, [f32; LANES]),
    ) -> bool {
        let t16 = f16_table();
        for (i, x) in xs.chunks_exact(k).enumerate() {
            // SAFETY: only reached from `tile_avx512` (AVX-512F checked); every row holds
            // k/32 whole blocks, so all reads below stay inside `x` and the four weight rows.
            let acc = unsafe {
                match kind {
                    PackedKind::Q4_1 => packed_dot4::<true>(x, k, ws, t16),
                    PackedKind::Q8_0 => packed_dot4::<false>(x, k, ws, t16),
                }
            };
            for (c, a) in acc.into_iter().enumerate() {
                put(i, c, a);
            }
        }
        true
    }

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

/// Weight rows are fetched (decoded, if packed) 4 at a time and used against every x row of
/// the task.
#[inline(always)]
unsafe fn tile_inline<M: Micro>(x: &[f32], w: &Weight, rows: Range, cols: Range, out: SyncPtr) {
    let (k, n) = (w.k, w.rows());
    // decoded-row scratch, allocated only if some row is not handled in registers
    let mut bufs = Vec::new();
    let mut j = cols.start;
    while j < cols.end {
        let nc = TILE.min(cols.end - j);
        // Few x rows (decode): packed weight rows go straight from their bytes into registers.
        if rows.len() < TILE && nc == TILE {
            let packed: [Option<(PackedKind, &[u8])>; TILE] =
                std::array::from_fn(|c| w.packed_row(j + c));
            if let [
                Some((kind, b0)),
                Some((k1, b1)),
                Some((k2, b2)),
                Some((k3, b3)),
            ] = packed
                && k1 == kind
                && k2 == kind
                && k3 == kind
                && M::run_packed(
                    &x[rows.start * k..rows.end * k],
                    k,
                    kind,
                    &[b0, b1, b2, b3],
                    &mut |i, c, a| unsafe { *out.at((rows.start + i) * n + j + c) = reduce(a) },
                )
            {
                j += nc;
                continue;
            }
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

/// One x row against 4 packed rows (Q4_1 if `Q41`, else Q8_0), each block decoded in registers
/// to exactly the scalar decoder's values (`q·d + m` rounded twice; `q·d`) and fed to the FMAs
/// in index order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn packed_dot4<const Q41: bool>(
    x: &[f32],
    k: usize,
    ws: &[&[u8]; 4],
    t16: &[f32],
) -> [[f32; LANES]; 4] {
    use std::arch::x86_64::*;
    let bsize = if Q41 { Q4_1_BYTES } else { Q8_0_BYTES };
    let wp: [*const u8; 4] = ws.map(|w| w.as_ptr());
    let xp = x.as_ptr();
    let f16 =
        |p: *const u8| unsafe { *t16.get_unchecked(u16::from_le_bytes([*p, *p.add(1)]) as usize) };
    unsafe {
        let nib = _mm_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); 4];
        for blk in 0..k / 32 {
            let x0 = _mm512_loadu_ps(xp.add(blk * 32));
            let x1 = _mm512_loadu_ps(xp.add(blk * 32 + 16));
            for c in 0..4 {
                let b = wp[c].add(blk * bsize);
                let d = _mm512_set1_ps(f16(b));
                let (y0, y1) = if Q41 {
                    let m = _mm512_set1_ps(f16(b.add(2)));
                    let q = _mm_loadu_si128(b.add(4) as *const __m128i);
                    let lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(q, nib)));
                    let hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(
                        _mm_srli_epi16(q, 4),
                        nib,
                    )));
                    (
                        _mm512_add_ps(_mm512_mul_ps(lo, d), m),
                        _mm512_add_ps(_mm512_mul_ps(hi, d), m),
                    )
                } else {
                    let q0 = _mm_loadu_si128(b.add(2) as *const __m128i);
                    let q1 = _mm_loadu_si128(b.add(18) as *const __m128i);
                    (
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d),
                    )
                };
                acc[c] = _mm512_fmadd_ps(x0, y0, acc[c]);
                acc[c] = _mm512_fmadd_ps(x1, y1, acc[c]);
            }
        }
        acc.map(|v| {
            let mut a = [0f32; LANES];
            _mm512_storeu_ps(a.as_mut_ptr(), v);
            a
        })
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
            unsafe { kern(&x, &wt, 0..37, 0..n, SyncPtr(o.as_mut_ptr())) };
            assert_eq!(o, full);
        }
        for m in [1usize, 2, 3, 5, 13] {
            let mut part = vec![0.0; m * n];
            matmul_t(&x[..m * k], m, &wt, &mut part);
            assert_eq!(part, full[..m * n], "rows differ at m={m}");
        }
    }

    /// Packed Q4_1 / Q8_0 weights: rows computed alone (decoded in registers) equal the same rows
    /// in a 9-row batch (decoded to f32 rows first), bit for bit.
    #[test]
    fn packed_rows_alone_equal_batched() {
        use crate::cpu::weight::{Q4_1_BYTES, Q8_0_BYTES, random_blocks};
        let (rows, k, m) = (40usize, 96usize, 9usize);
        for (size, scales) in [(Q4_1_BYTES, 2), (Q8_0_BYTES, 1)] {
            let bytes = random_blocks(11, rows * k / 32 * size, size, scales);
            let w = if size == Q4_1_BYTES {
                Weight::q4_1(rows, k, bytes)
            } else {
                Weight::q8_0(rows, k, bytes)
            };
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
                .collect();
            let mut batched = vec![0f32; m * rows];
            matmul_t(&x, m, &w, &mut batched);
            for r in 0..m {
                let mut one = vec![0f32; rows];
                matmul_t(&x[r * k..(r + 1) * k], 1, &w, &mut one);
                assert_eq!(
                    one,
                    batched[r * rows..(r + 1) * rows],
                    "row {r}, block size {size}"
                );
            }
        }
    }
}
