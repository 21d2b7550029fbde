//! Compute backends behind one trait layer ([`backend`]): weights converted from host views
//! ([`host`]), device buffers, the paged KV cache and the ops a forward needs. `cpu` is the
//! reference: multi-threaded (rayon) and batch-invariant — the value computed for one row never
//! depends on how many rows share the call, so a request's tokens are the same alone, in a batch,
//! chunked or recomputed after preemption.

pub mod backend;
pub mod cpu;
pub mod cuda;
pub mod host;

pub use backend::{
    AttnDims, Backend, DryRun, KvDtype, KvSpec, LogitsRow, MemInfo, MoeDims, MoeRouter, RopeConfig,
    Routing, RowOutput, StepMeta, StepSeq, WeightBytes, Weights,
};
pub use cpu::CpuBackend;
pub use host::{HostDtype, HostLinear, HostTensor, Shard};
