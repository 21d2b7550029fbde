//! `--load-format dummy`: random weights from the config alone (vLLM's meaning), so any supported
//! architecture runs, and can be benchmarked, without its weight files.

use super::WeightSource;
use anyhow::Result;
use ferrum_backend::{HostDtype, HostTensor};
use rayon::prelude::*;
use std::borrow::Cow;

const CHUNK: usize = 1 << 16;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finalizer: a well-mixed 64-bit value per counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn one_bf16(n: usize) -> Vec<u8> {
    half::bf16::ONE.to_le_bytes().repeat(n)
}

pub struct DummySource {
    pub seed: u64,
}

impl WeightSource for DummySource {
    fn tensor(&self, name: &str, shape: &[usize], dry: bool) -> Result<HostTensor<'_>> {
        let n: usize = shape.iter().product();
        let bytes: Vec<u8> = if dry {
            Vec::new()
        } else if name.ends_with("norm.weight") {
            one_bf16(n)
        } else {
            // a counter-based stream per tensor: the same values whatever the load order or the
            // number of threads, and fast enough for an 8B model (bf16, as the models run)
            let key = name
                .bytes()
                .fold(self.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
            let mut bytes = vec![0u8; 2 * n];
            bytes
                .par_chunks_mut(2 * CHUNK)
                .enumerate()
                .for_each(|(c, out)| {
                    for (i, o) in out.chunks_exact_mut(2).enumerate() {
                        let u = splitmix64(key ^ ((c * CHUNK + i) as u64).wrapping_mul(GOLDEN));
                        // top 24 bits → uniform in [-0.02, 0.02)
                        let x = ((u >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * 0.02;
                        o.copy_from_slice(&half::bf16::from_f32(x).to_le_bytes());
                    }
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

    /// Everything but the checkpoint-format extras (fp8 weight scales, KV-cache scales), so a
    /// dummy model is float and its FP8 KV cache, if asked for, has scales of 1.0.
    fn contains(&self, name: &str) -> bool {
        !(name.ends_with("weight_scale_inv")
            || name.ends_with("k_scale")
            || name.ends_with("v_scale")
            || name.ends_with("output_scale"))
    }
}
