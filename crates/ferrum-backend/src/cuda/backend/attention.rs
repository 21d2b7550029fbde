//! Paged attention's launches: the tiled prefill kernels, the per-head and per-group decode
//! kernels, and split-KV with its merge for a few tokens over long contexts
//! (`kernels/attention.cu`).

use anyhow::{Result, bail};
use cudarc::driver::LaunchConfig;

use super::Arg::{F, I, P};
use super::{CudaBackend, CudaBuf, CudaKv, CudaRope, CudaVector, TILE_TOKENS};
use crate::backend::AttnDims;

/// The per-head split-KV decode cuts the step's longest context into slices of at least this
/// many keys ([`CudaBackend::kv_splits`]).
const HEAD_SLICE_KEYS: usize = 512;

/// How a split-KV kernel cut each token's keys (`slice_keys` in attention.cu), which the merge
/// repeats to know the slices a token used.
struct Slicing {
    /// Slices are whole multiples of this many keys.
    unit: usize,
    /// The fewest keys a slice takes.
    min_keys: usize,
    /// The split kernel writes the output of a token whose keys fill one slice itself.
    direct: bool,
}

/// The per-head split kernel's slices: equal shares of each token's keys, every slice used (as
/// before the per-group kernel's slicing; whether fewer, longer slices would serve a graph's
/// short contexts better there is not measured).
const HEAD_SLICING: Slicing = Slicing {
    unit: 1,
    min_keys: 1,
    direct: false,
};

/// Keys a tile of `flash_attention` (`FA_KEYS` in flash_attention.cu).
const FLASH_KEYS: usize = 64;

/// The dynamic shared memory `flash_attention` takes (`FlashSmem` in flash_attention.cu): two
/// stages of a tile's K and V rows as the cache holds them, each row padded by 16 bytes, and for
/// an fp8 cache the tile's K and V converted to the model's (two-byte) dtype, rows padded by 8
/// values.
fn flash_smem_bytes(head_dim: usize, fp8: bool) -> usize {
    let cache = if fp8 { 1 } else { 2 };
    let stage = 2 * FLASH_KEYS * (head_dim * cache + 16);
    let converted = if fp8 {
        2 * FLASH_KEYS * (head_dim + 8) * 2
    } else {
        0
    };
    2 * stage + converted
}

/// The most slices `attention_merge` takes (`MERGE_MAX_SPLITS` in attention.cu).
const MERGE_MAX_SPLITS: usize = 1024;

impl CudaBackend {
    /// Paged attention over `layer`'s cache. A step with a prefill (a sequence of two or more
    /// query tokens) takes a tiled kernel, which reads each K/V tile once per 16 tokens and
    /// their query heads (on the tensor cores for head sizes 64 and 128, else in f32). Decode
    /// steps: with blocks enough to fill the GPU, one block of four warps per (token, kv head)
    /// for all of its group's heads (on the tensor cores, head sizes 64 and 128); below that the
    /// same kernel over slices of the keys ([`Self::group_splits`], merged), or
    /// (`FERRUM_CUDA_DECODE_SPLIT=head`, and shapes the per-group kernel does not take) one block
    /// per (token, query head), for a few tokens over long contexts the keys split into slices
    /// across more blocks ([`Self::kv_splits`]) and merged.
    pub(super) fn attention_into(
        &self,
        q: &CudaBuf,
        kv: &CudaKv,
        layer: usize,
        d: &AttnDims,
        out: &mut CudaBuf,
    ) -> Result<()> {
        let st = self.step_ptrs()?;
        if d.head_dim > 256 {
            bail!(
                "attention on the CUDA backend takes head sizes up to 256, not {}",
                d.head_dim
            );
        }
        let (kc, vc) = kv.layer_ptrs(self, layer);
        let (tokens, heads) = (self.step.n_tokens, d.n_heads);
        let splits = self.kv_splits(tokens * heads);
        let mut args = vec![
            P(self.ptr(&q.mem)),
            P(kc),
            P(vc),
            P(st.block_tables),
            P(st.tok_table),
            P(st.tok_keys),
            P(0), // the output (or the partials), below
            I(heads as i32),
            I(d.n_kv_heads as i32),
            I(d.head_dim as i32),
            I(kv.block_size as i32),
            F(d.scale),
            F(kv.scales[layer].0),
            F(kv.scales[layer].1),
        ];
        let cfg = |z: usize| LaunchConfig {
            grid_dim: (tokens as u32, heads as u32, z as u32),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let group = heads / d.n_kv_heads;
        let mma = self.tune.mma_attention && matches!(d.head_dim, 64 | 128);
        if self.step.prefill && (mma || d.head_dim.is_multiple_of(32) && d.head_dim <= 128) {
            // tiles of up to TILE_TOKENS tokens × the group's heads: 64 rows per block on the
            // tensor cores, 32 on the f32 kernel
            args[6] = P(st.tiles);
            args.insert(7, P(self.ptr(&out.mem)));
            let rows = if mma { 64 } else { 32 };
            let tiled = LaunchConfig {
                grid_dim: (
                    self.step.n_tiles as u32,
                    d.n_kv_heads as u32,
                    (TILE_TOKENS * group).div_ceil(rows) as u32,
                ),
                block_dim: (128, 1, 1),
                shared_mem_bytes: if mma {
                    flash_smem_bytes(d.head_dim, kv.fp8) as u32
                } else {
                    0
                },
            };
            let name = match (mma, d.head_dim) {
                (false, _) => kv.kernel("paged_attention_tiled", "paged_attention_tiled_fp8"),
                (true, 64) => kv.kernel("flash_attention_d64", "flash_attention_d64_fp8"),
                (true, _) => kv.kernel("flash_attention_d128", "flash_attention_d128_fp8"),
            };
            return self.launch(name, tiled, &args);
        }
        // one block per GQA group reads each K/V row once for all of the group's heads: with
        // (token, kv head) blocks enough to fill the GPU, or with the keys split into slices
        // across more blocks below that
        let blocks = tokens * d.n_kv_heads;
        let group_ok = (2..=16).contains(&group)
            && matches!(d.head_dim, 64 | 128)
            && self.tune.decode_group_min_blocks != usize::MAX;
        if group_ok && (blocks >= self.tune.decode_group_min_blocks || self.tune.decode_group_split)
        {
            let splits = if blocks >= self.tune.decode_group_min_blocks {
                1
            } else {
                self.group_splits(blocks)
            };
            let part = if splits > 1 {
                self.attn_partials(tokens * heads * splits * (2 + d.head_dim))?
            } else {
                0
            };
            args[6] = P(self.ptr(&out.mem));
            args.insert(7, P(part));
            let slicing = self.group_slicing();
            args.push(I(slicing.min_keys as i32));
            let grouped = LaunchConfig {
                grid_dim: (tokens as u32, d.n_kv_heads as u32, splits as u32),
                ..cfg(1)
            };
            let name = if d.head_dim == 64 {
                kv.kernel("paged_attention_group_d64", "paged_attention_group_d64_fp8")
            } else {
                kv.kernel(
                    "paged_attention_group_d128",
                    "paged_attention_group_d128_fp8",
                )
            };
            self.launch(name, grouped, &args)?;
            return if splits > 1 {
                self.attention_merge(part, out, heads, d.head_dim, splits, &slicing)
            } else {
                Ok(())
            };
        }
        if splits <= 1 {
            args[6] = P(self.ptr(&out.mem));
            return self.launch(
                kv.kernel("paged_attention", "paged_attention_fp8"),
                cfg(1),
                &args,
            );
        }
        let pp = self.attn_partials(tokens * heads * splits * (2 + d.head_dim))?;
        args[6] = P(pp);
        args.push(I(HEAD_SLICING.min_keys as i32));
        self.launch(
            kv.kernel("paged_attention_split", "paged_attention_split_fp8"),
            cfg(splits),
            &args,
        )?;
        self.attention_merge(pp, out, heads, d.head_dim, splits, &HEAD_SLICING)
    }

    /// Split-KV's partial results (`[token][head][slice][max, sum, head_dim outputs]`, f32):
    /// allocated once at the most any split step can need, never moved (captured graphs hold
    /// it). Splitting only happens below two waves of blocks, so blocks × slices stay under two
    /// waves, each block at most a GQA group's 16 heads of 256 values.
    fn attn_partials(&self, need: usize) -> Result<u64> {
        let cap = 2 * (2 * self.sm_count) * 16 * (2 + 256);
        if need > cap {
            bail!("split-KV attention needs {need} partial values, more than its {cap}");
        }
        let mut part = self.attn_part.borrow_mut();
        if part.is_none() {
            *part = Some(self.stream.alloc_zeros::<f32>(cap)?);
        }
        Ok(self.ptr(part.as_ref().unwrap()))
    }

    /// `attention_merge`: each (token, head)'s slices of `part` into `out`, as many as its keys
    /// used when cut `splits` ways as the split kernel cut them (`slicing`).
    fn attention_merge(
        &self,
        part: u64,
        out: &mut CudaBuf,
        heads: usize,
        head_dim: usize,
        splits: usize,
        slicing: &Slicing,
    ) -> Result<()> {
        if splits > MERGE_MAX_SPLITS {
            bail!("split-KV attention over {splits} slices; the merge takes {MERGE_MAX_SPLITS}");
        }
        let merge = [
            P(part),
            P(self.ptr(&out.mem)),
            P(self.step_ptrs()?.tok_keys),
            I(heads as i32),
            I(head_dim as i32),
            I(splits as i32),
            I(slicing.unit as i32),
            I(slicing.min_keys as i32),
            I(slicing.direct as i32),
        ];
        let cfg = LaunchConfig {
            grid_dim: (self.step.n_tokens as u32, heads as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch("attention_merge", cfg, &merge)
    }

    /// `qkv_to_cache` in cache_write.cu: the QKV split, q/k norms, rotary and K/V write of
    /// [`crate::Backend::qkv_to_cache`] as one launch, four warps a block, one head slot each.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn qkv_to_cache_launch(
        &self,
        qkv: &CudaBuf,
        rows: usize,
        d: &AttnDims,
        bias: Option<&CudaVector>,
        qk_norm: Option<(&CudaVector, &CudaVector, f32)>,
        rope: &CudaRope,
        kv: &CudaKv,
        layer: usize,
        q: &mut CudaBuf,
    ) -> Result<()> {
        let st = self.step_ptrs()?;
        let (kc, vc) = kv.layer_ptrs(self, layer);
        let opt = |v: Option<&CudaVector>| P(v.map_or(0, |v| self.ptr(&v.mem)));
        let args = [
            P(self.ptr(&qkv.mem)),
            opt(bias),
            opt(qk_norm.map(|n| n.0)),
            opt(qk_norm.map(|n| n.1)),
            F(qk_norm.map_or(0.0, |n| n.2)),
            P(st.positions),
            P(self.ptr(&rope.inv_freq)),
            I(rope.rotary_dim as i32),
            I(rope.neox as i32),
            P(st.slots),
            P(self.ptr(&q.mem)),
            P(kc),
            P(vc),
            I(d.n_heads as i32),
            I(d.n_kv_heads as i32),
            I(d.head_dim as i32),
            F(kv.scales[layer].0),
            F(kv.scales[layer].1),
        ];
        let slots = d.n_heads + 2 * d.n_kv_heads;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, slots.div_ceil(4) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let name = if d.head_dim <= 128 {
            kv.kernel("qkv_to_cache", "qkv_to_cache_fp8")
        } else {
            kv.kernel("qkv_to_cache_wide", "qkv_to_cache_wide_fp8")
        };
        self.launch(name, cfg, &args)
    }

    /// The per-group kernel's slices: whole 16-key tiles (`GQ_KEYS` in attention.cu), at least
    /// `tune.group_slice_keys` keys each.
    fn group_slicing(&self) -> Slicing {
        Slicing {
            unit: 16,
            min_keys: self.tune.group_slice_keys,
            direct: true,
        }
    }

    /// Slices of the keys for the per-group decode kernel at `blocks` (token, kv head) blocks:
    /// enough for two waves of the GPU's multiprocessors, at least `tune.group_slice_keys` keys
    /// (a tile for each of a block's warps) each; 1 at two waves or more.
    fn group_splits(&self, blocks: usize) -> usize {
        let waves = 2 * self.sm_count;
        if blocks == 0 || blocks >= waves {
            return 1;
        }
        waves
            .div_ceil(blocks)
            .min(self.step.max_keys.div_ceil(self.tune.group_slice_keys))
            .max(1)
    }

    /// How many slices to split each token's keys into: 1 (no split) unless the step's
    /// (token, head) blocks fill fewer than two waves of the GPU's multiprocessors and some token
    /// sees at least 1024 keys; then enough slices for two waves, at least [`HEAD_SLICE_KEYS`]
    /// each, at most 16.
    fn kv_splits(&self, blocks: usize) -> usize {
        let waves = 2 * self.sm_count;
        if blocks == 0 || blocks >= waves || self.step.max_keys < 1024 {
            return 1;
        }
        waves
            .div_ceil(blocks)
            .min(self.step.max_keys.div_ceil(HEAD_SLICE_KEYS))
            .min(16)
    }
}
