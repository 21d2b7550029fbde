//! Paged attention over a varlen batch: prefill chunks and decode steps in one call. K/V live in
//! a block-paged cache (`[num_slots, kv_heads·head_dim]`, slot = block·block_size + offset); each
//! query token attends causally to every cached position of its sequence up to its own.

use super::SyncPtr;
use super::dot::{dot_lanes, reduce};
use super::exp::exp;
use super::par::for_each_task;

/// One sequence's part of the batch.
pub struct AttnSeq<'a> {
    /// Index of its first query token in the flattened batch.
    pub q_start: usize,
    pub q_len: usize,
    /// Tokens in context after this step (cached + new); the query tokens are the last `q_len`.
    pub ctx_len: usize,
    pub block_table: &'a [u32],
}

pub(crate) fn slot(block_table: &[u32], block_size: usize, pos: usize) -> usize {
    block_table[pos / block_size] as usize * block_size + pos % block_size
}

/// Writes each token's K and V rows (`kv_dim` wide) into its cache slot.
pub fn write_kv(
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    k: &[f32],
    v: &[f32],
    slots: &[usize],
    kv_dim: usize,
) {
    for (t, &s) in slots.iter().enumerate() {
        k_cache[s * kv_dim..][..kv_dim].copy_from_slice(&k[t * kv_dim..][..kv_dim]);
        v_cache[s * kv_dim..][..kv_dim].copy_from_slice(&v[t * kv_dim..][..kv_dim]);
    }
}

/// [`write_kv`] into an FP8 cache: each value divided by its scale, rounded to the nearest
/// e4m3fn (ties to even), saturating at ±448, as vLLM's cache writes do.
pub fn write_kv_fp8(
    (k_cache, v_cache): (&mut [u8], &mut [u8]),
    (k, v): (&[f32], &[f32]),
    slots: &[usize],
    kv_dim: usize,
    (k_scale, v_scale): (f32, f32),
) {
    use super::fp8::f32_to_e4m3fn;
    for (t, &s) in slots.iter().enumerate() {
        let rows = (&k[t * kv_dim..][..kv_dim], &v[t * kv_dim..][..kv_dim]);
        for (o, &x) in k_cache[s * kv_dim..][..kv_dim].iter_mut().zip(rows.0) {
            *o = f32_to_e4m3fn(x / k_scale);
        }
        for (o, &x) in v_cache[s * kv_dim..][..kv_dim].iter_mut().zip(rows.1) {
            *o = f32_to_e4m3fn(x / v_scale);
        }
    }
}

pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub scale: f32,
}

/// Where attention reads one head's K or V row of a cache slot: f32 rows in place, or FP8 rows
/// widened (and scaled) into a buffer.
pub trait KvRows: Sync {
    /// The `hd` values of K (`v = false`) or V at flat offset `at` (slot · kv_dim + head · hd).
    fn row<'a>(&'a self, v: bool, at: usize, buf: &'a mut [f32]) -> &'a [f32];
}

/// An f32 cache: K and V, `[slot][kv_dim]`.
pub struct F32Rows<'a>(pub &'a [f32], pub &'a [f32]);

impl KvRows for F32Rows<'_> {
    #[inline(always)]
    fn row<'a>(&'a self, v: bool, at: usize, buf: &'a mut [f32]) -> &'a [f32] {
        &(if v { self.1 } else { self.0 })[at..][..buf.len()]
    }
}

/// An FP8 (e4m3fn) cache with one scale for K and one for V: value = fp8 · scale, one f32
/// product (vLLM's `scaled_convert`).
pub struct Fp8Rows<'a> {
    pub k: &'a [u8],
    pub v: &'a [u8],
    pub k_scale: f32,
    pub v_scale: f32,
}

impl KvRows for Fp8Rows<'_> {
    #[inline(always)]
    fn row<'a>(&'a self, v: bool, at: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let (bytes, scale) = if v {
            (self.v, self.v_scale)
        } else {
            (self.k, self.k_scale)
        };
        for (o, &b) in buf.iter_mut().zip(&bytes[at..]) {
            *o = super::fp8::e4m3fn_to_f32(b) * scale;
        }
        buf
    }
}

/// `q`: tokens × n_heads·head_dim; writes the same shape into `out`.
pub fn paged_attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    seqs: &[AttnSeq],
    shape: &AttnShape,
    out: &mut [f32],
) {
    paged_attention_rows(q, &F32Rows(k_cache, v_cache), seqs, shape, out)
}

/// [`paged_attention`] over any cache layout ([`KvRows`]).
pub fn paged_attention_rows<R: KvRows>(
    q: &[f32],
    kv: &R,
    seqs: &[AttnSeq],
    shape: &AttnShape,
    out: &mut [f32],
) {
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
        block_size,
        scale,
    } = *shape;
    let kv_dim = n_kv_heads * hd;
    let group = n_heads / n_kv_heads;
    // One task per (query token, kv head): the query heads that share a kv head read each K and
    // V row once between them; a decode step still spreads over every thread.
    let mut work = Vec::new(); // (token, seq, position, kv head)
    for (si, s) in seqs.iter().enumerate() {
        for i in 0..s.q_len {
            for g in 0..n_kv_heads {
                work.push((s.q_start + i, si, s.ctx_len - s.q_len + i, g));
            }
        }
    }
    // Each sequence's cache slots, computed once and shared by all its tokens and heads.
    let seq_slots: Vec<Vec<usize>> = seqs
        .iter()
        .map(|s| {
            (0..s.ctx_len)
                .map(|p| slot(s.block_table, block_size, p))
                .collect()
        })
        .collect();
    let out_ptr = SyncPtr(out.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    for_each_task(work.len(), &|i| {
        let (t, si, pos, g) = work[i];
        let rows = (t * n_heads + g * group) * hd;
        let qg = &q[rows..][..group * hd];
        // SAFETY: each (token, kv head) owns its group's output rows: one task writes them.
        let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(rows), group * hd) };
        let slots = &seq_slots[si][..=pos];
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 checked above.
            return unsafe { heads_avx2(qg, hd, kv, g * hd, kv_dim, slots, scale, o) };
        }
        heads(qg, hd, kv, g * hd, kv_dim, slots, scale, o);
    });
}

/// Wider registers for the same operations: results are bit-identical to [`heads`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn heads_avx2<R: KvRows>(
    q: &[f32],
    hd: usize,
    kv: &R,
    col: usize,
    kv_dim: usize,
    slots: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    heads(q, hd, kv, col, kv_dim, slots, scale, out)
}

/// The query rows of one GQA group (`q`: heads × `hd`) against their shared K/V head (columns
/// `col..col + hd` of each slot) at `slots`. Each head's arithmetic is the same sequence of
/// operations whatever the group size or batch: dot, max, exp and sums in slot order.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn heads<R: KvRows>(
    q: &[f32],
    hd: usize,
    kv: &R,
    col: usize,
    kv_dim: usize,
    slots: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    let (g, n) = (q.len() / hd, slots.len());
    let mut scores = vec![0f32; g * n]; // head-major
    let mut max = vec![f32::NEG_INFINITY; g];
    let mut buf = vec![0f32; hd];
    for (j, &sl) in slots.iter().enumerate() {
        let k = kv.row(false, sl * kv_dim + col, &mut buf);
        for (h, qh) in q.chunks_exact(hd).enumerate() {
            let sc = reduce(dot_lanes(qh, k)) * scale;
            max[h] = max[h].max(sc);
            scores[h * n + j] = sc;
        }
    }
    let mut sum = vec![0f32; g];
    for (h, row) in scores.chunks_exact_mut(n).enumerate() {
        // the exponentials vectorize; the sum stays in slot order
        for sc in row.iter_mut() {
            *sc = exp(*sc - max[h]);
        }
        sum[h] = row.iter().fold(0.0, |s, &e| s + e);
    }
    let mut acc = vec![0f32; g * hd];
    for (j, &sl) in slots.iter().enumerate() {
        let v = kv.row(true, sl * kv_dim + col, &mut buf);
        for (h, a) in acc.chunks_exact_mut(hd).enumerate() {
            let w = scores[h * n + j];
            for (a, &v) in a.iter_mut().zip(v) {
                *a += w * v;
            }
        }
    }
    for ((o, a), s) in out.chunks_exact_mut(hd).zip(acc.chunks_exact(hd)).zip(&sum) {
        for (o, a) in o.iter_mut().zip(a) {
            *o = a / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense causal attention in f64, the textbook formula.
    fn reference(q: &[f32], k: &[f32], v: &[f32], n: usize, shape: &AttnShape) -> Vec<f64> {
        let (heads, kvh, hd, scale) = (
            shape.n_heads,
            shape.n_kv_heads,
            shape.head_dim,
            shape.scale as f64,
        );
        let mut out = vec![0f64; n * heads * hd];
        for t in 0..n {
            for h in 0..heads {
                let g = h / (heads / kvh);
                let s: Vec<f64> = (0..=t)
                    .map(|j| {
                        (0..hd)
                            .map(|d| {
                                q[(t * heads + h) * hd + d] as f64
                                    * k[(j * kvh + g) * hd + d] as f64
                            })
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    out[(t * heads + h) * hd + d] = (0..=t)
                        .map(|j| e[j] / z * v[(j * kvh + g) * hd + d] as f64)
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn paged_matches_dense_and_chunking_is_invariant() {
        let (n, heads, kvh, hd, bs) = (11usize, 4usize, 2usize, 8usize, 4usize);
        let kv_dim = kvh * hd;
        let f = |i: usize, s: usize| (((i * 2654435761 + s) % 1000) as f32) / 500.0 - 1.0;
        let q: Vec<f32> = (0..n * heads * hd).map(|i| f(i, 1)).collect();
        let k: Vec<f32> = (0..n * kv_dim).map(|i| f(i, 2)).collect();
        let v: Vec<f32> = (0..n * kv_dim).map(|i| f(i, 3)).collect();
        let table = [5u32, 1, 3]; // scattered physical blocks
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: kvh,
            head_dim: hd,
            block_size: bs,
            scale: 0.3,
        };
        let (mut kc, mut vc) = (vec![0f32; 8 * bs * kv_dim], vec![0f32; 8 * bs * kv_dim]);
        let slots: Vec<usize> = (0..n).map(|p| slot(&table, bs, p)).collect();
        write_kv(&mut kc, &mut vc, &k, &v, &slots, kv_dim);
        let mut whole = vec![0f32; q.len()];
        paged_attention(
            &q,
            &kc,
            &vc,
            &[AttnSeq {
                q_start: 0,
                q_len: n,
                ctx_len: n,
                block_table: &table,
            }],
            &shape,
            &mut whole,
        );
        let want = reference(&q, &k, &v, n, &shape);
        for (a, b) in whole.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-5);
        }
        // the last 3 tokens as a separate chunk over the same cache: bit-identical rows
        let tail = &q[8 * heads * hd..];
        let mut part = vec![0f32; tail.len()];
        paged_attention(
            tail,
            &kc,
            &vc,
            &[AttnSeq {
                q_start: 0,
                q_len: 3,
                ctx_len: n,
                block_table: &table,
            }],
            &shape,
            &mut part,
        );
        assert_eq!(part, whole[8 * heads * hd..]);
    }

    #[test]
    fn avx2_and_portable_heads_agree_bitwise() {
        let f = |i: usize| (((i * 2654435761) % 1000) as f32) / 500.0 - 1.0;
        let (kv_dim, hd) = (24, 8);
        let kc: Vec<f32> = (0..40 * kv_dim).map(f).collect();
        let vc: Vec<f32> = (0..40 * kv_dim).map(|i| f(i + 7)).collect();
        let q: Vec<f32> = (0..hd).map(|i| f(i + 3)).collect();
        let slots: Vec<usize> = (0..37).rev().collect();
        let (mut a, mut b) = (vec![0f32; hd], vec![0f32; hd]);
        let rows = F32Rows(&kc, &vc);
        heads(&q, hd, &rows, 8, kv_dim, &slots, 0.35, &mut a);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            unsafe { heads_avx2(&q, hd, &rows, 8, kv_dim, &slots, 0.35, &mut b) };
            assert_eq!(a, b);
        }
    }
}
