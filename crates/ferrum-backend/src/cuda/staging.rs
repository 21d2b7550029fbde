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
    /// Recorded after each buffer's last copy: the host refills it only once that has run.
    copied: [CudaEvent; 2],
    next: usize,
}

impl Staging {
    pub(super) fn new(ctx: &Arc<CudaContext>) -> Result<Staging> {
        // SAFETY: the buffers are written before any copy reads them (`copy` fills each chunk
        // first).
        let buf = || unsafe { ctx.alloc_pinned_with_flags::<u8>(CHUNK, 0) };
        let make = || -> Result<Staging, cudarc::driver::DriverError> {
            Ok(Staging {
                bufs: [buf()?, buf()?],
                copied: [ctx.new_event(None)?, ctx.new_event(None)?],
                next: 0,
            })
        };
        make().context("allocating pinned staging buffers for the weight upload")
    }

    /// Queues the copy of `src` to device address `dst` (at least `src.len()` bytes) on
    /// `stream`. On return `src` may be dropped: every byte is in a staging buffer or on the
    /// device; later work on `stream` sees the copy.
    pub(super) fn copy(&mut self, stream: &CudaStream, src: &[u8], dst: u64) -> Result<()> {
        for (i, chunk) in src.chunks(CHUNK).enumerate() {
            let b = self.next;
            self.next ^= 1;
            self.copied[b].synchronize()?;
            let buf = self.bufs[b].as_mut_slice()?;
            buf[..chunk.len()]
                .par_chunks_mut(1 << 20)
                .zip(chunk.par_chunks(1 << 20))
                .for_each(|(d, s)| d.copy_from_slice(s));
            // SAFETY: `dst + i·CHUNK` lies inside the caller's allocation of `src.len()` bytes;
            // the staging buffer is pinned and not written again before `copied[b]` has passed.
            unsafe {
                cudarc::driver::result::memcpy_htod_async(
                    dst + (i * CHUNK) as u64,
                    &buf[..chunk.len()],
                    stream.cu_stream(),
                )
            }?;
            self.copied[b].record(stream)?;
        }
        Ok(())
    }
}
