//! `--load-format dummy`: random weights from the config alone (vLLM's meaning), so any supported
//! architecture runs, and can be benchmarked, without its weight files.

use super::WeightSource;
use anyhow::Result;
use rand::{Rng, SeedableRng};

pub struct DummySource {
    pub seed: u64,
}

impl WeightSource for DummySource {
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        if name.ends_with("norm.weight") {
            return Ok(vec![1.0; n]);
        }
        // A per-tensor stream so every tensor is the same whatever order they load in.
        let h = name
            .bytes()
            .fold(self.seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(h);
        Ok((0..n).map(|_| rng.random_range(-0.02f32..0.02)).collect())
    }
    fn contains(&self, _name: &str) -> bool {
        true
    }
}
