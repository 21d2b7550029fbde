//! `FERRUM_CUDA_PROFILE=1`: each kernel launch and cuBLAS call timed between two CUDA events (the
//! host waits after each op, and decode graphs are off), summed per op and printed every 64
//! steps, and the rest when the backend is dropped: where a step's time goes, on machines where
//! no profiler runs. Timings are of the ops alone; the waits make the whole step slower than
//! without it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, sys};

const REPORT_EVERY: usize = 64;

pub(super) struct OpProfile {
    start: CudaEvent,
    end: CudaEvent,
    /// Inside a timed op: ops it launches are part of its time.
    depth: Cell<usize>,
    /// Per op: calls and milliseconds since the last report.
    ops: RefCell<HashMap<String, (u64, f64)>>,
    steps: Cell<usize>,
}

impl OpProfile {
    pub(super) fn from_env(ctx: &Arc<CudaContext>) -> Result<Option<OpProfile>> {
        if std::env::var("FERRUM_CUDA_PROFILE").map_or(true, |v| v == "0") {
            return Ok(None);
        }
        let ev = || ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT));
        Ok(Some(OpProfile {
            start: ev()?,
            end: ev()?,
            depth: Cell::new(0),
            ops: RefCell::new(HashMap::new()),
            steps: Cell::new(0),
        }))
    }

    /// Runs `op`, timing it as `name()` unless an enclosing op is being timed.
    pub(super) fn time(
        &self,
        stream: &CudaStream,
        name: impl FnOnce() -> String,
        op: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.depth.get() > 0 {
            return op();
        }
        self.depth.set(1);
        self.start.record(stream)?;
        let r = op();
        self.depth.set(0);
        r?;
        self.end.record(stream)?;
        let ms = self.start.elapsed_ms(&self.end)? as f64;
        let mut ops = self.ops.borrow_mut();
        let e = ops.entry(name()).or_default();
        e.0 += 1;
        e.1 += ms;
        Ok(())
    }

    /// Counts a step; every REPORT_EVERY steps prints and clears the table.
    pub(super) fn step(&self) {
        self.steps.set(self.steps.get() + 1);
        if self.steps.get().is_multiple_of(REPORT_EVERY) {
            self.report(REPORT_EVERY);
        }
    }

    /// Prints the table of the last `steps` steps and clears it.
    fn report(&self, steps: usize) {
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

/// The steps since the last report (a run shorter than REPORT_EVERY steps, such as a prefill
/// benchmark, reports only here).
impl Drop for OpProfile {
    fn drop(&mut self) {
        let steps = self.steps.get() % REPORT_EVERY;
        if steps > 0 && !self.ops.borrow().is_empty() {
            self.report(steps);
        }
    }
}
