//! Weight uploads through two pinned staging buffers. A copy from pageable memory makes the
//! driver stage it through a small pinned buffer of its own, one piece after another, with the
//! host waiting; here the host fills one pinned buffer (the checkpoint's memory-mapped pages
//! faulting in, on every core) while the copy engine moves the other to the device, so reading
//! and copying overlap and the copy runs at the link's rate.

use std::sync::Arc;

use anyhow::{Context, Result};
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, PinnedHostSlice};
use rayon::prelude::*;

/// Bytes per staging buffer: large enough that each copy runs at the link's rate, small enough
/// that two cost little pinned host memory.
const CHUNK: usize = 64 << 20;

pub(super) struct Staging {
    bufs: [PinnedHostSlice<u8>; 2],
    /// Recorded after each copy out of a buffer: the host refills it only once the last has run.
    copied: [CudaEvent; 2],
    /// The buffer being filled, and how many of its bytes hold queued copies.
    cur: usize,
    used: usize,
}

impl Staging {
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Staging> {
        // SAFETY: the buffers are written before any copy reads them (`copy` fills each piece
        // first).
        let buf = || unsafe { ctx.alloc_pinned_with_flags::<u8>(CHUNK, 0) };
        let make = || -> Result<Staging, cudarc::driver::DriverError> {
            Ok(Staging {
                bufs: [buf()?, buf()?],
                copied: [ctx.new_event(None)?, ctx.new_event(None)?],
                cur: 0,
                used: 0,
            })
        };
        make().context("allocating pinned staging buffers for the weight upload")
    }

    /// Queues the copy of `src` to device address `dst` (at least `src.len()` bytes) on
    /// `stream`. On return `src` may be dropped: every byte is in a staging buffer or on the
    /// device; later work on `stream` sees the copy. Small tensors share a buffer (one after
    /// another, 256-byte aligned), so the host waits on the device once per buffer's worth, not
    /// once per tensor.
    pub(super) fn copy(&mut self, stream: &CudaStream, src: &[u8], dst: u64) -> Result<()> {
        for (i, piece) in src.chunks(CHUNK).enumerate() {
            if self.used + piece.len() > CHUNK {
                // the other buffer, once its queued copies have run
                self.cur ^= 1;
                self.copied[self.cur].synchronize()?;
                self.used = 0;
            }
            let (b, at) = (self.cur, self.used);
            let buf = &mut self.bufs[b].as_mut_slice()?[at..at + piece.len()];
            buf.par_chunks_mut(1 << 20)
                .zip(piece.par_chunks(1 << 20))
                .for_each(|(d, s)| d.copy_from_slice(s));
            // SAFETY: `dst + i·CHUNK` lies inside the caller's allocation of `src.len()` bytes;
            // these staging bytes are pinned and not written again before `copied[b]` has passed.
            unsafe {
                cudarc::driver::result::memcpy_htod_async(
                    dst + (i * CHUNK) as u64,
                    &*buf,
                    stream.cu_stream(),
                )
            }?;
            self.copied[b].record(stream)?;
            self.used = (at + piece.len()).next_multiple_of(256);
        }
        Ok(())
    }
}
