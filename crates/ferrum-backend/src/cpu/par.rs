//! Parallel loops for the matmul that the calling thread takes part in.
//!
//! A rayon `par_iter` started from a thread outside the pool (the engine's step thread) hands the
//! whole loop to the pool and puts the caller to sleep until it is done: a futex sleep and wake
//! per call, on top of waking the workers. A decode step makes ~120 such matmul calls, and on a
//! busy 2-core machine those sleeps and wakes cost more than the arithmetic. [`for_each_task`]
//! instead lets the caller claim tasks from a shared counter alongside the pool's workers: it
//! never waits for a worker to wake up, only (spinning briefly) for tasks a worker has already
//! claimed. Which thread runs a task never changes what it computes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

/// Runs `f(0) … f(total - 1)`, each exactly once, spread over the calling thread and the rayon
/// pool. Returns when all have run; a panic in any task is re-raised here.
pub(crate) fn for_each_task(total: usize, f: &(dyn Fn(usize) + Sync)) {
    let helpers = rayon::current_num_threads()
        .saturating_sub(1)
        .min(total.saturating_sub(1));
    if helpers == 0 {
        (0..total).for_each(f);
        return;
    }
    if rayon::current_thread_index().is_some() {
        // inside the pool already (nested in another parallel loop): rayon's own splitting
        (0..total).into_par_iter().for_each(f);
        return;
    }
    // SAFETY (lifetime erasure): helpers call `f` only for a task index they claimed below
    // `total`, and this function returns only after every claimed task has finished (`done`
    // reaches `total`); a helper that starts later claims nothing and never touches `f`.
    let f: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(f) };
    let shared = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        total,
        f,
    });
    for _ in 0..helpers {
        let s = shared.clone();
        rayon::spawn(move || s.work());
    }
    shared.work();
    let mut spins = 0u32;
    while shared.done.load(Ordering::Acquire) < total {
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
    if shared.panicked.load(Ordering::Relaxed) {
        panic!("a matmul task panicked");
    }
}

/// `f(i, row)` for every `width`-wide row of `out`, `group` rows per task, through
/// [`for_each_task`]: the calling thread works too, so a one-row call (a decode step's norm or
/// activation) runs inline instead of sleeping while a worker wakes for it.
pub(crate) fn for_each_row(
    out: &mut [f32],
    width: usize,
    group: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let rows = out.len() / width.max(1);
    let ptr = super::SyncPtr(out.as_mut_ptr());
    for_each_task(rows.div_ceil(group.max(1)), &|t| {
        for i in t * group..((t + 1) * group).min(rows) {
            // SAFETY: row i lies inside `out` and only the task owning it touches it.
            let row = unsafe { std::slice::from_raw_parts_mut(ptr.at(i * width), width) };
            f(i, row);
        }
    });
}

struct Shared {
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
    total: usize,
    f: &'static (dyn Fn(usize) + Sync),
}

impl Shared {
    fn work(&self) {
        loop {
            let t = self.next.fetch_add(1, Ordering::Relaxed);
            if t >= self.total {
                return;
            }
            if catch_unwind(AssertUnwindSafe(|| (self.f)(t))).is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            self.done.fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_from_inside_and_outside_the_pool() {
        for total in [0usize, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..total).map(|_| AtomicUsize::new(0)).collect();
            for_each_task(total, &|t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            rayon::scope(|_| {
                for_each_task(total, &|t| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                })
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 2));
        }
    }

    #[test]
    #[should_panic]
    fn a_panicking_task_panics_the_caller() {
        for_each_task(64, &|t| {
            if t == 63 {
                panic!("boom");
            }
        });
    }
}
