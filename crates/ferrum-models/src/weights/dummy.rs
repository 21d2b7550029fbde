//! `--load-format dummy`: random weights from the config alone (vLLM's meaning), so any supported
//! architecture runs, and can be benchmarked, without its weight files.

use super::WeightSource;
use anyhow::Result;
use ferrum_backend::{HostDtype, HostTensor};
use rand::{Rng, SeedableRng};
use std::borrow::Cow;

pub struct DummySource {
    pub seed: u64,
}

impl WeightSource for DummySource {
    fn tensor(&self, name: &str, shape: &[usize], dry: bool) -> Result<HostTensor<'_>> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = if dry {
            Vec::new()
        } else if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else {
            // A per-tensor stream so every tensor is the same whatever order they load in.
            let h = name
                .bytes()
                .fold(self.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h);
            (0..n).map(|_| rng.random_range(-0.02f32..0.02)).collect()
        };
        Ok(HostTensor {
            name: name.to_string(),
            dtype: HostDtype::F32,
            shape: shape.to_vec(),
            bytes: Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
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
