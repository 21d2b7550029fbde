//! K-quant dequantization: 256-element super-blocks split into sub-blocks with their own
//! (quantized) scales. Transcribed from ggml-quants.c `dequantize_row_q{2,3,4,5,6}_K`, keeping
//! its evaluation order (e.g. `d * sc` first, then times the quant) so results are bit-exact.

use crate::dequant::f16_at;

const QK_K: usize = 256;

/// Unpacks the 6-bit scale and min of sub-block `j` (0..8) from Q4_K/Q5_K's 12 scale bytes:
/// sub-blocks 0..4 use the low 6 bits of bytes j and j+4; sub-blocks 4..8 take their low
/// nibbles from byte j+4 and their top 2 bits from the spare high bits of bytes j-4 and j.
/// (ggml's `get_scale_min_k4`.)
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }`: 16 sub-blocks of 16 values,
/// each with a 4-bit scale (low nibble) and 4-bit min (high nibble); 2-bit quants.
pub(crate) fn q2_k(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(84).zip(out.chunks_exact_mut(QK_K)) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, min) = (f16_at(&b[80..]), f16_at(&b[82..]));
        let mut sc = scales.iter();
        let mut y = y.iter_mut();
        // Two halves of 128 values, each reading 32 quant bytes four times at shifts 0,2,4,6.
        for q in qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for part in [&q[..16], &q[16..]] {
                    let s = sc.next().copied().unwrap_or(0);
                    let dl = d * (s & 0x0F) as f32;
                    let ml = min * (s >> 4) as f32;
                    for (&q, y) in part.iter().zip(&mut y) {
                        *y = dl * ((q >> shift) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// `block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }`: 16 signed 6-bit scales
/// packed into 12 bytes; 2 low quant bits in `qs`, the third in `hmask` (a *clear* bit means
/// subtract 4).
pub(crate) fn q3_k(data: &[u8], out: &mut [f32]) {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    for (b, y) in data.chunks_exact(110).zip(out.chunks_exact_mut(QK_K)) {
        let (hmask, qs, packed) = (&b[..32], &b[32..96], &b[96..108]);
        let d_all = f16_at(&b[108..]);
        let word = |i: usize| {
            u32::from_le_bytes([
                packed[4 * i],
                packed[4 * i + 1],
                packed[4 * i + 2],
                packed[4 * i + 3],
            ])
        };
        let (a0, a1, tmp) = (word(0), word(1), word(2));
        // Low 4 bits from a0/a1 nibbles, high 2 bits from `tmp`, as in ggml.
        let aux = [
            (a0 & KMASK2) | ((tmp & KMASK1) << 4),
            (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
            ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
            ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
        ];
        let mut scales = aux.iter().flat_map(|w| w.to_le_bytes());
        let mut y = y.iter_mut();
        let mut m = 1u8;
        for q in qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (part, hm) in [(&q[..16], &hmask[..16]), (&q[16..], &hmask[16..])] {
                    let s = scales.next().unwrap_or(0) as i8;
                    let dl = d_all * (s as i32 - 32) as f32;
                    for ((&q, &h), y) in part.iter().zip(hm).zip(&mut y) {
                        let v = ((q >> shift) & 3) as i32 - if h & m != 0 { 0 } else { 4 };
                        *y = dl * v as f32;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }`: 8 sub-blocks of 32 with
/// 6-bit scale/min; each 32 quant bytes hold sub-block 2i in low and 2i+1 in high nibbles.
pub(crate) fn q4_k(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(144).zip(out.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b), f16_at(&b[2..]));
        let (scales, qs) = (&b[4..16], &b[16..144]);
        for (i, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * i, scales);
            let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for ((&q, lo), hi) in q.iter().zip(lo).zip(hi) {
                *lo = d1 * (q & 0x0F) as f32 - m1;
                *hi = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }`: Q4_K plus a fifth
/// bit per value; sub-block k takes its fifth bits from bit k of `qh`.
pub(crate) fn q5_k(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(176).zip(out.chunks_exact_mut(QK_K)) {
        let (d, min) = (f16_at(b), f16_at(&b[2..]));
        let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
        for (i, (ql, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * i, scales);
            let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * i), 2u8 << (2 * i));
            let (lo, hi) = y.split_at_mut(32);
            for (((&q, &h), lo), hi) in ql.iter().zip(qh).zip(lo).zip(hi) {
                let h1 = if h & u1 != 0 { 16 } else { 0 };
                let h2 = if h & u2 != 0 { 16 } else { 0 };
                *lo = d1 * ((q & 0x0F) + h1) as f32 - m1;
                *hi = d2 * ((q >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }`: 6-bit quants, 4 low bits in
/// `ql`, 2 high bits in `qh`, 16 sub-blocks of 16 with signed 8-bit scales. Each half of 128
/// values uses 64 `ql` bytes, 32 `qh` bytes and 8 scales.
pub(crate) fn q6_k(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(&b[208..]);
        let halves = b[..128].chunks_exact(64).zip(b[128..192].chunks_exact(32));
        let scales = b[192..208].chunks_exact(8);
        for (((ql, qh), sc), y) in halves.zip(scales).zip(y.chunks_exact_mut(128)) {
            let sc = |i: usize| d * (sc[i] as i8) as f32;
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = sc(is) * q1 as f32;
                y[l + 32] = sc(is + 2) * q2 as f32;
                y[l + 64] = sc(is + 4) * q3 as f32;
                y[l + 96] = sc(is + 6) * q4 as f32;
            }
        }
    }
}
