//! `--load-format dummy`: random weights from the config alone (vLLM's meaning), so any supported
//! architecture runs, and can be benchmarked, without its weight files. A block-FP8 config
//! (`quantization_config` with `weight_block_size`) gets e4m3 weights with block scales where
//! its checkpoints have them (the attention and MLP / expert projections; embeddings, norms,
//! routers and the LM head stay bf16, as `modules_to_not_convert` keeps them), so a dummy FP8
//! model takes the FP8 checkpoint's memory and runs its kernels.

use super::WeightSource;
use anyhow::Result;
use ferrum_backend::{HostDtype, HostTensor};
use rayon::prelude::*;
use std::borrow::Cow;

/// Bytes generated per parallel task: small enough that one expert tensor of Qwen3-30B-A3B
/// (1.5 MB of e4m3) spreads over every core (chunks of 64k items made it three tasks, and its
/// 32 GB dummy load took 18 s on a 16-core machine).
const TASK_BYTES: usize = 32 << 10;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a well-mixed 64-bit value per counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `bytes` `width` bytes at a time, item `i` from SplitMix64 of `(key, i)` alone: the same
/// values whatever the load order, the number of threads or the size of a task.
fn fill(key: u64, bytes: &mut [u8], width: usize, item: impl Fn(u64, &mut [u8]) + Sync) {
    let items = TASK_BYTES / width;
    bytes
        .par_chunks_mut(width * items)
        .enumerate()
        .for_each(|(c, out)| {
            for (i, o) in out.chunks_mut(width).enumerate() {
                item(
                    splitmix64(key ^ ((c * items + i) as u64).wrapping_mul(GOLDEN)),
                    o,
                );
            }
        });
}

/// Eight e4m3 codes from `u`, each NaN code (0x7f / 0xff) moved to its neighbour (low bit
/// flipped), all eight bytes at once: a byte is NaN when its low seven bits are all ones, i.e.
/// when `y = (u & 0x7f…) ^ 0x7f…` has a zero byte, which `y + 0x7f…` (no carry leaves a byte: each
/// is at most 0x7f + 0x7f) shows by a clear top bit.
fn no_nan_codes(u: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const TOP: u64 = 0x8080_8080_8080_8080;
    let y = (u & LOW7) ^ LOW7;
    let nan = !(y + LOW7) & TOP;
    u ^ (nan >> 7)
}

/// A finite f32 as bf16 bits, rounded to nearest even (as `half::bf16::from_f32`).
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn one_bf16(n: usize) -> Vec<u8> {
    half::bf16::ONE.to_le_bytes().repeat(n)
}

pub struct DummySource {
    pub seed: u64,
    /// The config is block-FP8: its projections are e4m3 with `weight_scale_inv` blocks.
    pub fp8: bool,
}

/// The projections a block-FP8 checkpoint stores in e4m3.
const FP8_PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The scale of every dummy e4m3 block: codes span ±448, weights ±0.02 as the bf16 ones.
const FP8_SCALE: f32 = 0.02 / 448.0;

impl DummySource {
    fn is_fp8_projection(&self, prefix: &str) -> bool {
        self.fp8
            && prefix
                .rsplit('.')
                .next()
                .is_some_and(|last| FP8_PROJECTIONS.contains(&last))
    }

    /// The tensor's counter-based random stream key: the same values whatever the load order or
    /// the number of threads.
    fn key(&self, name: &str) -> u64 {
        name.bytes()
            .fold(self.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
    }
}

impl WeightSource for DummySource {
    fn tensor(&self, name: &str, shape: &[usize], dry: bool) -> Result<HostTensor<'_>> {
        let n: usize = shape.iter().product();
        if let Some(prefix) = name.strip_suffix(".weight_scale_inv") {
            debug_assert!(self.is_fp8_projection(prefix));
            return Ok(HostTensor {
                name: name.to_string(),
                dtype: HostDtype::F32,
                shape: shape.to_vec(),
                bytes: Cow::Owned(if dry {
                    Vec::new()
                } else {
                    FP8_SCALE.to_le_bytes().repeat(n)
                }),
            });
        }
        if let Some(prefix) = name.strip_suffix(".weight")
            && self.is_fp8_projection(prefix)
        {
            let mut bytes = Vec::new();
            if !dry {
                bytes = vec![0u8; n];
                fill(self.key(name), &mut bytes, 8, |u, o| {
                    o.copy_from_slice(&no_nan_codes(u).to_le_bytes()[..o.len()]);
                });
            }
            return Ok(HostTensor {
                name: name.to_string(),
                dtype: HostDtype::F8E4M3,
                shape: shape.to_vec(),
                bytes: Cow::Owned(bytes),
            });
        }
        let bytes: Vec<u8> = if dry {
            Vec::new()
        } else if name.ends_with("norm.weight") {
            one_bf16(n)
        } else {
            // a counter-based stream per tensor, bf16 as the models run: four values from each
            // 64-bit draw, 16 bits each → uniform in [-0.02, 0.02) (one draw a value left the
            // 8B's 16 GB to generate at 1 GB/s a core)
            let mut bytes = vec![0u8; 2 * n];
            fill(self.key(name), &mut bytes, 8, |u, o| {
                let mut four = 0u64;
                for j in 0..4 {
                    let x = (((u >> (16 * j)) as u16) as f32 / 32768.0 - 1.0) * 0.02;
                    four |= (bf16_bits(x) as u64) << (16 * j);
                }
                o.copy_from_slice(&four.to_le_bytes()[..o.len()]);
            });
            bytes
        };
        Ok(HostTensor {
            name: name.to_string(),
            dtype: HostDtype::BF16,
            shape: shape.to_vec(),
            bytes: Cow::Owned(bytes),
        })
    }

    /// Everything but the checkpoint-format extras (KV-cache scales; fp8 weight scales outside
    /// a block-FP8 config's projections), so an FP8 KV cache, if asked for, has scales of 1.0.
    fn contains(&self, name: &str) -> bool {
        if let Some(prefix) = name.strip_suffix(".weight_scale_inv") {
            return self.is_fp8_projection(prefix);
        }
        !(name.ends_with("k_scale") || name.ends_with("v_scale") || name.ends_with("output_scale"))
    }
}

#[cfg(test)]
mod tests {
    use super::no_nan_codes;

    #[test]
    fn bf16_rounding_as_the_half_crate() {
        for i in 0..=u16::MAX {
            let x = (i as f32 / 32768.0 - 1.0) * 0.02;
            assert_eq!(
                super::bf16_bits(x),
                half::bf16::from_f32(x).to_bits(),
                "{x}"
            );
        }
    }

    #[test]
    fn eight_codes_at_once_as_one_at_a_time() {
        let one = |code: u8| if code & 0x7f == 0x7f { code ^ 1 } else { code };
        let mut x = 0x0123_4567_89ab_cdefu64;
        let mut words = vec![0x7fff_7f7f_ff00_7e80u64, u64::MAX, 0];
        for _ in 0..10_000 {
            x = super::splitmix64(x);
            words.push(x);
        }
        for u in words {
            let want = u64::from_le_bytes(u.to_le_bytes().map(one));
            assert_eq!(no_nan_codes(u), want, "{u:#x}");
        }
    }
}
