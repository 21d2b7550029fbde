//! The CUDA backend ([`CudaBackend`]): kernels compiled by NVRTC ([`nvrtc`], [`kernels`]),
//! cuBLAS GEMMs, and device discovery ([`probe`]). Everything loads libcuda and libnvrtc at run time (cudarc's dynamic
//! loading), so the crate builds and its tests run on machines with no CUDA at all.

mod backend;
mod fp8_gemm;
pub mod kernels;
mod linear;
mod moe;
mod moe_route;
pub mod nvrtc;
mod profile;
mod sample;
mod staging;
mod step;
mod tunables;
mod weights;

pub use backend::{CudaBackend, CudaBuf, CudaKv, CudaRope, Half};
pub use moe::{CudaExperts, CudaMoeScratch};
pub use tunables::RouteTopk;
pub use weights::{CudaVector, CudaWeight};

use anyhow::{Context, Result, bail};

/// One visible GPU.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub total_bytes: u64,
    /// `(major, minor)` compute capability.
    pub capability: (i32, i32),
}

impl GpuInfo {
    /// The NVRTC target for this GPU: `sm_90a` on Hopper (its wgmma/TMA instructions need the
    /// `a` variant), `sm_XY` elsewhere.
    pub fn arch(&self) -> String {
        match self.capability {
            (9, 0) => "sm_90a".into(),
            (major, minor) => format!("sm_{major}{minor}"),
        }
    }
}

/// Whether the CUDA driver library can be loaded at all.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The visible GPUs; an empty list where there is no driver or no device.
pub fn probe() -> Result<Vec<GpuInfo>> {
    if !driver_available() {
        return Ok(Vec::new());
    }
    let n = match cudarc::driver::CudaContext::device_count() {
        Ok(n) => n,
        // no device (or no usable one): a CPU machine with a driver installed
        Err(e) if format!("{e:?}").contains("NO_DEVICE") => return Ok(Vec::new()),
        Err(e) => return Err(e).context("counting CUDA devices"),
    };
    (0..n.max(0) as usize)
        .map(|ordinal| {
            let ctx = cudarc::driver::CudaContext::new(ordinal)
                .with_context(|| format!("opening CUDA device {ordinal}"))?;
            Ok(GpuInfo {
                ordinal,
                name: ctx.name()?,
                total_bytes: ctx.total_mem()? as u64,
                capability: ctx.compute_capability()?,
            })
        })
        .collect()
}

/// The GPU `--device cuda` runs on: the first visible one, or an error saying why there is none.
pub fn require_gpu() -> Result<GpuInfo> {
    if !driver_available() {
        bail!(
            "--device cuda: the CUDA driver (libcuda.so) was not found; install the NVIDIA driver or use --device cpu"
        );
    }
    match probe()?.into_iter().next() {
        Some(g) => Ok(g),
        None => bail!(
            "--device cuda: no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES) or use --device cpu"
        ),
    }
}
