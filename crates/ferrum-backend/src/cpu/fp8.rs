//! float8_e4m3fn (the `torch.float8_e4m3fn` of block-scaled FP8 checkpoints such as
//! Qwen3-30B-A3B-Instruct-2507-FP8 and DeepSeek-V3): 1 sign bit, 4 exponent bits (bias 7), 3
//! mantissa bits; no infinities, and only `S.1111.111` (0x7F, 0xFF) is NaN, so the largest finite
//! value is ±448. Exponent field 0 holds the subnormals `m·2⁻⁹`. Every value widens to f32
//! exactly, so decoding is one table lookup.
//!
//! Dequantization (`weight_scale_inv`, one f32 per `B0 × B1` block) follows transformers'
//! `Fp8Dequantize` (what it runs on a CPU, where it always dequantizes at load): the fp8 value
//! widened to f32 times the block's f32 `scale_inv`, one f32 product, nothing else (for a bf16
//! model transformers then rounds that product to bf16; an f32 model keeps it). Edge blocks
//! are partial (`ceil` grid), as in transformers' `_dequantize_fp8_weight` and DeepSeek's
//! `weight_dequant`; `Fp8Dequantize` itself derives the block from the grid and refuses shapes
//! the grid does not divide (Qwen3-30B-A3B-FP8's quantized shapes are all multiples of 128).

/// f32 bits of one e4m3fn byte. NaN keeps the sign (quiet NaN, as ml_dtypes and torch give).
const fn e4m3fn_bits(b: u8) -> u32 {
    let sign = ((b >> 7) as u32) << 31;
    let exp = ((b >> 3) & 0xF) as u32;
    let man = (b & 0x7) as u32;
    if exp == 0xF && man == 0x7 {
        return sign | 0x7FC0_0000;
    }
    if exp == 0 {
        if man == 0 {
            return sign;
        }
        // m·2⁻⁹ with m in 1..=7: the leading one at bit p gives 2^(p-9)·(1 + rest/2^p)
        let p = 31 - man.leading_zeros();
        let f32_exp = p + 127 - 9;
        let frac = (man - (1 << p)) << (23 - p);
        return sign | (f32_exp << 23) | frac;
    }
    // normal: 2^(e-7)·(1 + m/8)
    sign | ((exp + 127 - 7) << 23) | (man << 20)
}

const fn build_table() -> [f32; 256] {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = f32::from_bits(e4m3fn_bits(i as u8));
        i += 1;
    }
    t
}

/// Every e4m3fn byte as f32 (index = the byte).
pub static E4M3FN_TO_F32: [f32; 256] = build_table();

/// One e4m3fn byte as f32 (exact).
#[inline(always)]
pub fn e4m3fn_to_f32(b: u8) -> f32 {
    E4M3FN_TO_F32[b as usize]
}

/// The nearest e4m3fn byte to `x` (ties to even, as torch's and CUDA's conversions round),
/// saturating at ±448 (CUDA's `__NV_SATFINITE`, what vLLM's FP8 KV-cache writes use); NaN stays
/// NaN. Used for the FP8 KV cache, where a value is divided by its scale first.
pub fn f32_to_e4m3fn(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    if x.is_nan() {
        return sign | 0x7F;
    }
    let a = x.abs();
    if a >= 448.0 {
        return sign | 0x7E;
    }
    // codes 0x00..=0x7E are the non-negative finite values in increasing order: the first code
    // whose value is >= a, then the nearer of it and the one below (ties: the even code)
    let table = &E4M3FN_TO_F32[..0x7F];
    let hi = table.partition_point(|&v| v < a);
    if hi == 0 || table[hi] == a {
        return sign | hi as u8;
    }
    let lo = hi - 1;
    let (dl, dh) = (a - table[lo], table[hi] - a);
    let code = if dl < dh || (dl == dh && lo % 2 == 0) {
        lo
    } else {
        hi
    };
    sign | code as u8
}

/// Decodes row `j` of an fp8 block-scaled tensor (`k` columns, `block = (B0, B1)`, scales laid
/// out `ceil(rows/B0) × ceil(k/B1)`) into `out`: `f32(fp8) · scale_inv[j/B0][c/B1]`.
#[inline(always)]
pub(crate) fn decode_fp8_block_row(
    bytes: &[u8],
    scale_inv: &[f32],
    block: (usize, usize),
    k: usize,
    j: usize,
    out: &mut [f32],
) {
    let (b0, b1) = block;
    let scale_cols = k.div_ceil(b1);
    let scales = &scale_inv[j / b0 * scale_cols..(j / b0 + 1) * scale_cols];
    let row = &bytes[j * k..(j + 1) * k];
    for ((o, q), &s) in out[..k].chunks_mut(b1).zip(row.chunks(b1)).zip(scales) {
        for (o, &q) in o.iter_mut().zip(q) {
            *o = E4M3FN_TO_F32[q as usize] * s;
        }
    }
}

/// Numbers of one array (`"key": [...]`) in a fixture written by a script beside it (`null` →
/// NaN). Enough JSON for the fixtures here, which hold flat arrays of numbers.
#[cfg(test)]
pub(crate) fn fixture_numbers(json: &str, key: &str) -> Vec<f64> {
    let pat = format!("\"{key}\": [");
    let start = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in fixture"))
        + pat.len();
    let end = start + json[start..].find(']').unwrap();
    json[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s == "null" {
                f64::NAN
            } else {
                s.parse().unwrap()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table equals ml_dtypes' float8_e4m3fn → float32 bit for bit (fixture made by
    /// tests/fixtures/gen_fp8_e4m3fn.py).
    #[test]
    fn table_equals_ml_dtypes() {
        let json = include_str!("../../tests/fixtures/fp8_e4m3fn.json");
        let bits = fixture_numbers(json, "f32_bits");
        assert_eq!(bits.len(), 256);
        for (b, &want) in bits.iter().enumerate() {
            assert_eq!(
                e4m3fn_to_f32(b as u8).to_bits(),
                want as u32,
                "byte {b:#04x}"
            );
        }
    }

    #[test]
    fn encoding_rounds_to_nearest_even_and_saturates() {
        // every finite code round-trips
        for b in (0u8..=0xFF).filter(|b| b & 0x7F != 0x7F) {
            assert_eq!(f32_to_e4m3fn(e4m3fn_to_f32(b)), b, "{b:#x}");
        }
        // between two neighbours: below the midpoint down, above up, at it the even code
        for b in 0u8..0x7E {
            let (lo, hi) = (e4m3fn_to_f32(b), e4m3fn_to_f32(b + 1));
            let mid = (lo + hi) / 2.0;
            let even = if b % 2 == 0 { b } else { b + 1 };
            assert_eq!(
                f32_to_e4m3fn(mid),
                even,
                "tie between {b:#x} and {:#x}",
                b + 1
            );
            assert_eq!(f32_to_e4m3fn(mid - (hi - lo) / 8.0), b);
            assert_eq!(f32_to_e4m3fn(mid + (hi - lo) / 8.0), b + 1);
            assert_eq!(f32_to_e4m3fn(-mid), 0x80 | even);
        }
        assert_eq!(f32_to_e4m3fn(1000.0), 0x7E);
        assert_eq!(f32_to_e4m3fn(f32::NEG_INFINITY), 0xFE);
        assert_eq!(f32_to_e4m3fn(1e-9), 0);
        assert_eq!(f32_to_e4m3fn(f32::NAN) & 0x7F, 0x7F);
    }

    #[test]
    fn special_values() {
        assert!(e4m3fn_to_f32(0x7F).is_nan() && e4m3fn_to_f32(0xFF).is_nan());
        assert_eq!(E4M3FN_TO_F32.iter().filter(|v| v.is_nan()).count(), 2);
        assert!(E4M3FN_TO_F32.iter().all(|v| !v.is_infinite()));
        assert_eq!(e4m3fn_to_f32(0x7E), 448.0);
        assert_eq!(e4m3fn_to_f32(0xFE), -448.0);
        assert_eq!(e4m3fn_to_f32(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3fn_to_f32(0x07), 7.0 * 2f32.powi(-9)); // largest subnormal
        assert_eq!(e4m3fn_to_f32(0x08), 2f32.powi(-6)); // smallest normal
        assert_eq!(e4m3fn_to_f32(0x38), 1.0);
        assert_eq!(e4m3fn_to_f32(0x80).to_bits(), (-0.0f32).to_bits());
    }
}

#[cfg(test)]
mod weight_tests {
    use super::*;
    use crate::cpu::{Weight, matmul_t};

    /// Bytes covering every finite e4m3fn value (NaN codes replaced), deterministic.
    fn finite_bytes(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| {
                let b = (i.wrapping_mul(2654435761) ^ seed).rotate_left(7) as u8;
                if b & 0x7F == 0x7F { b ^ 0x01 } else { b }
            })
            .collect()
    }

    fn scales(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + 0.05) * 1e-3).collect()
    }

    /// The dequantized matrix as transformers' `_dequantize_fp8_weight` builds it: the scales
    /// repeated B0 times over rows (cut at `rows`), then each B1-column block (and the partial
    /// tail) multiplied by its scale; the fp8 values from the ml_dtypes fixture.
    fn dequant_reference(
        rows: usize,
        k: usize,
        bytes: &[u8],
        s: &[f32],
        (b0, b1): (usize, usize),
    ) -> Vec<f32> {
        let json = include_str!("../../tests/fixtures/fp8_e4m3fn.json");
        let table: Vec<f32> = fixture_numbers(json, "f32_bits")
            .iter()
            .map(|&b| f32::from_bits(b as u32))
            .collect();
        let sc = k.div_ceil(b1);
        let mut w: Vec<f32> = bytes.iter().map(|&q| table[q as usize]).collect();
        for i in 0..rows {
            let srow = &s[(i / b0) * sc..(i / b0 + 1) * sc];
            for c in 0..k {
                w[i * k + c] *= srow[c / b1];
            }
        }
        w
    }

    #[test]
    fn sizes_are_checked() {
        let (rows, k) = (5, 11);
        assert!(Weight::fp8_block(rows, k, vec![0; 55], vec![1.0; 9], 2, 4).is_ok());
        let e = Weight::fp8_block(rows, k, vec![0; 54], vec![1.0; 9], 2, 4).err();
        assert!(e.unwrap().contains("54 bytes"));
        let e = Weight::fp8_block(rows, k, vec![0; 55], vec![1.0; 6], 2, 4).err();
        assert!(e.unwrap().contains("want 3×3"));
        assert!(Weight::fp8_block(rows, k, vec![0; 55], vec![1.0; 9], 0, 4).is_err());
        assert!(Weight::fp8_block(rows, k, vec![0; 55], vec![1.0; 9], 2, 0).is_err());
        assert!(Weight::fp8_block(usize::MAX, 2, vec![], vec![], 1, 1).is_err());
        // one scale for the whole tensor (per-tensor quantization) is the block = shape case
        assert!(Weight::fp8_block(rows, k, vec![0; 55], vec![1.0], rows, k).is_ok());
    }

    /// Rows (edge blocks partial on both axes) equal the reference dequantization, and nbytes
    /// counts values and scales.
    #[test]
    fn rows_equal_dequantization() {
        for (rows, k, block) in [
            (5usize, 11usize, (2usize, 4usize)),
            (7, 9, (3, 3)),
            (4, 8, (4, 8)),
            (3, 5, (128, 128)),
        ] {
            let bytes: Vec<u8> = (0..rows * k).map(|i| (i * 37 % 256) as u8).collect();
            let s = scales(rows.div_ceil(block.0) * k.div_ceil(block.1));
            let want = dequant_reference(rows, k, &bytes, &s, block);
            let w = Weight::fp8_block(rows, k, bytes, s.clone(), block.0, block.1).unwrap();
            assert_eq!(w.nbytes(), rows * k + 4 * s.len());
            let mut buf = vec![0f32; k];
            for j in 0..rows {
                let got = w.row(j, &mut buf);
                for (c, (g, e)) in got.iter().zip(&want[j * k..(j + 1) * k]).enumerate() {
                    assert!(
                        g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan()),
                        "{rows}×{k} {block:?} row {j} col {c}: {g} vs {e}"
                    );
                }
            }
        }
    }

    /// The matmul over fp8 rows (alone and stacked under another part, any batch size) equals the
    /// matmul over the dequantized f32 matrix, bit for bit.
    #[test]
    fn matmul_equals_dequantized_f32() {
        let (n, k, block) = (37, 300, (16, 128));
        let bytes = finite_bytes(n * k, 9);
        let s = scales(n.div_ceil(block.0) * k.div_ceil(block.1));
        let deq = dequant_reference(n, k, &bytes, &s, block);
        let top: Vec<f32> = (0..3 * k).map(|i| (i % 17) as f32 * 0.01 - 0.08).collect();
        let fp8 = Weight::f32(3, k, top.clone())
            .stack(Weight::fp8_block(n, k, bytes, s, block.0, block.1).unwrap());
        let dense = Weight::f32(3, k, top).stack(Weight::f32(n, k, deq));
        let x: Vec<f32> = (0..9 * k)
            .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
            .collect();
        for m in [1usize, 2, 3, 4, 5, 9] {
            let (mut a, mut b) = (vec![0f32; m * (n + 3)], vec![0f32; m * (n + 3)]);
            matmul_t(&x[..m * k], m, &fp8, &mut a);
            matmul_t(&x[..m * k], m, &dense, &mut b);
            assert!(
                a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
                "m={m}"
            );
        }
    }
}
