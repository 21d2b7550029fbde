//! Host views to device weights. Dense layers are in the model's half dtype (bf16 or f16): a
//! checkpoint already in that dtype is copied as is; f32, the other half type and GGUF blocks are
//! converted on the host first. Block-FP8 layers stay e4m3 on the device (half the bytes: what
//! lets GLM-4.5-Air-FP8 fit one H200) with their scales expanded to one per row and column
//! block, so that stacking parts (q/k/v, gate/up, experts) is a concatenation of rows whatever
//! the checkpoint's row blocks. MoE experts are stacked per block (`moe.rs`).

use anyhow::{Result, anyhow, bail};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};

use super::backend::{CudaBackend, Half};
use super::fp8_gemm::{FP8_TILE, tile_ld};
use super::moe::CudaExperts;
use crate::backend::{WeightBytes, Weights};
use crate::host::{HostDtype, HostLinear, HostTensor};

/// A linear layer `[rows, k]`, row-major.
pub struct CudaWeight {
    pub(crate) data: WeightData,
    pub rows: usize,
    pub k: usize,
}

/// A weight's storage on the device.
pub(crate) enum WeightData {
    /// The backend's half dtype.
    Half(CudaSlice<u16>),
    /// e4m3 codes `[rows][k]` and f32 scales `[rows][ceil(k / bk)]`: value = fp8 · scale. With
    /// 128×128 checkpoint tiles whose row blocks survive stacking, also the tiles as the W8A8 GEMM
    /// reads them (`fp8_gemm.rs`: `[ceil(rows / 128)][tile_ld(k)]`).
    Fp8 {
        codes: CudaSlice<u8>,
        scales: CudaSlice<f32>,
        bk: usize,
        tiles: Option<CudaSlice<f32>>,
    },
}

impl CudaWeight {
    /// The half-dtype values, for the ops that read no other format (the embedding gather).
    pub(crate) fn half(&self) -> Result<&CudaSlice<u16>> {
        match &self.data {
            WeightData::Half(m) => Ok(m),
            WeightData::Fp8 { .. } => Err(anyhow!(
                "a {}×{} block-FP8 weight where the CUDA backend needs bf16/f16 (an embedding table)",
                self.rows,
                self.k
            )),
        }
    }
}

/// Norm weights and biases, in the backend's half dtype.
pub struct CudaVector {
    pub(crate) mem: CudaSlice<u16>,
    pub len: usize,
}

/// Whether two weights' data can stack into one (`concat_rows`): both half, or both block-FP8
/// with the same column blocks.
pub(crate) fn same_format(a: &WeightData, b: &WeightData) -> bool {
    match (a, b) {
        (WeightData::Half(_), WeightData::Half(_)) => true,
        (WeightData::Fp8 { bk: x, .. }, WeightData::Fp8 { bk: y, .. }) => x == y,
        _ => false,
    }
}

/// Rows of `[rows][k]` weights one after another, all in one format (`same_format`). Block-FP8
/// scale tiles concatenate when every part but the last ends on a whole 128-row tile.
pub(crate) fn concat_rows(be: &CudaBackend, parts: &[&WeightData], k: usize) -> Result<WeightData> {
    let Some(&first) = parts.first() else {
        bail!("nothing to stack");
    };
    if !parts.iter().all(|p| same_format(p, first)) {
        bail!(
            "stacked weights (q/k/v, gate/up or experts) mix block-FP8 and bf16/f16 parts, or FP8 column blocks of different sizes"
        );
    }
    let mut halves = Vec::new();
    let mut codes = Vec::new();
    let mut scales = Vec::new();
    let mut tiles = Some(Vec::new());
    for (i, p) in parts.iter().enumerate() {
        match p {
            WeightData::Half(m) => halves.push(m),
            WeightData::Fp8 {
                codes: c,
                scales: s,
                tiles: t,
                ..
            } => {
                codes.push(c);
                scales.push(s);
                let whole = i + 1 == parts.len() || (c.len() / k).is_multiple_of(FP8_TILE);
                tiles = tiles.zip(t.as_ref().filter(|_| whole)).map(|(mut v, t)| {
                    v.push(t);
                    v
                });
            }
        }
    }
    let WeightData::Fp8 { bk, .. } = first else {
        return Ok(WeightData::Half(be.concat(&halves)?));
    };
    Ok(WeightData::Fp8 {
        codes: be.concat(&codes)?,
        scales: be.concat(&scales)?,
        bk: *bk,
        tiles: tiles.map(|t| be.concat(&t)).transpose()?,
    })
}

impl CudaBackend {
    /// The tensor on the device in the backend's half type: a checkpoint already in that type
    /// is copied as it is (from its mapped pages, no host copy), any other converted first.
    fn upload_half(&self, t: &HostTensor<'_>) -> Result<CudaSlice<u16>> {
        let same = matches!(
            (t.dtype, self.dtype),
            (HostDtype::BF16, Half::Bf16) | (HostDtype::F16, Half::F16)
        );
        if same {
            return self.upload_bytes(&t.bytes);
        }
        let words = self.dtype.encode(&t.to_f32()?);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.upload_bytes(&bytes)
    }

    /// Device buffers one after another in a new allocation.
    pub(super) fn concat<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        parts: &[&CudaSlice<T>],
    ) -> Result<CudaSlice<T>> {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        let mut mem = self.stream.alloc_zeros::<T>(n.max(1))?;
        let mut at = 0;
        for p in parts {
            self.stream
                .memcpy_dtod(*p, &mut mem.slice_mut(at..at + p.len()))?;
            at += p.len();
        }
        Ok(mem)
    }

    /// A block-FP8 weight as it goes to the device: its e4m3 bytes and its `weight_scale_inv`
    /// tiles `[ceil(rows / B0)][ceil(k / B1)]` expanded to `[rows][ceil(k / B1)]`.
    fn upload_fp8(&self, w: &HostLinear<'_>) -> Result<WeightData> {
        let HostLinear::Fp8Block {
            weight,
            scale_inv,
            block: (b0, b1),
        } = w
        else {
            unreachable!("called for block-FP8 weights only")
        };
        let (rows, k) = w.dims();
        let sc = k.div_ceil(*b1);
        let tiles = scale_inv.to_f32()?;
        if tiles.len() != rows.div_ceil(*b0) * sc {
            bail!(
                "`{}`: {} scales for a {rows}×{k} weight in {b0}×{b1} blocks",
                scale_inv.name,
                tiles.len()
            );
        }
        self.reserve_dequant(rows * k)?;
        // the W8A8 GEMM's copy of the tiles; every part through the pinned staging (a copy from
        // pageable memory may wait for the stream's queued uploads: per tensor, for ~37k
        // expert tensors of Qwen3-30B-A3B)
        let f32s = |v: Vec<f32>| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let padded = if (*b0, *b1) == (FP8_TILE, FP8_TILE) && self.fp8_gemm().is_some() {
            Some(self.upload_bytes(&f32s(pad_tiles(&tiles, k)))?)
        } else {
            None
        };
        Ok(WeightData::Fp8 {
            codes: self.upload_bytes(&weight.bytes)?,
            scales: self.upload_bytes(&f32s(tiles_per_row(&tiles, rows, k, (*b0, *b1))))?,
            bk: *b1,
            tiles: padded,
        })
    }
}

/// Scale tiles `[ceil(rows / b0)][ceil(k / b1)]` expanded to one row of them per weight row, the
/// layout of [`WeightData::Fp8`]'s `scales`.
pub(super) fn tiles_per_row(
    tiles: &[f32],
    rows: usize,
    k: usize,
    (b0, b1): (usize, usize),
) -> Vec<f32> {
    let sc = k.div_ceil(b1);
    (0..rows)
        .flat_map(|j| tiles[j / b0 * sc..][..sc].iter().copied())
        .collect()
}

/// 128×128 scale tiles with each row padded to [`tile_ld`] (16 bytes), as cuBLASLt reads them.
pub(super) fn pad_tiles(tiles: &[f32], k: usize) -> Vec<f32> {
    let (sc, ld) = (k.div_ceil(FP8_TILE), tile_ld(k));
    tiles
        .chunks(sc)
        .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, ld - sc)))
        .collect()
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
            // e4m3 codes and one f32 scale per row and column block
            HostLinear::Fp8Block {
                weight,
                block: (_, b1),
                ..
            } => {
                let (rows, k) = w.dims();
                Ok(weight.numel() + 4 * rows * k.div_ceil(*b1))
            }
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
        let data = match &w {
            HostLinear::Dense(t) => WeightData::Half(self.upload_half(t)?),
            HostLinear::Fp8Block { .. } => self.upload_fp8(&w)?,
        };
        Ok(CudaWeight { data, rows, k })
    }

    fn upload_vector(&self, t: HostTensor<'_>) -> Result<CudaVector> {
        Ok(CudaVector {
            len: t.numel(),
            mem: self.upload_half(&t)?,
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
        let data = concat_rows(self, &parts.iter().map(|p| &p.data).collect::<Vec<_>>(), k)?;
        if matches!(data, WeightData::Fp8 { .. }) {
            self.reserve_dequant(rows * k)?;
        }
        Ok(CudaWeight { data, rows, k })
    }

    fn experts(
        &self,
        routed: Vec<(CudaWeight, CudaWeight)>,
        shared: Option<(CudaWeight, CudaWeight)>,
    ) -> Result<(CudaExperts, Option<(CudaWeight, CudaWeight)>)> {
        self.stack_experts(routed, shared)
    }
}
