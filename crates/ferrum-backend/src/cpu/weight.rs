//! A weight matrix (rows × k, row-major) as it is stored: f32, or packed in a block-quantized
//! format that is dequantized one row at a time inside the matmul. Packed rows decode to exactly
//! the values a load-time dequantization gives, so results are bit-identical either way — only
//! the bytes read per step shrink (Q4_1: 4.5 bits a weight instead of 32).

use super::fp8::decode_fp8_block_row;
use std::sync::Arc;

/// Decodes one packed row (`row_bytes` in) into `k` floats (out).
pub type RowDecoder = Arc<dyn Fn(&[u8], &mut [f32]) + Send + Sync>;

pub enum PartData {
    F32(Vec<f32>),
    /// ggml's Q4_1 blocks (`f16 d, f16 m, 16 nibble bytes` per 32 weights): the matmul takes
    /// integer dots against 8-bit activations (`q8_dot.rs`); `row()` decodes ggml's `q·d + m`.
    Q4_1(Vec<u8>),
    /// ggml's Q8_0 blocks (`f16 d, 32 × i8`): `q·d`.
    Q8_0(Vec<u8>),
    /// bf16 (most Hugging Face checkpoints): half the bytes of f32, and widening is exact.
    BF16(Vec<u16>),
    /// float8_e4m3fn values (rows × k bytes) with one f32 `scale_inv` per `block = (B0, B1)`
    /// block (`ceil(rows/B0) × ceil(k/B1)`, edge blocks partial): `f32(q) · scale_inv`, as
    /// transformers dequantizes block-scaled FP8 checkpoints (see [`Weight::fp8_block`]).
    Fp8Block {
        bytes: Vec<u8>,
        scale_inv: Vec<f32>,
        block: (usize, usize),
    },
    /// Any other block format, through a decoder callback.
    Packed {
        bytes: Vec<u8>,
        row_bytes: usize,
        decode: RowDecoder,
    },
}

pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q8_0_BYTES: usize = 34;

/// Every f16 as f32: a table lookup beats a per-call conversion on the decode hot path.
pub(crate) fn f16_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect()
    })
}

#[inline(always)]
pub(crate) fn f16_at(t: &[f32], b: &[u8]) -> f32 {
    t[u16::from_le_bytes([b[0], b[1]]) as usize]
}

// Fixed-size arrays let LLVM vectorize the nibble/byte → f32 conversion (the slice-zip form
// stayed scalar and made decoding cost more than the bytes it saved).
#[inline(always)]
fn decode_q4_1(row: &[u8], out: &mut [f32]) {
    let t = f16_table();
    for (b, y) in row.chunks_exact(Q4_1_BYTES).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(t, b), f16_at(t, &b[2..]));
        let qs: &[u8; 16] = b[4..20].try_into().unwrap();
        let y: &mut [f32; 32] = y.try_into().unwrap();
        let mut q = [0u8; 32];
        for j in 0..16 {
            q[j] = qs[j] & 0x0F;
            q[j + 16] = qs[j] >> 4;
        }
        for j in 0..32 {
            y[j] = q[j] as f32 * d + m;
        }
    }
}

#[inline(always)]
fn decode_q8_0(row: &[u8], out: &mut [f32]) {
    let t = f16_table();
    for (b, y) in row.chunks_exact(Q8_0_BYTES).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(t, b);
        let qs: &[u8; 32] = b[2..34].try_into().unwrap();
        let q: [i8; 32] = qs.map(|v| v as i8);
        let y: &mut [f32; 32] = y.try_into().unwrap();
        for j in 0..32 {
            y[j] = q[j] as f32 * d;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PackedKind {
    Q4_1,
    Q8_0,
}

/// A run of consecutive rows in one storage format.
pub struct Part {
    pub rows: usize,
    pub data: PartData,
}

/// Rows stacked from parts (e.g. q, k and v projections, each in its own format).
pub struct Weight {
    pub k: usize,
    pub parts: Vec<Part>,
}

impl Weight {
    fn one_part(rows: usize, k: usize, data: PartData) -> Weight {
        Weight {
            k,
            parts: vec![Part { rows, data }],
        }
    }

    pub fn f32(rows: usize, k: usize, data: Vec<f32>) -> Weight {
        assert_eq!(data.len(), rows * k, "weight data is not rows×k");
        Weight::one_part(rows, k, PartData::F32(data))
    }

    pub fn packed(rows: usize, k: usize, bytes: Vec<u8>, decode: RowDecoder) -> Weight {
        assert_eq!(
            bytes.len() % rows.max(1),
            0,
            "packed weight is not whole rows"
        );
        let row_bytes = bytes.len() / rows.max(1);
        Weight::one_part(
            rows,
            k,
            PartData::Packed {
                bytes,
                row_bytes,
                decode,
            },
        )
    }

    pub fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// Appends `other`'s rows below this weight's.
    pub fn stack(mut self, other: Weight) -> Weight {
        assert_eq!(self.k, other.k, "stacked weights need the same row length");
        self.parts.extend(other.parts);
        self
    }

    /// ggml Q4_1 (`bytes` = rows × k/32 blocks of 20 bytes).
    pub fn q4_1(rows: usize, k: usize, bytes: Vec<u8>) -> Weight {
        assert!(
            k.is_multiple_of(32) && bytes.len() == rows * k / 32 * Q4_1_BYTES,
            "not Q4_1 rows×k"
        );
        Weight::one_part(rows, k, PartData::Q4_1(bytes))
    }

    /// ggml Q8_0 (`bytes` = rows × k/32 blocks of 34 bytes).
    pub fn q8_0(rows: usize, k: usize, bytes: Vec<u8>) -> Weight {
        assert!(
            k.is_multiple_of(32) && bytes.len() == rows * k / 32 * Q8_0_BYTES,
            "not Q8_0 rows×k"
        );
        Weight::one_part(rows, k, PartData::Q8_0(bytes))
    }

    /// bf16 values, row-major rows×k.
    pub fn bf16(rows: usize, k: usize, values: Vec<u16>) -> Weight {
        assert_eq!(values.len(), rows * k, "not bf16 rows×k");
        Weight::one_part(rows, k, PartData::BF16(values))
    }

    /// Block-scaled FP8 (`weight` float8_e4m3fn rows×k as raw bytes, `weight_scale_inv` f32
    /// `ceil(rows/block_rows) × ceil(k/block_cols)`, `block` from the checkpoint's
    /// `quantization_config.weight_block_size`). Rows decode to `f32(q) · scale_inv` of their block,
    /// exactly the f32 a load-time dequantization gives. Sizes are checked: an error, not a panic.
    pub fn fp8_block(
        rows: usize,
        k: usize,
        bytes: Vec<u8>,
        scale_inv: Vec<f32>,
        block_rows: usize,
        block_cols: usize,
    ) -> Result<Weight, String> {
        if block_rows == 0 || block_cols == 0 {
            return Err(format!(
                "fp8 weight: block size {block_rows}×{block_cols} has a zero side"
            ));
        }
        let want = rows
            .checked_mul(k)
            .ok_or_else(|| format!("fp8 weight: {rows}×{k} overflows"))?;
        if bytes.len() != want {
            return Err(format!(
                "fp8 weight: {} bytes for a {rows}×{k} matrix (want {want})",
                bytes.len()
            ));
        }
        let (sr, sc) = (rows.div_ceil(block_rows), k.div_ceil(block_cols));
        if scale_inv.len() != sr * sc {
            return Err(format!(
                "fp8 weight: {} scales for a {rows}×{k} matrix in {block_rows}×{block_cols} blocks \
                 (want {sr}×{sc} = {})",
                scale_inv.len(),
                sr * sc
            ));
        }
        Ok(Weight::one_part(
            rows,
            k,
            PartData::Fp8Block {
                bytes,
                scale_inv,
                block: (block_rows, block_cols),
            },
        ))
    }

    /// Bytes held (for the start-up summary).
    pub fn nbytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match &p.data {
                PartData::F32(v) => v.len() * 4,
                PartData::BF16(v) => v.len() * 2,
                PartData::Fp8Block {
                    bytes, scale_inv, ..
                } => bytes.len() + scale_inv.len() * 4,
                PartData::Q4_1(bytes) | PartData::Q8_0(bytes) | PartData::Packed { bytes, .. } => {
                    bytes.len()
                }
            })
            .sum()
    }

    /// Row `j`'s raw bytes when it is stored in a block format the matmul decodes in registers.
    #[inline(always)]
    pub(crate) fn packed_row(&self, mut j: usize) -> Option<(PackedKind, &[u8])> {
        for p in &self.parts {
            if j < p.rows {
                return match &p.data {
                    PartData::Q4_1(b) => {
                        let rb = self.k / 32 * Q4_1_BYTES;
                        Some((PackedKind::Q4_1, &b[j * rb..(j + 1) * rb]))
                    }
                    PartData::Q8_0(b) => {
                        let rb = self.k / 32 * Q8_0_BYTES;
                        Some((PackedKind::Q8_0, &b[j * rb..(j + 1) * rb]))
                    }
                    _ => None,
                };
            }
            j -= p.rows;
        }
        None
    }

    /// Row `j` as f32: borrowed when stored so, else decoded into `buf` (k floats).
    #[inline(always)]
    pub fn row<'a>(&'a self, mut j: usize, buf: &'a mut [f32]) -> &'a [f32] {
        for p in &self.parts {
            if j < p.rows {
                return match &p.data {
                    PartData::F32(v) => &v[j * self.k..(j + 1) * self.k],
                    PartData::Q4_1(bytes) => {
                        let rb = self.k / 32 * Q4_1_BYTES;
                        decode_q4_1(&bytes[j * rb..(j + 1) * rb], buf);
                        buf
                    }
                    PartData::Q8_0(bytes) => {
                        let rb = self.k / 32 * Q8_0_BYTES;
                        decode_q8_0(&bytes[j * rb..(j + 1) * rb], buf);
                        buf
                    }
                    PartData::BF16(v) => {
                        for (o, &b) in buf.iter_mut().zip(&v[j * self.k..(j + 1) * self.k]) {
                            *o = f32::from_bits((b as u32) << 16);
                        }
                        buf
                    }
                    PartData::Fp8Block {
                        bytes,
                        scale_inv,
                        block,
                    } => {
                        decode_fp8_block_row(bytes, scale_inv, *block, self.k, j, buf);
                        buf
                    }
                    PartData::Packed {
                        bytes,
                        row_bytes,
                        decode,
                    } => {
                        decode(&bytes[j * row_bytes..(j + 1) * row_bytes], buf);
                        buf
                    }
                };
            }
            j -= p.rows;
        }
        panic!("weight row {j} out of range");
    }
}

/// Random packed rows with finite f16 scales (block size `size`, `scales` f16 fields at the
/// front), so every nibble/byte pattern is exercised. For tests here and in the matmul.
#[cfg(test)]
pub(crate) fn random_blocks(seed: u64, n_bytes: usize, size: usize, scales: usize) -> Vec<u8> {
    let mut x = seed;
    let mut rnd = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as u8
    };
    let mut bytes: Vec<u8> = (0..n_bytes).map(|_| rnd()).collect();
    for b in bytes.chunks_mut(size) {
        for s in 0..scales {
            let v = half::f16::from_f32((rnd() as f32 - 128.0) / 500.0).to_le_bytes();
            b[2 * s..2 * s + 2].copy_from_slice(&v);
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_gguf::{GgmlType, dequantize};

    #[test]
    fn bf16_rows_widen_exactly() {
        let vals: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) * 0.37).collect();
        let bits: Vec<u16> = vals
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect();
        let w = Weight::bf16(2, 12, bits.clone());
        let mut buf = vec![0f32; 12];
        for j in 0..2 {
            let want: Vec<f32> = bits[j * 12..(j + 1) * 12]
                .iter()
                .map(|&b| half::bf16::from_bits(b).to_f32())
                .collect();
            assert_eq!(w.row(j, &mut buf), &want[..]);
        }
        assert_eq!(w.nbytes(), 48);
    }

    /// The inline decoders equal ggml's formulas (the gguf crate, itself checked against gguf-py).
    #[test]
    fn inline_decoders_equal_gguf_dequantize() {
        for (ty, size, scales) in [
            (GgmlType::Q4_1, Q4_1_BYTES, 2),
            (GgmlType::Q8_0, Q8_0_BYTES, 1),
        ] {
            let (rows, k) = (3, 96);
            let bytes = random_blocks(5, rows * k / 32 * size, size, scales);
            let mut want = vec![0f32; rows * k];
            dequantize(ty, &bytes, &mut want).unwrap();
            let w = if ty == GgmlType::Q4_1 {
                Weight::q4_1(rows, k, bytes)
            } else {
                Weight::q8_0(rows, k, bytes)
            };
            let mut buf = vec![0f32; k];
            for j in 0..rows {
                assert_eq!(
                    w.row(j, &mut buf),
                    &want[j * k..(j + 1) * k],
                    "{ty:?} row {j}"
                );
            }
        }
    }
}
