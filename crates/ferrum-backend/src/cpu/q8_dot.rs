//! Integer dot products of 8-bit-quantized activations with ggml Q4_1 / Q8_0 weight rows — what
//! llama.cpp does on the CPU (its `quantize_row_q8_1` + `ggml_vec_dot_q4_1_q8_1`, and `q8_0·q8_0`).
//!
//! **Activations.** Each x row is quantized on its own, in blocks of 32 exactly as llama.cpp's
//! x86 code does: `amax = max |x|`, `d = amax / 127` (kept as f16, like ggml), `q = round_even(x ·
//! 127/amax)`, and for Q4_1's min term the block sum `s = f16(d · Σq)`. So a row's quantization
//! never depends on the other rows of the batch.
//!
//! **The canonical order** of one output element (x row · weight row), per block `b` in order:
//! `sumi = Σ wq·xq` (exact in i32, any order), then
//! - Q8_0: `acc = fma(dw·dx, sumi, acc)`; the result is `acc`;
//! - Q4_1: `acc = fma(dw·dx, sumi, acc)`, `accm = fma(mw, sx, accm)`; the result is `acc + accm`.
//!
//! The portable code is that loop, one element at a time. The AVX2 kernel computes 8 weight rows
//! side by side (one f32 lane each, `maddubs`/`madd` for the integer part), so it performs the
//! same IEEE operations per element and gives the same bits (tested), whatever the batch size,
//! the tile, the thread split, or the machine.

use super::SyncPtr;
use super::par::for_each_task;
use super::weight::{PackedKind, Q4_1_BYTES, Q8_0_BYTES, f16_table};

type Range = std::ops::Range<usize>;

/// Weight rows computed side by side by the SIMD kernel.
pub(crate) const GROUP: usize = 8;

/// The x rows of one matmul call, quantized per row in blocks of 32.
pub(crate) struct QuantRows {
    /// k values per row.
    pub k: usize,
    /// i8 quants, m × k.
    pub q: Vec<i8>,
    /// Per block: `f16(amax/127)` as f32, m × k/32.
    pub d: Vec<f32>,
    /// Per block: `f16((amax/127) · Σq)` as f32 (Q4_1's min term), m × k/32.
    pub s: Vec<f32>,
}

/// Rows from this many up are quantized in parallel, this many per task.
const PAR_ROWS: usize = 16;

impl QuantRows {
    pub(crate) fn new(x: &[f32], m: usize, k: usize) -> QuantRows {
        assert!(k.is_multiple_of(32), "int8 activations need k % 32 == 0");
        assert_eq!(x.len(), m * k);
        let nb = k / 32;
        let mut q = vec![0i8; m * k];
        let mut d = vec![0f32; m * nb];
        let mut s = vec![0f32; m * nb];
        if m >= PAR_ROWS {
            let (qp, dp, sp) = (
                q.as_mut_ptr() as usize,
                d.as_mut_ptr() as usize,
                s.as_mut_ptr() as usize,
            );
            for_each_task(m.div_ceil(PAR_ROWS), &|t| {
                let rows = t * PAR_ROWS..((t + 1) * PAR_ROWS).min(m);
                let n = rows.len();
                // SAFETY: each task writes its own rows of the three buffers, which outlive the
                // loop (`for_each_task` returns when every task is done).
                let (q, d, s) = unsafe {
                    (
                        std::slice::from_raw_parts_mut((qp as *mut i8).add(rows.start * k), n * k),
                        std::slice::from_raw_parts_mut(
                            (dp as *mut f32).add(rows.start * nb),
                            n * nb,
                        ),
                        std::slice::from_raw_parts_mut(
                            (sp as *mut f32).add(rows.start * nb),
                            n * nb,
                        ),
                    )
                };
                quantize_blocks(&x[rows.start * k..rows.end * k], q, d, s);
            });
        } else {
            quantize_blocks(x, &mut q, &mut d, &mut s);
        }
        QuantRows { k, q, d, s }
    }

    fn nb(&self) -> usize {
        self.k / 32
    }
}

fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features (checked above).
        return unsafe { quantize_blocks_avx2(x, q, d, s) };
    }
    quantize_blocks_inline(x, q, d, s)
}

/// The same scalar code with SSE4.1's rounding and F16C available to the compiler: identical
/// IEEE results, no library calls.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_blocks_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quantize_blocks_inline(x, q, d, s)
}

#[inline(always)]
fn quantize_blocks_inline(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((xb, qb), d), s) in x
        .chunks_exact(32)
        .zip(q.chunks_exact_mut(32))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        let xb: &[f32; 32] = xb.try_into().unwrap();
        let qb: &mut [i8; 32] = qb.try_into().unwrap();
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (qv, xv) in qb.iter_mut().zip(xb) {
            // |x·inv| ≤ 127 (up to rounding), so the saturating cast never clips a real value
            *qv = (xv * inv).round_ties_even() as i8;
            sum += *qv as i32;
        }
        *d = half::f16::from_f32(scale).to_f32();
        *s = half::f16::from_f32(scale * sum as f32).to_f32();
    }
}

/// An int8 kernel: [`cols_portable`], or [`cols_avx2`] (the same bits, faster).
pub(crate) type Int8Kernel = unsafe fn(PackedKind, &QuantRows, &[u8], Range, SyncPtr, usize, usize);

/// The AVX2 kernel where the CPU has AVX2, FMA and F16C, else the portable one.
pub(crate) fn pick_int8() -> Int8Kernel {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        return cols_avx2;
    }
    cols_portable
}

/// `out[r·n + j + c] = x_r · w_c` for every x row `r` in `rows` and the weight rows `w_c` that
/// `w` holds back to back (all of `kind`), one element at a time in the canonical order.
///
/// # Safety
/// `out` must hold `rows.end × n` floats, `j + (weight rows) ≤ n`, and no other thread may write
/// those elements meanwhile.
pub(crate) unsafe fn cols_portable(
    kind: PackedKind,
    q: &QuantRows,
    w: &[u8],
    rows: Range,
    out: SyncPtr,
    n: usize,
    j: usize,
) {
    let (k, nb) = (q.k, q.nb());
    let rb = nb * block_bytes(kind);
    assert!(
        w.len().is_multiple_of(rb),
        "weight rows are not k/32 blocks"
    );
    for r in rows {
        let xq = &q.q[r * k..(r + 1) * k];
        let (xd, xs) = (&q.d[r * nb..(r + 1) * nb], &q.s[r * nb..(r + 1) * nb]);
        for (c, w) in w.chunks_exact(rb).enumerate() {
            let v = match kind {
                PackedKind::Q4_1 => dot_q4_1(w, xq, xd, xs),
                PackedKind::Q8_0 => dot_q8_0(w, xq, xd),
            };
            // SAFETY: in bounds and unshared (the caller's contract).
            unsafe { *out.at(r * n + j + c) = v };
        }
    }
}

fn block_bytes(kind: PackedKind) -> usize {
    match kind {
        PackedKind::Q4_1 => Q4_1_BYTES,
        PackedKind::Q8_0 => Q8_0_BYTES,
    }
}

/// One Q4_1 weight row · one quantized x row, in the canonical order.
pub(crate) fn dot_q4_1(w: &[u8], xq: &[i8], xd: &[f32], xs: &[f32]) -> f32 {
    let t = f16_table();
    let (mut acc, mut accm) = (0f32, 0f32);
    for (((b, xb), &dx), &sx) in w
        .chunks_exact(Q4_1_BYTES)
        .zip(xq.chunks_exact(32))
        .zip(xd)
        .zip(xs)
    {
        let dw = t[u16::from_le_bytes([b[0], b[1]]) as usize];
        let mw = t[u16::from_le_bytes([b[2], b[3]]) as usize];
        let mut sumi = 0i32;
        for i in 0..16 {
            sumi += (b[4 + i] & 0x0F) as i32 * xb[i] as i32;
            sumi += (b[4 + i] >> 4) as i32 * xb[i + 16] as i32;
        }
        acc = (dw * dx).mul_add(sumi as f32, acc);
        accm = mw.mul_add(sx, accm);
    }
    acc + accm
}

/// One Q8_0 weight row · one quantized x row, in the canonical order.
pub(crate) fn dot_q8_0(w: &[u8], xq: &[i8], xd: &[f32]) -> f32 {
    let t = f16_table();
    let mut acc = 0f32;
    for ((b, xb), &dx) in w.chunks_exact(Q8_0_BYTES).zip(xq.chunks_exact(32)).zip(xd) {
        let dw = t[u16::from_le_bytes([b[0], b[1]]) as usize];
        let sumi: i32 = (0..32).map(|i| b[2 + i] as i8 as i32 * xb[i] as i32).sum();
        acc = (dw * dx).mul_add(sumi as f32, acc);
    }
    acc
}

/// [`cols_portable`] with AVX2: 8 weight rows side by side (in a last, short group the missing
/// ones repeat its last row and are not stored), each x row in turn against them while they sit
/// in L1; the next group's bytes are prefetched during the first x row.
///
/// # Safety
/// As [`cols_portable`], and the CPU must have AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn cols_avx2(
    kind: PackedKind,
    q: &QuantRows,
    w: &[u8],
    rows: Range,
    out: SyncPtr,
    n: usize,
    j: usize,
) {
    let (k, nb) = (q.k, q.nb());
    let rb = nb * block_bytes(kind);
    assert!(
        w.len().is_multiple_of(rb),
        "weight rows are not k/32 blocks"
    );
    assert!(q.q.len() >= rows.end * k && q.d.len() >= rows.end * nb);
    let ncols = w.len() / rb;
    for g in (0..ncols).step_by(GROUP) {
        let nc = GROUP.min(ncols - g);
        let wp: [*const u8; GROUP] =
            std::array::from_fn(|c| w[(g + c.min(nc - 1)) * rb..].as_ptr());
        // a hint only (never dereferenced): past the end it fetches a few unneeded lines
        let next = w.as_ptr().wrapping_add((g + GROUP) * rb);
        let mut r = rows.start;
        while r < rows.end {
            let rr = if rows.end - r >= XR { XR } else { 1 };
            // SAFETY: every read below stays inside rows r..r+rr of `q` and the weight rows
            // (checked above: k/32 whole blocks each).
            let x = unsafe {
                XRows {
                    q: q.q.as_ptr().add(r * k),
                    d: q.d.as_ptr().add(r * nb),
                    s: q.s.as_ptr().add(r * nb),
                    k,
                }
            };
            let put = |i: usize, v: [f32; GROUP]| {
                for (c, v) in v.into_iter().enumerate().take(nc) {
                    // SAFETY: in bounds and unshared (the caller's contract).
                    unsafe { *out.at((r + i) * n + j + g + c) = v };
                }
            };
            // the next group's bytes are fetched during the first x rows
            let pf = r == rows.start;
            macro_rules! run {
                ($kernel:ident, $r:expr) => {{
                    // SAFETY: as above; the features are this function's.
                    let v = unsafe {
                        if pf {
                            $kernel::<{ $r }, true>(x, nb, &wp, next)
                        } else {
                            $kernel::<{ $r }, false>(x, nb, &wp, next)
                        }
                    };
                    for (i, v) in v.into_iter().enumerate() {
                        put(i, v);
                    }
                }};
            }
            match (kind, rr) {
                (PackedKind::Q4_1, XR) => run!(q4_1_x8, XR),
                (PackedKind::Q4_1, _) => run!(q4_1_x8, 1),
                (PackedKind::Q8_0, XR) => run!(q8_0_x8, XR),
                (PackedKind::Q8_0, _) => run!(q8_0_x8, 1),
            }
            r += rr;
        }
    }
}

/// x rows per call of the kernels in large batches (prefill): weight blocks unpacked once for all.
#[cfg(target_arch = "x86_64")]
const XR: usize = 4;

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rd_u32(p: *const u8) -> i32 {
    unsafe { (p as *const i32).read_unaligned() }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rd_u16(p: *const u8) -> i16 {
    unsafe { (p as *const i16).read_unaligned() }
}

/// Spreads the prefetch of the next group's bytes over this group's block loop: per block,
/// the lines of `next[from..from + len]` (a hint: never dereferenced, may point anywhere).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_next(next: *const u8, from: usize, len: usize) {
    use std::arch::x86_64::*;
    let mut o = 0;
    while o < len {
        unsafe { _mm_prefetch(next.wrapping_add(from + o) as *const i8, _MM_HINT_T0) };
        o += 64;
    }
}

/// Where R consecutive quantized x rows start (quants, scales, block sums).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct XRows {
    q: *const i8,
    d: *const f32,
    s: *const f32,
    /// k: the distance between rows in `q`; rows of `d`/`s` are k/32 apart.
    k: usize,
}

/// 8 Q4_1 weight rows · R x rows. Lane c of every vector is weight row c; the weight bytes are
/// unpacked once per block for all R rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_x8<const R: usize, const PF: bool>(
    x: XRows,
    nb: usize,
    w: &[*const u8; GROUP],
    next: *const u8,
) -> [[f32; GROUP]; R] {
    use std::arch::x86_64::*;
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        // per 128-bit lane: the 4 `d` halves (bytes 0-1 of each u32), then the 4 `m` halves
        let split = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3,
            6, 7, 10, 11, 14, 15,
        );
        let mut acc = [_mm256_setzero_ps(); R];
        let mut accm = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let off = b * Q4_1_BYTES;
            if PF {
                prefetch_next(next, b * GROUP * Q4_1_BYTES, GROUP * Q4_1_BYTES);
            }
            let xq = |i: usize, half: usize| {
                _mm256_broadcastsi128_si256(_mm_loadu_si128(
                    x.q.add(i * x.k + b * 32 + half) as *const __m128i
                ))
            };
            // s[i][p] = [row p: 4 partial sums | row p+4: 4 partial sums] for x row i
            let mut s = [[_mm256_setzero_si256(); 4]; R];
            for p in 0..4 {
                let v = _mm256_loadu2_m128i(
                    w[p + 4].add(off + 4) as *const __m128i,
                    w[p].add(off + 4) as *const __m128i,
                );
                let lo = _mm256_and_si256(v, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                for (i, si) in s.iter_mut().enumerate() {
                    // each i16: two products of ≤ 15·127, so the sum of four never saturates
                    let s16 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(lo, xq(i, 0)),
                        _mm256_maddubs_epi16(hi, xq(i, 16)),
                    );
                    si[p] = _mm256_madd_epi16(s16, ones);
                }
            }
            let dm = _mm256_setr_epi32(
                rd_u32(w[0].add(off)),
                rd_u32(w[1].add(off)),
                rd_u32(w[2].add(off)),
                rd_u32(w[3].add(off)),
                rd_u32(w[4].add(off)),
                rd_u32(w[5].add(off)),
                rd_u32(w[6].add(off)),
                rd_u32(w[7].add(off)),
            );
            // [d0-3, d4-7 | m0-3, m4-7]
            let dm = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(dm, split), 0b11_01_10_00);
            let dw = _mm256_cvtph_ps(_mm256_castsi256_si128(dm));
            let mw = _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1));
            for (i, si) in s.iter().enumerate() {
                // [r0 r1 r2 r3 | r4 r5 r6 r7], each the block's exact integer dot
                let sumi = _mm256_hadd_epi32(
                    _mm256_hadd_epi32(si[0], si[1]),
                    _mm256_hadd_epi32(si[2], si[3]),
                );
                let xd = _mm256_set1_ps(*x.d.add(i * (x.k / 32) + b));
                let xs = _mm256_set1_ps(*x.s.add(i * (x.k / 32) + b));
                acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, xd), _mm256_cvtepi32_ps(sumi), acc[i]);
                accm[i] = _mm256_fmadd_ps(mw, xs, accm[i]);
            }
        }
        std::array::from_fn(|i| {
            let mut o = [0f32; GROUP];
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_add_ps(acc[i], accm[i]));
            o
        })
    }
}

/// 8 Q8_0 weight rows · R x rows. Lane c of every vector is weight row c.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_x8<const R: usize, const PF: bool>(
    x: XRows,
    nb: usize,
    w: &[*const u8; GROUP],
    next: *const u8,
) -> [[f32; GROUP]; R] {
    use std::arch::x86_64::*;
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let off = b * Q8_0_BYTES;
            if PF {
                prefetch_next(next, b * GROUP * Q8_0_BYTES, GROUP * Q8_0_BYTES);
            }
            let xv: [__m256i; R] = std::array::from_fn(|i| {
                _mm256_loadu_si256(x.q.add(i * x.k + b * 32) as *const __m256i)
            });
            // p[i][c] = weight row c's 8 partial sums with x row i; |w| ≤ 128, |x| ≤ 127: a
            // pair never saturates
            let mut p = [[_mm256_setzero_si256(); GROUP]; R];
            for c in 0..GROUP {
                let wv = _mm256_loadu_si256(w[c].add(off + 2) as *const __m256i);
                let aw = _mm256_abs_epi8(wv);
                for i in 0..R {
                    let prod = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv[i], wv));
                    p[i][c] = _mm256_madd_epi16(prod, ones);
                }
            }
            let dw = _mm256_cvtph_ps(_mm_setr_epi16(
                rd_u16(w[0].add(off)),
                rd_u16(w[1].add(off)),
                rd_u16(w[2].add(off)),
                rd_u16(w[3].add(off)),
                rd_u16(w[4].add(off)),
                rd_u16(w[5].add(off)),
                rd_u16(w[6].add(off)),
                rd_u16(w[7].add(off)),
            ));
            for (i, p) in p.iter().enumerate() {
                // [r0 r1 r2 r3 | r0 r1 r2 r3] (sums of lanes 0-3 | of lanes 4-7), then rows 4-7
                let h0 =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
                let h1 =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
                let sumi = _mm256_add_epi32(
                    _mm256_permute2x128_si256(h0, h1, 0x20),
                    _mm256_permute2x128_si256(h0, h1, 0x31),
                );
                let xd = _mm256_set1_ps(*x.d.add(i * (x.k / 32) + b));
                acc[i] = _mm256_fmadd_ps(_mm256_mul_ps(dw, xd), _mm256_cvtepi32_ps(sumi), acc[i]);
            }
        }
        std::array::from_fn(|i| {
            let mut o = [0f32; GROUP];
            _mm256_storeu_ps(o.as_mut_ptr(), acc[i]);
            o
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::weight::random_blocks;

    fn xs(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..m * k)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0;
                // a few outliers and an all-zero block, as real activations have
                if i % 97 == 0 {
                    v * 40.0
                } else if (64..96).contains(&(i % (k * 3))) {
                    0.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// llama.cpp's reference quantizer (`quantize_row_q8_1_ref`, with its x86 code's rounding to
    /// even), spelled out: the stored values equal it.
    #[test]
    fn quantization_matches_ggml() {
        let (m, k) = (3, 128);
        let x = xs(m, k, 1);
        let q = QuantRows::new(&x, m, k);
        for (bi, xb) in x.chunks(32).enumerate() {
            let amax = xb.iter().map(|v| v.abs()).fold(0f32, f32::max);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0;
            for (t, v) in xb.iter().enumerate() {
                let want = (v * (127.0 / amax.max(f32::MIN_POSITIVE))).round_ties_even();
                let got = q.q[bi * 32 + t] as f32;
                assert_eq!(got, if amax == 0.0 { 0.0 } else { want }, "block {bi}");
                assert!((got - v * id).abs() <= 0.5 + 1e-3);
                sum += q.q[bi * 32 + t] as i32;
            }
            assert_eq!(q.d[bi], half::f16::from_f32(d).to_f32());
            assert_eq!(q.s[bi], half::f16::from_f32(d * sum as f32).to_f32());
        }
    }

    /// Every kernel this CPU runs gives the portable bits, for every row count, and a row alone
    /// equals the same row in a batch of 7; both close to the f64 dot of the dequantized values.
    #[test]
    fn kernels_agree_bit_for_bit_and_rows_are_batch_invariant() {
        let mut kernels: Vec<Int8Kernel> = vec![cols_portable];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            kernels.push(cols_avx2);
        }
        for (kind, size, scales) in [
            (PackedKind::Q4_1, Q4_1_BYTES, 2),
            (PackedKind::Q8_0, Q8_0_BYTES, 1),
        ] {
            let (n, k, m) = (13usize, 160usize, 7usize);
            let bytes = random_blocks(3, n * k / 32 * size, size, scales);
            let rb = k / 32 * size;
            let x = xs(m, k, 9);
            let q = QuantRows::new(&x, m, k);
            let run = |kern: Int8Kernel, q: &QuantRows, m: usize| {
                let mut out = vec![0f32; m * n];
                let p = SyncPtr(out.as_mut_ptr());
                // one run of 13 rows (a group of 8 and a ragged 5), then runs of 3, 9 and 1
                unsafe { kern(kind, q, &bytes, 0..m, p, n, 0) };
                let first = out.clone();
                for (a, b) in [(0, 3), (3, 12), (12, 13)] {
                    unsafe { kern(kind, q, &bytes[a * rb..b * rb], 0..m, p, n, a) };
                }
                assert_eq!(out, first, "{kind:?}: runs split differently");
                out
            };
            let want = run(cols_portable, &q, m);
            for &kern in &kernels {
                assert_eq!(
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    run(kern, &q, m)
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    "{kind:?}"
                );
                for r in 0..m {
                    let q1 = QuantRows::new(&x[r * k..(r + 1) * k], 1, k);
                    let one = run(kern, &q1, 1);
                    assert_eq!(one, want[r * n..(r + 1) * n], "{kind:?} row {r}");
                }
            }
            // close to the exact dot of the dequantized weights and the original x
            let mut deq = vec![0f32; n * k];
            let ty = match kind {
                PackedKind::Q4_1 => ferrum_gguf::GgmlType::Q4_1,
                PackedKind::Q8_0 => ferrum_gguf::GgmlType::Q8_0,
            };
            ferrum_gguf::dequantize(ty, &bytes, &mut deq).unwrap();
            for r in 0..m {
                for c in 0..n {
                    let exact: f64 = (0..k)
                        .map(|t| x[r * k + t] as f64 * deq[c * k + t] as f64)
                        .sum();
                    let scale: f64 = (0..k)
                        .map(|t| (x[r * k + t] as f64 * deq[c * k + t] as f64).abs())
                        .sum();
                    let got = want[r * n + c] as f64;
                    assert!(
                        (got - exact).abs() <= 0.02 * scale + 1e-6,
                        "{kind:?} ({r},{c}): {got} vs {exact} (Σ|·| {scale})"
                    );
                }
            }
        }
    }
}
