//! Compute backends. `cpu` is the reference: multi-threaded (rayon) and batch-invariant — the value
//! computed for one row never depends on how many rows share the call, so a request's tokens are
//! the same alone, in a batch, chunked or recomputed after preemption.

pub mod cpu;
