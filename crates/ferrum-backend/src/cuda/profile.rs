//! `FERRUM_CUDA_PROFILE=1`: each kernel launch and cuBLAS call timed between two CUDA events,
//! summed per op and printed every 64 steps, and the rest when the backend is dropped: where a
//! step's time goes, on machines where no profiler runs (`FERRUM_CUDA_PROFILE=decode`: decode
//! steps only, every sequence one new token, so that a batched-decode run's table is not mostly
//! its prefill). Decode graphs are off. Each step's ops
//! queue behind a kernel that holds the GPU for [`HOLD_US`] µs (launched after the step's
//! metadata copies, which wait for the stream), so that the GPU runs them back to back and an
//! op's time is its own rather than the host's launch latency; the events are read when the next
//! step begins. A copy from pageable memory inside a step (the MoE prefill's routing) still
//! drains the queue: the ops after it carry launch latency again. (The first version launched
//! the hold before the metadata copies; in its one lease Qwen3-30B's decode ops still summed to
//! 7.25 ms a step against 4.88 ms in a graph, as if the host had waited out the hold there.
//! This order is not yet measured.)

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, LaunchConfig, sys};

use super::backend::{Arg, CudaBackend};

const REPORT_EVERY: usize = 64;
/// How long the GPU is held at a step's start: more than the host takes to queue a step.
const HOLD_US: i32 = 20_000;

pub(super) struct OpProfile {
    ctx: Arc<CudaContext>,
    /// Events to reuse, and the step's timed ops not yet read: (name, start, end).
    pool: RefCell<Vec<CudaEvent>>,
    pending: RefCell<Vec<(String, CudaEvent, CudaEvent)>>,
    /// Inside a timed op: ops it launches are part of its time.
    depth: Cell<usize>,
    /// Per op: calls and milliseconds since the last report.
    ops: RefCell<HashMap<String, (u64, f64)>>,
    /// Timed steps whose times are in `ops` but not yet printed.
    unreported: Cell<usize>,
    /// Time decode steps only; and whether the step under way is timed.
    decode_only: bool,
    timing: Cell<bool>,
}

impl OpProfile {
    pub(super) fn from_env(ctx: &Arc<CudaContext>) -> Result<Option<OpProfile>> {
        let mode = std::env::var("FERRUM_CUDA_PROFILE").unwrap_or_default();
        if mode.is_empty() || mode == "0" {
            return Ok(None);
        }
        Ok(Some(OpProfile {
            ctx: ctx.clone(),
            pool: RefCell::new(Vec::new()),
            pending: RefCell::new(Vec::new()),
            depth: Cell::new(0),
            ops: RefCell::new(HashMap::new()),
            unreported: Cell::new(0),
            decode_only: mode == "decode",
            timing: Cell::new(false),
        }))
    }

    /// Runs `op`, timing it as `name()` unless an enclosing op is being timed.
    pub(super) fn time(
        &self,
        stream: &CudaStream,
        name: impl FnOnce() -> String,
        op: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.depth.get() > 0 || !self.timing.get() {
            return op();
        }
        self.depth.set(1);
        let (start, end) = (self.event()?, self.event()?);
        start.record(stream)?;
        let r = op();
        self.depth.set(0);
        r?;
        end.record(stream)?;
        self.pending.borrow_mut().push((name(), start, end));
        Ok(())
    }

    fn event(&self) -> Result<CudaEvent> {
        match self.pool.borrow_mut().pop() {
            Some(e) => Ok(e),
            None => Ok(self
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?),
        }
    }

    /// Waits for the queued ops and adds their times to the table.
    fn collect(&self) -> Result<()> {
        let mut ops = self.ops.borrow_mut();
        let mut pool = self.pool.borrow_mut();
        for (name, start, end) in self.pending.borrow_mut().drain(..) {
            end.synchronize()?;
            let e = ops.entry(name).or_default();
            e.0 += 1;
            e.1 += start.elapsed_ms(&end)? as f64;
            pool.extend([start, end]);
        }
        Ok(())
    }

    /// At a step's start: reads the last step's times (every REPORT_EVERY steps read, prints
    /// and clears the table) and counts this one if it is timed (`decode`: every sequence of
    /// the step has one new token). Whether to time it; the caller then holds the GPU
    /// (`hold_gpu`) before queueing a timed step.
    pub(super) fn step(&self, decode: bool) -> Result<bool> {
        self.finish_step()?;
        if self.unreported.get() == REPORT_EVERY {
            self.report(REPORT_EVERY);
        }
        let timed = decode || !self.decode_only;
        self.timing.set(timed);
        Ok(timed)
    }

    /// Reads the queued times: those of the last step, if it was timed.
    fn finish_step(&self) -> Result<()> {
        self.collect()?;
        if self.timing.get() {
            self.unreported.set(self.unreported.get() + 1);
        }
        Ok(())
    }

    /// Prints the table of the last `steps` steps and clears it.
    fn report(&self, steps: usize) {
        self.unreported.set(0);
        let mut ops: Vec<_> = self.ops.borrow_mut().drain().collect();
        ops.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let total: f64 = ops.iter().map(|o| o.1.1).sum();
        let per = steps.max(1) as f64;
        eprintln!(
            "CUDA op profile, last {steps} steps: {:.1} µs of ops per step",
            1e3 * total / per
        );
        for (name, (calls, ms)) in ops {
            eprintln!(
                "  {:>9.1} µs/step {:>5.1} % {:>7.1} calls/step  {name}",
                1e3 * ms / per,
                100.0 * ms / total.max(1e-12),
                calls as f64 / per
            );
        }
    }
}

impl CudaBackend {
    /// Queues the `hold` kernel (one thread, [`HOLD_US`] µs): the step's ops queue behind it.
    pub(super) fn hold_gpu(&self) -> Result<()> {
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch_now("hold", one, &[Arg::I(HOLD_US)])
    }
}

/// The steps since the last report (a run shorter than REPORT_EVERY steps, such as a prefill
/// benchmark, reports only here).
impl Drop for OpProfile {
    fn drop(&mut self) {
        if let Err(e) = self.finish_step() {
            eprintln!("CUDA op profile: the last step's times could not be read: {e:#}");
        }
        let steps = self.unreported.get();
        if steps > 0 && !self.ops.borrow().is_empty() {
            self.report(steps);
        }
    }
}
