//! Host views to device weights: dense layers in the model's half dtype (bf16 or f16). A
//! checkpoint already in that dtype is copied as is; f32, the other half type and GGUF blocks are
//! converted on the host first. Block-FP8 and MoE experts are the MoE/FP8 issue's work and are
//! refused at load, naming what is missing.

use anyhow::{Result, bail};
use cudarc::driver::CudaSlice;

use super::backend::{CudaBackend, Half};
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
            HostLinear::Fp8Block { weight, .. } => bail!(
                "`{}`: block-FP8 linear layers ({}) are not implemented on the CUDA backend yet; run the model on --device cpu",
                weight.name,
                w.format()
            ),
        }
    }
}

impl Weights for CudaBackend {
    type Weight = CudaWeight;
    type Vector = CudaVector;
    type Experts = ();

    fn backend_name(&self) -> &'static str {
        "CUDA"
    }

    fn upload_linear(&self, w: HostLinear<'_>) -> Result<CudaWeight> {
        self.linear_bytes(&w)?;
        let (rows, k) = w.dims();
        let words = self.half_words(w.weight())?;
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
        let mut mem = self.stream.alloc_zeros::<u16>(rows * k)?;
        let mut at = 0;
        for p in &parts {
            let n = p.rows * k;
            self.stream
                .memcpy_dtod(&p.mem, &mut mem.slice_mut(at..at + n))?;
            at += n;
        }
        Ok(CudaWeight { mem, rows, k })
    }

    fn experts(&self, _experts: Vec<(CudaWeight, CudaWeight)>) -> Result<()> {
        bail!(
            "mixture-of-experts layers are not implemented on the CUDA backend yet; run the model on --device cpu"
        )
    }
}
