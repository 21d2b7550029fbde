//! A step's metadata on the device: token ids, positions, cache slots, block tables, and per
//! token the offset of its sequence's block table and the number of keys it sees. Copied once per
//! step by `begin_step` into buffers that grow to the largest step seen; the ops read them.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits};

use crate::backend::StepMeta;

#[derive(Default)]
pub(super) struct DeviceStep {
    tokens: Option<CudaSlice<u32>>,
    positions: Option<CudaSlice<u32>>,
    slots: Option<CudaSlice<i64>>,
    block_tables: Option<CudaSlice<u32>>,
    tok_table: Option<CudaSlice<u32>>,
    tok_keys: Option<CudaSlice<u32>>,
    /// Prefill tiles for `paged_attention_tiled`: (first row, tokens) pairs, up to
    /// [`TILE_TOKENS`] query tokens of one sequence each.
    tiles: Option<CudaSlice<u32>>,
    pub(super) n_tiles: usize,
    /// Some sequence has two or more query tokens (the tiled attention pays).
    pub(super) prefill: bool,
    pub(super) n_tokens: usize,
    /// The most keys any token of the step sees (split-KV decode's choice).
    pub(super) max_keys: usize,
    /// Buffers reserved and their addresses frozen (captured graphs hold them).
    frozen: bool,
}

/// Device addresses of the step's buffers, for kernel arguments.
pub(super) struct StepPtrs {
    pub tokens: u64,
    pub positions: u64,
    pub slots: u64,
    pub block_tables: u64,
    pub tok_table: u64,
    pub tok_keys: u64,
    pub tiles: u64,
}

/// Query tokens per prefill attention tile (`TILE_TOKENS` in `attention.cu`).
pub(super) const TILE_TOKENS: usize = 16;

/// Grows `slot` (to a power of two) when it holds fewer than `n` values (at least one).
pub(super) fn grow<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    slot: &mut Option<CudaSlice<T>>,
    n: usize,
) -> Result<()> {
    let n = n.max(1);
    if slot.as_ref().is_none_or(|s| s.len() < n) {
        *slot = Some(stream.alloc_zeros::<T>(n.next_power_of_two())?);
    }
    Ok(())
}

/// Copies `data` into `slot`, growing it first when it is too small.
pub(super) fn upload<T: DeviceRepr + ValidAsZeroBits + Copy>(
    stream: &Arc<CudaStream>,
    slot: &mut Option<CudaSlice<T>>,
    data: &[T],
) -> Result<()> {
    grow(stream, slot, data.len())?;
    if !data.is_empty() {
        let s = slot.as_mut().unwrap();
        stream.memcpy_htod(data, &mut s.slice_mut(..data.len()))?;
    }
    Ok(())
}

impl DeviceStep {
    /// Allocates every buffer for `tokens` tokens and `table_entries` block-table entries, then
    /// freezes them: a step that would need larger ones is refused instead of moving them.
    pub(super) fn reserve(
        &mut self,
        stream: &Arc<CudaStream>,
        tokens: usize,
        table_entries: usize,
    ) -> Result<()> {
        self.frozen = false;
        upload(stream, &mut self.tokens, &vec![0u32; tokens])?;
        upload(stream, &mut self.positions, &vec![0u32; tokens])?;
        upload(stream, &mut self.slots, &vec![-1i64; tokens])?;
        upload(stream, &mut self.block_tables, &vec![0u32; table_entries])?;
        upload(stream, &mut self.tok_table, &vec![0u32; tokens])?;
        upload(stream, &mut self.tok_keys, &vec![1u32; tokens])?;
        upload(stream, &mut self.tiles, &vec![0u32; 2 * tokens])?;
        self.frozen = true;
        Ok(())
    }

    pub(super) fn upload(&mut self, stream: &Arc<CudaStream>, meta: &StepMeta) -> Result<()> {
        let n = meta.tokens.len();
        let mut tok_table = Vec::with_capacity(n);
        let mut tok_keys = Vec::with_capacity(n);
        let mut tiles = Vec::new();
        for s in &meta.seqs {
            for i in (0..s.q_len).step_by(TILE_TOKENS) {
                tiles.extend([
                    tok_table.len() as u32 + i as u32,
                    TILE_TOKENS.min(s.q_len - i) as u32,
                ]);
            }
            for i in 0..s.q_len {
                tok_table.push(s.table.start as u32);
                tok_keys.push((s.ctx_len - s.q_len + i + 1) as u32);
            }
        }
        if tok_table.len() != n {
            bail!(
                "step metadata: {n} tokens but the sequences hold {}",
                tok_table.len()
            );
        }
        if self.frozen {
            let fits = |b: &Option<CudaSlice<u32>>, n: usize| {
                b.as_ref().is_some_and(|b| b.len() >= n.max(1))
            };
            if !fits(&self.tokens, n) || !fits(&self.block_tables, meta.block_tables.len()) {
                bail!(
                    "a step of {n} tokens and {} block-table entries exceeds the reserved step buffers",
                    meta.block_tables.len()
                );
            }
        }
        let positions: Vec<u32> = meta.positions.iter().map(|&p| p as u32).collect();
        // usize::MAX (a padding row of a captured graph's step) becomes -1: written nowhere
        let slots: Vec<i64> = meta.slots.iter().map(|&s| s as i64).collect();
        upload(stream, &mut self.tokens, &meta.tokens)?;
        upload(stream, &mut self.positions, &positions)?;
        upload(stream, &mut self.slots, &slots)?;
        upload(stream, &mut self.block_tables, &meta.block_tables)?;
        upload(stream, &mut self.tok_table, &tok_table)?;
        upload(stream, &mut self.tok_keys, &tok_keys)?;
        upload(stream, &mut self.tiles, &tiles)?;
        self.n_tiles = tiles.len() / 2;
        self.prefill = meta.seqs.iter().any(|s| s.q_len > 1);
        self.n_tokens = n;
        self.max_keys = tok_keys.iter().copied().max().unwrap_or(0) as usize;
        Ok(())
    }

    pub(super) fn ptrs(&self, stream: &CudaStream) -> Result<StepPtrs> {
        fn p<T>(b: &Option<CudaSlice<T>>, stream: &CudaStream) -> Result<u64> {
            b.as_ref()
                .map(|b| b.device_ptr(stream).0)
                .ok_or_else(|| anyhow!("an op ran before begin_step"))
        }
        Ok(StepPtrs {
            tokens: p(&self.tokens, stream)?,
            positions: p(&self.positions, stream)?,
            slots: p(&self.slots, stream)?,
            block_tables: p(&self.block_tables, stream)?,
            tok_table: p(&self.tok_table, stream)?,
            tok_keys: p(&self.tok_keys, stream)?,
            tiles: p(&self.tiles, stream)?,
        })
    }
}
