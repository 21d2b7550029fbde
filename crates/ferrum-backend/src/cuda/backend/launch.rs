//! Every kernel launch: `cuLaunchKernelEx` with the arguments packed as the driver reads them,
//! and on Hopper (unless `FERRUM_CUDA_PDL=0`) the programmatic-serialization attribute
//! (programmatic dependent launch: a kernel's launch overlaps the tail of the one before it,
//! and it waits for that one's writes with `wait_for_dependencies()` in `prelude.cuh`: as its
//! first statement, or once it has issued the loads of what no kernel of the step writes).

use anyhow::{Context, Result};
use cudarc::driver::{LaunchConfig, sys};

use super::Arg::{self, F, I, L, P};
use super::CudaBackend;

impl CudaBackend {
    /// Launches kernel `name` now (no profile event), with `args` in the kernel's order.
    pub(in crate::cuda) fn launch_now(
        &self,
        name: &str,
        cfg: LaunchConfig,
        args: &[Arg],
    ) -> Result<()> {
        if self.tune.skip.iter().any(|s| s == name) {
            return Ok(());
        }
        let f = self.f(name)?;
        if cfg.shared_mem_bytes > 48 * 1024 {
            // dynamic shared memory above 48 KB: the kernel's limit raised first
            f.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                cfg.shared_mem_bytes as i32,
            )?;
        }
        // each argument in an 8-byte slot, its value in the low bytes (little-endian): the
        // driver reads as many bytes as the kernel's parameter has
        let mut slots: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                P(p) => p,
                I(i) => i as u32 as u64,
                L(l) => l as u64,
                F(f) => f.to_bits() as u64,
            })
            .collect();
        let mut params: Vec<*mut std::ffi::c_void> =
            slots.iter_mut().map(|s| (s as *mut u64).cast()).collect();
        let mut attr = sys::CUlaunchAttribute {
            id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value: sys::CUlaunchAttributeValue {
                programmaticStreamSerializationAllowed: 1,
            },
        };
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: self.tune.pdl as u32,
        };
        self.stream.context().bind_to_thread()?;
        // SAFETY: the arguments match the kernel's parameters (pointer, int, long long, float)
        // and outlive the call (the driver copies them at launch); every pointer is a live
        // allocation of this context, and one stream orders the uses.
        unsafe {
            sys::cuLaunchKernelEx(
                &config,
                f.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
        .with_context(|| format!("launching {name}"))
    }
}
