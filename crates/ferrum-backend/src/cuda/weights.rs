//! Host views to device weights: dense layers in the model's half dtype (bf16 or f16). A
//! checkpoint already in that dtype is copied as is; f32, the other half type, GGUF blocks and
//! block-FP8 weights (for now: weight-only, dequantized at load) are converted on the host
//! first. MoE experts are stacked per block (`moe.rs`).

use anyhow::{Result, bail};
use cudarc::driver::CudaSlice;

use super::backend::{CudaBackend, Half};
use super::moe::CudaExperts;
use crate::backend::{WeightBytes, Weights};
use crate::host::{HostDtype, HostLinear, HostTensor};

/// A linear layer `[rows, k]`, row-major, in the backend's half dtype.
pub struct CudaWeight {
    pub(crate) mem: CudaSlice<u16>,
    pub rows: usize,
    pub k: usize,
}

/// Norm weights and biases, in the backend's half dtype.
pub struct CudaVector {
    pub(crate) mem: CudaSlice<u16>,
    pub len: usize,
}

impl CudaBackend {
    /// The tensor's values as the backend's half type (raw 16-bit words).
    fn half_words(&self, t: &HostTensor<'_>) -> Result<Vec<u16>> {
        let same = matches!(
            (t.dtype, self.dtype),
            (HostDtype::BF16, Half::Bf16) | (HostDtype::F16, Half::F16)
        );
        if same {
            return Ok(t
                .bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect());
        }
        Ok(self.dtype.encode(&t.to_f32()?))
    }

    fn upload_words(&self, words: &[u16]) -> Result<CudaSlice<u16>> {
        Ok(self.stream.clone_htod(words)?)
    }

    /// Device buffers one after another in a new allocation.
    pub(super) fn concat(&self, parts: &[&CudaSlice<u16>]) -> Result<CudaSlice<u16>> {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        let mut mem = self.stream.alloc_zeros::<u16>(n.max(1))?;
        let mut at = 0;
        for p in parts {
            self.stream
                .memcpy_dtod(*p, &mut mem.slice_mut(at..at + p.len()))?;
            at += p.len();
        }
        Ok(mem)
    }

    /// A block-FP8 weight dequantized on the host (`fp8 · scale_inv` per block, as the CPU
    /// does) into the half type: weight-only, twice the bytes of the checkpoint; the W8A8 path
    /// on Hopper's FP8 tensor cores is not built yet.
    fn fp8_block_words(&self, w: &HostLinear<'_>) -> Result<Vec<u16>> {
        let HostLinear::Fp8Block {
            weight,
            scale_inv,
            block,
        } = w
        else {
            unreachable!("called for block-FP8 weights only")
        };
        let (rows, k) = w.dims();
        let scales = scale_inv.to_f32()?;
        let mut f = vec![0f32; rows * k];
        for (j, row) in f.chunks_mut(k).enumerate() {
            crate::cpu::fp8::decode_fp8_block_row(&weight.bytes, &scales, *block, k, j, row);
        }
        Ok(self.dtype.encode(&f))
    }
}

impl WeightBytes for CudaBackend {
    fn linear_bytes(&self, w: &HostLinear<'_>) -> Result<usize> {
        match w {
            HostLinear::Dense(t) => match t.dtype {
                HostDtype::F8E4M3 => bail!(
                    "`{}` is fp8 without block scales; the CUDA backend runs bf16/f16 weights",
                    t.name
                ),
                _ => Ok(2 * t.numel()),
            },
            // dequantized at load (see fp8_block_words)
            HostLinear::Fp8Block { weight, .. } => Ok(2 * weight.numel()),
        }
    }
}

impl Weights for CudaBackend {
    type Weight = CudaWeight;
    type Vector = CudaVector;
    type Experts = CudaExperts;

    fn backend_name(&self) -> &'static str {
        "CUDA"
    }

    fn upload_linear(&self, w: HostLinear<'_>) -> Result<CudaWeight> {
        self.linear_bytes(&w)?;
        let (rows, k) = w.dims();
        let words = match &w {
            HostLinear::Dense(t) => self.half_words(t)?,
            HostLinear::Fp8Block { .. } => self.fp8_block_words(&w)?,
        };
        Ok(CudaWeight {
            mem: self.upload_words(&words)?,
            rows,
            k,
        })
    }

    fn upload_vector(&self, t: HostTensor<'_>) -> Result<CudaVector> {
        let words = self.half_words(&t)?;
        Ok(CudaVector {
            len: words.len(),
            mem: self.upload_words(&words)?,
        })
    }

    fn stack(&self, parts: Vec<CudaWeight>) -> Result<CudaWeight> {
        let Some(k) = parts.first().map(|p| p.k) else {
            bail!("nothing to stack");
        };
        if parts.iter().any(|p| p.k != k) {
            bail!("stacked weights need the same row length");
        }
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let mem = self.concat(&parts.iter().map(|p| &p.mem).collect::<Vec<_>>())?;
        Ok(CudaWeight { mem, rows, k })
    }

    fn experts(&self, experts: Vec<(CudaWeight, CudaWeight)>) -> Result<CudaExperts> {
        self.stack_experts(experts)
    }
}
