//! CPU ops over row-major f32 slices. Every reduction goes through [`dot`] (fixed lane order), and
//! work is split by rows and output columns only, never along a reduction, so results are
//! bit-identical whatever the batch size or thread count.

mod activation;
mod attention;
mod backend;
mod dot;
mod exp;
pub(crate) mod fp8;
mod matmul;
mod moe;
mod norm;
mod par;
mod q8_dot;
mod rope;
mod weight;

pub use activation::silu_mul;
pub use attention::{
    AttnSeq, AttnShape, F32Rows, Fp8Rows, KvRows, paged_attention, paged_attention_rows, write_kv,
    write_kv_fp8,
};
pub use backend::{CpuBackend, CpuKv, CpuMoeScratch};
pub use dot::dot;
pub use fp8::{E4M3FN_TO_F32, e4m3fn_to_f32, f32_to_e4m3fn};
pub use matmul::matmul_t;
pub use moe::{Expert, MoeScratch, Router, moe_experts, route};
pub use norm::{add_inplace, rms_norm, rms_norm_rows, rms_norm_rows_inplace};
pub use rope::{Rope, RopeScaling, RopeStyle};
pub use weight::{Part, PartData, RowDecoder, Weight};

/// A raw pointer that rayon tasks may share when each task writes a disjoint part of the buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub *mut f32);
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// Through a method, so closures capture the whole `SyncPtr` (Send + Sync), not its field.
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}
