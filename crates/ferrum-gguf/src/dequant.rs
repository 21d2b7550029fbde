//! Dequantization to f32: the dispatcher, the plain float types and ggml's 32-element
//! ("legacy") quant blocks. The K-quants (256-element super-blocks) are in `dequant_k`.
//!
//! Each kernel reproduces ggml's `dequantize_row_*` from ggml-quants.c operation for
//! operation (same products in the same order, no fused multiply-add), so results match ggml
//! and gguf-py bit for bit.

use rayon::prelude::*;

use crate::dequant_k;
use crate::{GgmlType, GgufError};

/// Converts whole blocks: `data` holds `n` blocks of the type, `out` the `n * block_size`
/// values. Callers guarantee the lengths match.
type Kernel = fn(&[u8], &mut [f32]);

/// Below this many elements a tensor is converted on the calling thread: splitting tiny
/// tensors (norm weights, biases) costs more than it saves.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;
/// Elements per parallel work item: big enough to amortise scheduling, small enough that a
/// 2-core machine and a 64-core one both balance well on a large weight matrix.
const CHUNK_ELEMENTS: usize = 1 << 15;

/// Dequantizes `data` (raw tensor bytes of type `ty`) into `out`, whose length is the number
/// of elements. Large inputs are split over the rayon thread pool.
///
/// Errors: `UnsupportedType` for types without a kernel; `InvalidInput` when `out.len()` is
/// not a whole number of blocks or `data.len()` is not exactly that many blocks' bytes.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), GgufError> {
    let (Some(kernel), Some(block), Some(size)) = (kernel(ty), ty.block_size(), ty.type_size())
    else {
        return Err(GgufError::UnsupportedType {
            tensor: "<raw buffer>".into(),
            ty: ty.to_string(),
        });
    };
    if !out.len().is_multiple_of(block) {
        return Err(GgufError::InvalidInput(format!(
            "{} output of {} values is not a whole number of {block}-element blocks",
            ty,
            out.len()
        )));
    }
    let n_blocks = out.len() / block;
    if n_blocks.checked_mul(size) != Some(data.len()) {
        return Err(GgufError::InvalidInput(format!(
            "{} values of {ty} take {n_blocks} blocks x {size} bytes, but {} bytes were given",
            out.len(),
            data.len()
        )));
    }
    if out.len() < PARALLEL_MIN_ELEMENTS {
        kernel(data, out);
    } else {
        let blocks_per_chunk = (CHUNK_ELEMENTS / block).max(1);
        out.par_chunks_mut(blocks_per_chunk * block)
            .zip(data.par_chunks(blocks_per_chunk * size))
            .for_each(|(out, data)| kernel(data, out));
    }
    Ok(())
}

fn kernel(ty: GgmlType) -> Option<Kernel> {
    Some(match ty {
        GgmlType::F32 => f32_le,
        GgmlType::F16 => f16_le,
        GgmlType::BF16 => bf16_le,
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => dequant_k::q2_k,
        GgmlType::Q3_K => dequant_k::q3_k,
        GgmlType::Q4_K => dequant_k::q4_k,
        GgmlType::Q5_K => dequant_k::q5_k,
        GgmlType::Q6_K => dequant_k::q6_k,
        GgmlType::Q8_K | GgmlType::Other(_) => return None,
    })
}

/// The little-endian IEEE half at `b[0..2]`, widened exactly.
#[inline]
pub(crate) fn f16_at(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

fn f32_le(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(4).zip(out) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

fn f16_le(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(2).zip(out) {
        *y = f16_at(b);
    }
}

/// bf16 is the top half of an f32, so widening is a shift (NaN payloads included).
fn bf16_le(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(2).zip(out) {
        *y = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
    }
}

// Legacy blocks hold 32 values; byte j of `qs` carries element j in its low nibble and
// element j + 16 in its high nibble.

/// `block_q4_0 { f16 d; u8 qs[16]; }`: y = (q - 8) * d.
fn q4_0(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b);
        let qs = &b[2..18];
        for j in 0..16 {
            y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
            y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16]; }`: y = q * d + m.
fn q4_1(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b), f16_at(&b[2..]));
        let qs = &b[4..20];
        for j in 0..16 {
            y[j] = (qs[j] & 0x0F) as f32 * d + m;
            y[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }`: the fifth bit of element j is bit j of the
/// little-endian u32 `qh`; y = (q - 16) * d.
fn q5_0(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let qs = &b[6..22];
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            y[j] = (((qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
            y[j + 16] = (((qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }`: y = q * d + m.
fn q5_1(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(24).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (f16_at(b), f16_at(&b[2..]));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let qs = &b[8..24];
        for j in 0..16 {
            let h0 = (((qh >> j) << 4) & 0x10) as u8;
            let h1 = ((qh >> (j + 12)) & 0x10) as u8;
            y[j] = ((qs[j] & 0x0F) | h0) as f32 * d + m;
            y[j + 16] = ((qs[j] >> 4) | h1) as f32 * d + m;
        }
    }
}

/// `block_q8_0 { f16 d; i8 qs[32]; }`: y = q * d.
fn q8_0(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = f16_at(b);
        for (q, y) in b[2..34].iter().zip(y) {
            *y = (*q as i8) as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_mismatched_lengths_and_unsupported_types() {
        let mut out = vec![0.0; 32];
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 33], &mut out),
            Err(GgufError::InvalidInput(_))
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_0, &[0; 34], &mut out[..31]),
            Err(GgufError::InvalidInput(_))
        ));
        assert!(matches!(
            dequantize(GgmlType::Q8_K, &[0; 292], &mut vec![0.0; 256]),
            Err(GgufError::UnsupportedType { .. })
        ));
        assert!(dequantize(GgmlType::Q8_0, &[0; 34], &mut out).is_ok());
    }

    #[test]
    fn q8_0_by_hand() {
        // d = 0.5 (f16 0x3800), q = 0, 1, -1, 127, -128, then zeros.
        let mut block = vec![0x00, 0x38, 0, 1, 0xFF, 127, 0x80];
        block.resize(34, 0);
        let mut out = vec![f32::NAN; 32];
        dequantize(GgmlType::Q8_0, &block, &mut out).unwrap();
        assert_eq!(&out[..5], &[0.0, 0.5, -0.5, 63.5, -64.0]);
        assert!(out[5..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn parallel_path_matches_serial() {
        // 4096 Q4_0 blocks = 131072 elements: above the parallel threshold.
        let data: Vec<u8> = (0..4096 * 18u32)
            .map(|i| {
                if i % 18 == 1 {
                    0x3C
                } else {
                    (i.wrapping_mul(2_654_435_761) >> 13) as u8
                }
            })
            .collect();
        let mut parallel = vec![0.0; 4096 * 32];
        dequantize(GgmlType::Q4_0, &data, &mut parallel).unwrap();
        let mut serial = vec![0.0; 4096 * 32];
        q4_0(&data, &mut serial);
        assert_eq!(parallel, serial);
    }
}
