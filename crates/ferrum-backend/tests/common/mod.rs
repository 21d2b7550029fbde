//! Helpers shared by the GPU test binaries (`cuda_ops`, `cuda_sample`) and the kernel benchmark
//! (`benches/cuda_kernels.rs`): each uses a part.
#![allow(dead_code)]

use ferrum_backend::cuda::{CudaBackend, Half};
use ferrum_backend::host::{HostDtype, HostLinear, HostTensor};
use ferrum_backend::{Backend, CpuBackend, KvDtype};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;

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

pub fn tensor(name: &str, shape: Vec<usize>, data: &[f32]) -> HostTensor<'static> {
    HostTensor {
        name: name.into(),
        dtype: HostDtype::F32,
        shape,
        bytes: Cow::Owned(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// A weight as a test gives it to both backends: f32 values, or block-FP8 (e4m3 codes and one
/// scale per 128×128 tile, partial tiles at the edges).
pub enum W {
    Dense(Vec<f32>),
    Fp8(Vec<u8>, Vec<f32>),
}

impl W {
    pub fn fp8(rng: &mut ChaCha8Rng, n: usize, k: usize) -> W {
        // any code but the NaNs (0x7f, 0xff)
        let codes = (0..n * k)
            .map(|_| rng.random_range(0..0x7fu8) | if rng.random() { 0x80 } else { 0 })
            .collect();
        let scales = (0..n.div_ceil(128) * k.div_ceil(128))
            .map(|_| rng.random_range(0.0005..0.004f32))
            .collect();
        W::Fp8(codes, scales)
    }

    pub fn host(&self, name: &str, n: usize, k: usize) -> HostLinear<'static> {
        match self {
            W::Dense(v) => HostLinear::Dense(tensor(name, vec![n, k], v)),
            W::Fp8(codes, scales) => HostLinear::Fp8Block {
                weight: HostTensor {
                    name: name.into(),
                    dtype: HostDtype::F8E4M3,
                    shape: vec![n, k],
                    bytes: Cow::Owned(codes.clone()),
                },
                scale_inv: tensor(
                    &format!("{name}_scale_inv"),
                    vec![n.div_ceil(128), k.div_ceil(128)],
                    scales,
                ),
                block: (128, 128),
            },
        }
    }
}
