//! Weights as a checkpoint holds them, before any backend sees them: named, typed, shaped byte
//! views (memory-mapped where the file allows). A backend converts or uploads them in its
//! `Weights` implementation; loaders never build backend weights themselves.

use anyhow::{Result, bail};
use ferrum_gguf::GgmlType;
use std::borrow::Cow;
use std::fmt;

/// How a tensor's bytes encode its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostDtype {
    F32,
    F16,
    BF16,
    /// float8 e4m3fn (OCP), one byte per value.
    F8E4M3,
    /// A GGUF/ggml type (block-quantized or plain), rows packed as ggml stores them.
    Gguf(GgmlType),
}

impl fmt::Display for HostDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostDtype::F32 => f.write_str("f32"),
            HostDtype::F16 => f.write_str("f16"),
            HostDtype::BF16 => f.write_str("bf16"),
            HostDtype::F8E4M3 => f.write_str("fp8 e4m3"),
            HostDtype::Gguf(t) => write!(f, "GGUF {}", t.name()),
        }
    }
}

impl HostDtype {
    /// Bytes of one row of `k` values, or `None` when `k` does not fill whole blocks.
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        match self {
            HostDtype::F32 => Some(4 * k),
            HostDtype::F16 | HostDtype::BF16 => Some(2 * k),
            HostDtype::F8E4M3 => Some(k),
            HostDtype::Gguf(t) => match (t.block_size(), t.type_size()) {
                (Some(block), Some(bytes)) if k.is_multiple_of(block) => Some(k / block * bytes),
                _ => None,
            },
        }
    }

    /// Values per block along a row (1 for plain types).
    pub fn block_len(self) -> usize {
        match self {
            HostDtype::Gguf(t) => t.block_size().unwrap_or(1),
            _ => 1,
        }
    }
}

/// Which slice of a tensor-parallel split this process holds: `rank` of `world` equal parts
/// along `dim` (0: output rows, column-parallel; 1: input columns, row-parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };
}

/// One tensor of a checkpoint. `shape` is row-major (`[out, in]` for a linear weight; a 3-D
/// expert stack is `[experts, out, in]`). `bytes` is empty in a dry run (shape and type only).
#[derive(Clone, Debug)]
pub struct HostTensor<'a> {
    pub name: String,
    pub dtype: HostDtype,
    pub shape: Vec<usize>,
    pub bytes: Cow<'a, [u8]>,
}

impl<'a> HostTensor<'a> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether this view carries no data (a dry run for sizing and format checks).
    pub fn is_dry(&self) -> bool {
        self.bytes.is_empty() && self.numel() > 0
    }

    /// Bytes a `[rows, k]` tensor of this type takes.
    pub fn stored_bytes(&self) -> Result<usize> {
        let k = *self.shape.last().unwrap_or(&1);
        let rows = self.numel() / k.max(1);
        match self.dtype.row_bytes(k) {
            Some(rb) => Ok(rows * rb),
            None => bail!(
                "`{}`: rows of {k} values do not fill whole {} blocks",
                self.name,
                self.dtype
            ),
        }
    }

    /// The values as f32 (any type a decoder exists for); for small tensors (norms, biases).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let b = &self.bytes[..];
        Ok(match self.dtype {
            HostDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            HostDtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            HostDtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            HostDtype::F8E4M3 => bail!(
                "`{}` is fp8 without a scale; only linear weights may be fp8",
                self.name
            ),
            HostDtype::Gguf(t) => {
                let mut out = vec![0f32; self.numel()];
                ferrum_gguf::dequantize(t, b, &mut out)
                    .map_err(|e| anyhow::anyhow!("`{}`: {e}", self.name))?;
                out
            }
        })
    }

    /// This process's part of a 1-D or 2-D tensor split `world` ways along `dim` (0 = rows,
    /// 1 = columns). Splitting block-quantized rows along columns needs whole blocks per part.
    pub fn shard(self, dim: usize, s: Shard) -> Result<HostTensor<'a>> {
        if s.world == 1 {
            return Ok(self);
        }
        let rank = self.shape.len();
        if dim >= rank || rank > 2 {
            bail!(
                "`{}` (shape {:?}) cannot be split along dimension {dim}",
                self.name,
                self.shape
            );
        }
        let (rows, k) = if rank == 1 {
            (1, self.shape[0])
        } else {
            (self.shape[0], self.shape[1])
        };
        let split_len = if rank == 1 || dim == 1 { k } else { rows };
        if !split_len.is_multiple_of(s.world) {
            bail!(
                "`{}`: dimension {dim} ({split_len}) does not split into {} equal parts",
                self.name,
                s.world
            );
        }
        let part = split_len / s.world;
        let mut shape = self.shape.clone();
        shape[if rank == 1 { 0 } else { dim }] = part;
        let dry = self.is_dry();
        let bytes: Cow<'a, [u8]> = if rank == 2 && dim == 0 {
            let rb = self.dtype.row_bytes(k).unwrap_or(0);
            match self.bytes {
                _ if dry => Cow::Borrowed(&[]),
                Cow::Borrowed(b) => Cow::Borrowed(&b[s.rank * part * rb..][..part * rb]),
                Cow::Owned(b) => Cow::Owned(b[s.rank * part * rb..][..part * rb].to_vec()),
            }
        } else {
            // columns: every row contributes its slice, whole blocks only
            let (full, sub) = match (self.dtype.row_bytes(k), self.dtype.row_bytes(part)) {
                (Some(f), Some(p)) => (f, p),
                _ => bail!(
                    "`{}`: {} blocks of {} values cannot be split into parts of {part} columns",
                    self.name,
                    self.dtype,
                    self.dtype.block_len()
                ),
            };
            if dry {
                Cow::Borrowed(&[])
            } else {
                let mut out = Vec::with_capacity(rows * sub);
                for r in 0..rows {
                    out.extend_from_slice(&self.bytes[r * full + s.rank * sub..][..sub]);
                }
                Cow::Owned(out)
            }
        };
        Ok(HostTensor {
            name: self.name,
            dtype: self.dtype,
            shape,
            bytes,
        })
    }
}

/// A linear layer's weight as the checkpoint holds it at one prefix.
#[derive(Clone, Debug)]
pub enum HostLinear<'a> {
    /// f32 / f16 / bf16 / GGUF rows: `[out, in]`.
    Dense(HostTensor<'a>),
    /// e4m3 weight `[out, in]` with one f32 `scale_inv` per `block` (rows × cols) tile: value =
    /// fp8 × scale_inv (the `weight_scale_inv` of block-FP8 releases).
    Fp8Block {
        weight: HostTensor<'a>,
        scale_inv: HostTensor<'a>,
        block: (usize, usize),
    },
}

impl HostLinear<'_> {
    pub fn weight(&self) -> &HostTensor<'_> {
        match self {
            HostLinear::Dense(w) | HostLinear::Fp8Block { weight: w, .. } => w,
        }
    }

    /// `(rows, k)`.
    pub fn dims(&self) -> (usize, usize) {
        let s = &self.weight().shape;
        (s[0], s[1])
    }

    /// The storage format's name, for messages ("bf16", "GGUF Q4_K", "fp8 e4m3 128×128 blocks").
    pub fn format(&self) -> String {
        match self {
            HostLinear::Dense(w) => w.dtype.to_string(),
            HostLinear::Fp8Block { block, .. } => {
                format!("fp8 e4m3 with {}×{} block scales", block.0, block.1)
            }
        }
    }
}

/// `len` zeros in memory the process has written, so that its resident size counts them now:
/// a zeroed allocation is otherwise committed page by page on first write, and a buffer sized
/// for the largest step would make resident memory climb under load long after start-up.
pub fn committed_zeros(len: usize) -> Vec<f32> {
    let mut v = vec![0.0; len];
    // black_box: the optimizer must not drop the writes because the pages are known zero
    std::hint::black_box(&mut v[..]).fill(0.0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], vals: &[f32]) -> HostTensor<'static> {
        HostTensor {
            name: "w".into(),
            dtype: HostDtype::F32,
            shape: shape.to_vec(),
            bytes: Cow::Owned(vals.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    #[test]
    fn shards_concatenate_to_the_whole() {
        let vals: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let whole = t(&[4, 6], &vals);
        for dim in [0, 1] {
            let parts: Vec<Vec<f32>> = (0..2)
                .map(|rank| {
                    whole
                        .clone()
                        .shard(dim, Shard { rank, world: 2 })
                        .unwrap()
                        .to_f32()
                        .unwrap()
                })
                .collect();
            let joined: Vec<f32> = if dim == 0 {
                parts.concat()
            } else {
                (0..4)
                    .flat_map(|r| [&parts[0][r * 3..][..3], &parts[1][r * 3..][..3]].concat())
                    .collect()
            };
            assert_eq!(joined, vals, "dim {dim}");
        }
        let e = whole.shard(0, Shard { rank: 0, world: 3 }).unwrap_err();
        assert!(e.to_string().contains("does not split"), "{e}");
    }
}
