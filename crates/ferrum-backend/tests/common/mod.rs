//! Helpers shared by the GPU test binaries (`cuda_ops`, `cuda_sample`): each binary uses a part.
#![allow(dead_code)]

use ferrum_backend::cuda::{CudaBackend, Half};
use ferrum_backend::{Backend, CpuBackend, KvDtype};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Uploading host values as an activation buffer, per backend (not part of the trait: models
/// never upload activations).
pub trait Up: Backend {
    fn up(&self, x: &[f32]) -> Self::Buf;
    fn kv_dtype(&self) -> KvDtype;
}

impl Up for CpuBackend {
    fn up(&self, x: &[f32]) -> Vec<f32> {
        x.to_vec()
    }
    fn kv_dtype(&self) -> KvDtype {
        KvDtype::F32
    }
}

impl Up for CudaBackend {
    fn up(&self, x: &[f32]) -> Self::Buf {
        self.upload_f32(x).unwrap()
    }
    fn kv_dtype(&self) -> KvDtype {
        KvDtype::BF16
    }
}

pub fn gpu() -> CudaBackend {
    CudaBackend::new(0, Half::Bf16).expect("a CUDA device for the CUDA backend")
}

pub fn bf16(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

pub fn rand_vec(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| bf16(rng.random_range(-1.0..1.0f32) * scale))
        .collect()
}
