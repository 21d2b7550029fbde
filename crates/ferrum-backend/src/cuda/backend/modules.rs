//! The backend's kernels: every program (a file, or a part of one) compiled by NVRTC for the device's architecture and the
//! model's dtype (or taken from the disk cache) on a thread of its own, started by
//! `CudaBackend::new`, so that a first start's compile (CPU work, several seconds) overlaps the
//! weights' loading; the modules are loaded at the first launch, which waits for the compile if
//! it has not finished. `FERRUM_CUDA_COMPILE_ASYNC=0` waits in `new` instead.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;

use crate::cuda::{kernels, nvrtc};

type Compile = JoinHandle<Vec<Result<nvrtc::Compiled>>>;

pub(super) struct Modules {
    arch: String,
    dtype: &'static str,
    /// Each entry point of this dtype, by the function's own name (a launch looks up without
    /// building a string); set at the first launch.
    functions: OnceCell<HashMap<&'static str, CudaFunction>>,
    /// The compile, until the first launch takes its result.
    compiling: RefCell<Option<Compile>>,
}

impl Modules {
    /// Starts compiling every kernel file for `arch` and `dtype` (the disk cache's files are
    /// read, not compiled), saying so when some file is not cached.
    pub fn start(arch: &str, dtype: &'static str) -> Modules {
        let fresh = kernels::programs()
            .iter()
            .filter(|p| !nvrtc::is_cached(&p.name(), &p.source(dtype), arch))
            .count();
        if fresh > 0 {
            let cache = nvrtc::cache_dir().map_or("nowhere".into(), |d| d.display().to_string());
            tracing::info!(
                "compiling {fresh} CUDA kernel programs for {arch} and {dtype} (the first start of this build here; cached in {cache})"
            );
        }
        let thread_arch = arch.to_string();
        let compile = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let compiled = nvrtc::compile_all(&kernels::programs(), dtype, &thread_arch);
            if fresh > 0 {
                let s = t.elapsed().as_secs_f64();
                tracing::info!("CUDA kernels compiled in {s:.1} s");
            }
            compiled
        });
        Modules {
            arch: arch.to_string(),
            dtype,
            functions: OnceCell::new(),
            compiling: RefCell::new(Some(compile)),
        }
    }

    /// The kernel `name` for this dtype: at the first call the compile's result (waited for)
    /// loaded into `ctx`.
    pub fn get(&self, ctx: &Arc<CudaContext>, name: &str) -> Result<&CudaFunction> {
        self.load(ctx)?
            .get(name)
            .ok_or_else(|| anyhow!("kernel {name} is not in kernels::FILES"))
    }

    /// Waits for the compile and loads every module into `ctx` (once).
    pub fn load(&self, ctx: &Arc<CudaContext>) -> Result<&HashMap<&'static str, CudaFunction>> {
        if let Some(f) = self.functions.get() {
            return Ok(f);
        }
        let compile = self.compiling.borrow_mut().take().ok_or_else(|| {
            anyhow!("the CUDA kernels failed to compile or load (the first error said why)")
        })?;
        let compiled = compile
            .join()
            .map_err(|_| anyhow!("the CUDA kernel compile thread panicked"))?;
        let mut functions = HashMap::new();
        for (p, c) in kernels::programs().iter().zip(compiled) {
            let (arch, name) = (&self.arch, p.name());
            let c = c?;
            let module = ctx
                .load_module(Ptx::from_binary(c.image))
                .with_context(|| format!("loading kernels {name} for {arch}"))?;
            for &f in p.functions {
                let e = format!("{f}_{}", self.dtype);
                let func = module
                    .load_function(&e)
                    .with_context(|| format!("kernel {e} in {name}"))?;
                functions.insert(f, func);
            }
        }
        Ok(self.functions.get_or_init(|| functions))
    }
}
