//! The CUDA backend: the ops of [`Backend`] as NVRTC-compiled kernels and cuBLAS GEMMs on one
//! stream of one GPU, activations in the model's half dtype (bf16 or f16) with f32 arithmetic
//! inside every kernel.
//!
//! Ops that cannot return an error (the trait's element-wise ops) record the first failure; the
//! next `read`, `sample` or `begin_step` returns it, and a failed launch leaves the stream's
//! sticky error for those too. Kernel arguments are raw device pointers: one stream orders every
//! use, so cudarc's per-buffer event tracking is switched off.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use cudarc::cublas::{CudaBlas, sys as blas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    DeviceRepr, LaunchConfig, sys,
};

use super::GpuInfo;
use super::fp8_gemm::Fp8Gemm;
use super::moe::{CudaExperts, CudaMoeScratch};
use super::profile::OpProfile;
use super::sample::{self, DeviceSampling};
use super::staging::Staging;
use super::step::{DeviceStep, StepPtrs, TILE_TOKENS};
use super::tunables::Tunables;
use super::weights::{CudaVector, CudaWeight};
use crate::backend::{
    AttnDims, Backend, KvDtype, KvSpec, LogitsRow, MemInfo, MoeDims, MoeRouter, RopeConfig,
    RowOutput, StepMeta, host_sample, qkv_to_cache_op_by_op,
};
use crate::cpu::{Rope, RopeStyle};

mod attention;
mod launch;
mod modules;

use modules::Modules;

/// The activation and weight dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    Bf16,
    F16,
}

impl Half {
    fn suffix(self) -> &'static str {
        match self {
            Half::Bf16 => "bf16",
            Half::F16 => "f16",
        }
    }

    pub(super) fn blas(self) -> blas::cudaDataType {
        match self {
            Half::Bf16 => blas::cudaDataType::CUDA_R_16BF,
            Half::F16 => blas::cudaDataType::CUDA_R_16F,
        }
    }

    /// f32 values as this type's 16-bit words (round to nearest even).
    pub(crate) fn encode(self, x: &[f32]) -> Vec<u16> {
        match self {
            Half::Bf16 => x
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_bits())
                .collect(),
            Half::F16 => x
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect(),
        }
    }

    pub(super) fn to_f32(self, w: u16) -> f32 {
        match self {
            Half::Bf16 => half::bf16::from_bits(w).to_f32(),
            Half::F16 => half::f16::from_bits(w).to_f32(),
        }
    }
}

/// A kernel argument: a device pointer, an `int`, a `long long` or a `float`.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    P(u64),
    I(i32),
    L(i64),
    F(f32),
}
use Arg::{F, I, L, P};

/// An activation buffer (raw 16-bit words of the backend's dtype).
pub struct CudaBuf {
    pub(crate) mem: CudaSlice<u16>,
}

/// Every layer's K and V in one allocation, `[layer][K | V][slot][kv_dim]` as on the CPU.
/// In the activations' half type, or FP8 e4m3 with per-layer `(k_scale, v_scale)`.
pub struct CudaKv {
    mem: CudaSlice<u8>,
    /// Values of one layer's K (and of its V).
    half: usize,
    kv_dim: usize,
    block_size: usize,
    fp8: bool,
    scales: Vec<(f32, f32)>,
}

impl CudaKv {
    /// Device pointers of `layer`'s K and V caches.
    fn layer_ptrs(&self, be: &CudaBackend, layer: usize) -> (u64, u64) {
        let bytes = (self.half * if self.fp8 { 1 } else { 2 }) as u64;
        let k = be.ptr(&self.mem) + 2 * layer as u64 * bytes;
        (k, k + bytes)
    }

    /// The kernel for this cache's type (`write_kv` or `write_kv_fp8`, ...).
    fn kernel(&self, half: &'static str, fp8: &'static str) -> &'static str {
        if self.fp8 { fp8 } else { half }
    }
}

pub struct CudaRope {
    inv_freq: CudaSlice<f32>,
    head_dim: usize,
    rotary_dim: usize,
    neox: bool,
}

pub struct CudaBackend {
    pub gpu: GpuInfo,
    ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(super) blas: CudaBlas,
    pub(crate) dtype: Half,
    /// The kernels, compiling on a thread of their own until the first launch (`modules.rs`).
    modules: Modules,
    step: DeviceStep,
    /// Row indices for `gather_rows` (given per call on the host).
    rows: RefCell<Option<CudaSlice<u32>>>,
    /// Block-FP8 weights dequantized for a GEMM at prefill (`linear.rs`), sized at load.
    pub(super) dequant: RefCell<Option<CudaSlice<u16>>>,
    /// The W8A8 block-FP8 GEMM (`fp8_gemm.rs`), made at the first block-FP8 weight on Hopper;
    /// `None` elsewhere, with `FERRUM_CUDA_FP8_GEMM=dequant`, or when cuBLASLt fails to open.
    fp8_gemm: OnceCell<Option<Fp8Gemm>>,
    /// The kernel choices that have an A/B (`tunables.rs`).
    pub(super) tune: Tunables,
    /// `FERRUM_CUDA_PROFILE=1`: per-op timings (`profile.rs`).
    pub(super) profile: Option<OpProfile>,
    /// Pinned buffers for weight uploads (allocated at the first, freed at the first step).
    staging: RefCell<Option<Staging>>,
    /// Split-KV attention's partial results (allocated at first use, at their largest size).
    attn_part: RefCell<Option<CudaSlice<f32>>>,
    /// Captured forwards (CUDA graphs), by key (the decode batch size).
    graphs: HashMap<usize, CudaGraph>,
    /// Streaming multiprocessors (split-KV decode fills two waves of them).
    pub(super) sm_count: usize,
    /// Sampling parameters and chosen ids of `sample`'s device path (`sample.rs`).
    pub(super) sampling: DeviceSampling,
    error: RefCell<Option<anyhow::Error>>,
}

impl CudaBackend {
    /// Opens GPU `ordinal` and starts compiling (or reading from the disk cache) every kernel
    /// for its architecture and `dtype` (`modules.rs`: loaded at the first launch).
    pub fn new(ordinal: usize, dtype: Half) -> Result<CudaBackend> {
        if !super::driver_available() {
            bail!("the CUDA driver (libcuda.so) was not found");
        }
        let ctx = CudaContext::new(ordinal).with_context(|| format!("opening GPU {ordinal}"))?;
        // SAFETY: one stream orders every use of every buffer this backend allocates.
        unsafe { ctx.disable_event_tracking() };
        let gpu = GpuInfo {
            ordinal,
            name: ctx.name()?,
            total_bytes: ctx.total_mem()? as u64,
            capability: ctx.compute_capability()?,
        };
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .context("the GPU's multiprocessor count")? as usize;
        // a stream of its own: the legacy default stream cannot be captured into a graph
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        let blas = CudaBlas::new(stream.clone()).context("creating the cuBLAS handle")?;
        let arch = gpu.arch();
        let tune = Tunables::from_env(sm_count, gpu.capability);
        let modules = Modules::start(&arch, dtype.suffix());
        if !tune.compile_async {
            modules.load(&ctx)?;
        }
        let profile = OpProfile::from_env(&ctx)?;
        Ok(CudaBackend {
            gpu,
            ctx,
            stream,
            blas,
            dtype,
            modules,
            step: DeviceStep::default(),
            rows: RefCell::new(None),
            dequant: RefCell::new(None),
            fp8_gemm: OnceCell::new(),
            staging: RefCell::new(None),
            profile,
            tune,
            sampling: DeviceSampling::default(),
            attn_part: RefCell::new(None),
            graphs: HashMap::new(),
            sm_count,
            error: RefCell::new(None),
        })
    }

    /// The kernel `name` for this backend's dtype (the first call waits for the compile).
    fn f(&self, name: &str) -> Result<&CudaFunction> {
        self.modules.get(&self.ctx, name)
    }

    pub(super) fn ptr<T>(&self, s: &CudaSlice<T>) -> u64 {
        s.device_ptr(&self.stream).0
    }

    /// Keeps the first error of an op that cannot return one.
    fn record(&self, r: Result<()>) {
        if let Err(e) = r {
            let mut slot = self.error.borrow_mut();
            if slot.is_none() {
                *slot = Some(e);
            }
        }
    }

    fn take_error(&self) -> Result<()> {
        match self.error.borrow_mut().take() {
            Some(e) => Err(e.context("a CUDA op failed earlier in this step")),
            None => Ok(()),
        }
    }

    fn step_ptrs(&self) -> Result<StepPtrs> {
        self.step.ptrs(&self.stream)
    }

    /// The W8A8 GEMM, opened at the first call: on Hopper (cuBLASLt's 128-block FP8 scaling is
    /// sm_90's), unless `FERRUM_CUDA_FP8_GEMM=dequant`.
    pub(super) fn fp8_gemm(&self) -> Option<&Fp8Gemm> {
        self.fp8_gemm
            .get_or_init(|| {
                let off = std::env::var("FERRUM_CUDA_FP8_GEMM").is_ok_and(|v| v == "dequant");
                if off || self.gpu.capability.0 != 9 {
                    return None;
                }
                Fp8Gemm::new(&self.stream)
                    .and_then(|lt| self.probe_fp8_gemm(&lt).map(|()| lt))
                    .inspect_err(|e| {
                        tracing::warn!("block-FP8 layers dequantize for their GEMMs: {e:#}")
                    })
                    .ok()
            })
            .as_ref()
    }

    /// Whether block-FP8 layers of more than eight rows run the W8A8 GEMM (on Hopper, once its
    /// probe agreed with the dequantizing path); the op tests assert it there.
    pub fn w8a8_fp8(&self) -> bool {
        self.fp8_gemm().is_some()
    }

    /// A new device buffer holding `bytes` (as `T`s), copied through the pinned staging buffers.
    pub(super) fn upload_bytes<T: DeviceRepr>(&self, bytes: &[u8]) -> Result<CudaSlice<T>> {
        let n = bytes.len() / std::mem::size_of::<T>();
        // SAFETY: the copy below writes every byte before any kernel on the stream reads them
        let mut mem = unsafe { self.stream.alloc::<T>(n.max(1)) }?;
        let mut staging = self.staging.borrow_mut();
        if staging.is_none() {
            *staging = Some(Staging::new(&self.ctx)?);
        }
        let (dst, guard) = mem.device_ptr_mut(&self.stream);
        staging.as_mut().unwrap().copy(&self.stream, bytes, dst)?;
        drop(guard);
        Ok(mem)
    }

    /// Uploads host f32 values as an activation buffer (tests and the op checks).
    pub fn upload_f32(&self, x: &[f32]) -> Result<CudaBuf> {
        Ok(CudaBuf {
            mem: self.stream.clone_htod(&self.dtype.encode(x))?,
        })
    }

    /// Launches kernel `name` (this backend's dtype) with `args` in the kernel's order.
    pub(super) fn launch(&self, name: &str, cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
        self.timed(|| name.to_string(), || self.launch_now(name, cfg, args))
    }

    /// Runs `op`, timed as `name()` under `FERRUM_CUDA_PROFILE` (`profile.rs`).
    pub(super) fn timed(
        &self,
        name: impl FnOnce() -> String,
        op: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        match &self.profile {
            Some(p) => p.time(&self.stream, name, op),
            None => op(),
        }
    }

    /// One block per row for `rows` rows.
    pub(super) fn rows_cfg(rows: usize, threads: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Blocks (row, c) of 256 threads for a per-row op over `width` columns: enough column
    /// blocks that each thread takes about four columns (one block per row would leave the GPU
    /// idle at decode batches).
    pub(super) fn cols_cfg(rows: usize, width: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows as u32, width.div_ceil(1024).max(1) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// One block per row for the norms (a reduction over the row): 1024 threads while the rows
    /// are fewer than the multiprocessors, so a decode step's few rows are not a long serial
    /// loop each.
    fn norm_cfg(&self, rows: usize) -> LaunchConfig {
        Self::rows_cfg(rows, if rows < self.sm_count { 1024 } else { 256 })
    }

    pub(super) fn flat_cfg(n: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 4096) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;
    type Kv = CudaKv;
    type Rope = CudaRope;
    type MoeScratch = CudaMoeScratch;

    fn device_name(&self) -> String {
        format!(
            "GPU {} ({}, {:.0} GB, {})",
            self.gpu.ordinal,
            self.gpu.name,
            self.gpu.total_bytes as f64 / 1e9,
            self.gpu.arch()
        )
    }

    fn memory(&self) -> MemInfo {
        let (free, total) = self.ctx.mem_get_info().unwrap_or((0, 0));
        MemInfo {
            total: total as u64,
            available: free as u64,
        }
    }

    fn profile_before_kv_sizing(&self) -> bool {
        true
    }

    fn supports_graphs(&self) -> bool {
        // the profile times each op between events of its own, which a graph would not run
        self.profile.is_none()
    }

    fn reserve_step(&mut self, tokens: usize, table_entries: usize) -> Result<()> {
        self.step.reserve(&self.stream, tokens, table_entries)
    }

    fn capture_begin(&mut self) -> Result<()> {
        self.take_error()?;
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .context("starting a CUDA graph capture")?;
        Ok(())
    }

    fn capture_end(&mut self, key: usize) -> Result<()> {
        // end the capture whatever happened during it, then report the first failure
        let graph = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .context("ending a CUDA graph capture");
        self.take_error()?;
        let graph = graph?.ok_or_else(|| anyhow!("the CUDA graph capture recorded nothing"))?;
        self.graphs.insert(key, graph);
        Ok(())
    }

    fn replay(&mut self, key: usize) -> Result<()> {
        let g = self
            .graphs
            .get(&key)
            .ok_or_else(|| anyhow!("no CUDA graph captured for {key}"))?;
        g.launch().context("launching a CUDA graph")?;
        Ok(())
    }

    fn kv_cache_budget(&self, gpu_memory_utilization: Option<f64>) -> Result<u64> {
        let util = gpu_memory_utilization.unwrap_or(0.9);
        let m = self.memory();
        let used = m.total - m.available;
        let allowed = (m.total as f64 * util) as u64;
        if allowed <= used {
            bail!(
                "--gpu-memory-utilization {util} allows {:.1} GiB but weights and workspace already take {:.1} GiB of {:.1} GiB: raise it or lower --max-num-batched-tokens",
                allowed as f64 / (1u64 << 30) as f64,
                used as f64 / (1u64 << 30) as f64,
                m.total as f64 / (1u64 << 30) as f64
            );
        }
        Ok(allowed - used)
    }

    fn alloc(&self, len: usize) -> Result<CudaBuf> {
        Ok(CudaBuf {
            mem: self.stream.alloc_zeros::<u16>(len.max(1))?,
        })
    }

    fn alloc_kv(&self, spec: &KvSpec) -> Result<CudaKv> {
        let fp8 = match (spec.dtype, self.dtype) {
            (KvDtype::BF16, Half::Bf16) | (KvDtype::F16, Half::F16) => false,
            (KvDtype::Fp8E4M3, _) => true,
            _ => bail!(
                "the CUDA backend keeps the KV cache in the model's dtype ({:?}) or fp8 e4m3, not {:?}",
                self.dtype,
                spec.dtype
            ),
        };
        let half = spec.num_blocks * spec.block_size * spec.kv_dim;
        let bytes = 2 * spec.num_layers * half * spec.dtype.bytes();
        Ok(CudaKv {
            mem: self.stream.alloc_zeros::<u8>(bytes)?,
            half,
            kv_dim: spec.kv_dim,
            block_size: spec.block_size,
            fp8,
            scales: vec![(1.0, 1.0); spec.num_layers],
        })
    }

    fn set_kv_scales(
        &self,
        kv: &mut CudaKv,
        layer: usize,
        k_scale: f32,
        v_scale: f32,
    ) -> Result<()> {
        if !kv.fp8 {
            bail!("KV-cache scales apply to an fp8 cache only");
        }
        kv.scales[layer] = (k_scale, v_scale);
        Ok(())
    }

    fn rope(&self, r: &RopeConfig) -> Result<CudaRope> {
        r.validate()?;
        let host = Rope::new(r.head_dim, r.rotary_dim, r.theta, &r.scaling, r.style);
        let inv: Vec<f32> = host.inv_freq().iter().map(|&f| f as f32).collect();
        Ok(CudaRope {
            inv_freq: self.stream.clone_htod(&inv)?,
            head_dim: r.head_dim,
            rotary_dim: r.rotary_dim,
            neox: r.style == RopeStyle::Neox,
        })
    }

    fn moe_scratch(&self, max_tokens: usize, d: &MoeDims) -> Result<CudaMoeScratch> {
        self.new_moe_scratch(max_tokens, d)
    }

    fn begin_step(&mut self, meta: &StepMeta) -> Result<()> {
        self.take_error()?;
        // the weights are in: the pinned staging buffers go back (after their last copy)
        if let Some(staging) = self.staging.get_mut().take() {
            self.stream.synchronize()?;
            drop(staging);
        }
        let Some(p) = &self.profile else {
            return self.step.upload(&self.stream, meta);
        };
        let timed = p.step(meta.seqs.iter().all(|s| s.q_len == 1))?;
        // after the metadata's copies: a copy from pageable memory waits for the stream, so one
        // queued behind the hold would keep the host from queueing the step during it
        self.step.upload(&self.stream, meta)?;
        if timed { self.hold_gpu() } else { Ok(()) }
    }

    fn embedding(&self, table: &CudaWeight, out: &mut CudaBuf) -> Result<()> {
        // a gather of the table's rows at the step's token ids
        let tokens = self.step_ptrs()?.tokens;
        let args = [
            P(self.ptr(table.half()?)),
            P(tokens),
            P(self.ptr(&out.mem)),
            I(table.k as i32),
        ];
        self.launch(
            "gather_rows",
            Self::cols_cfg(self.step.n_tokens, table.k),
            &args,
        )
    }

    fn rms_norm(&self, x: &CudaBuf, w: &CudaVector, eps: f32, rows: usize, out: &mut CudaBuf) {
        let args = [
            P(self.ptr(&x.mem)),
            P(self.ptr(&w.mem)),
            P(self.ptr(&out.mem)),
            I(w.len as i32),
            F(eps),
        ];
        self.record(self.launch("rms_norm", self.norm_cfg(rows), &args));
    }

    fn rms_norm_inplace(&self, x: &mut CudaBuf, w: &CudaVector, eps: f32, rows: usize) {
        let xp = self.ptr(&x.mem);
        let args = [P(xp), P(self.ptr(&w.mem)), P(xp), I(w.len as i32), F(eps)];
        self.record(self.launch("rms_norm", Self::rows_cfg(rows, 128), &args));
    }

    fn add_rms_norm(
        &self,
        x: &CudaBuf,
        y: &CudaBuf,
        w: &CudaVector,
        eps: f32,
        rows: usize,
        sum: &mut CudaBuf,
        out: &mut CudaBuf,
    ) {
        let args = [
            P(self.ptr(&x.mem)),
            P(self.ptr(&y.mem)),
            P(self.ptr(&w.mem)),
            P(self.ptr(&sum.mem)),
            P(self.ptr(&out.mem)),
            I(w.len as i32),
            F(eps),
        ];
        self.record(self.launch("add_rms_norm", self.norm_cfg(rows), &args));
    }

    fn norm_linear(
        &self,
        x: &CudaBuf,
        y: Option<&CudaBuf>,
        g: &CudaVector,
        eps: f32,
        rows: usize,
        sum: &mut CudaBuf,
        normed: &mut CudaBuf,
        w: &CudaWeight,
        out: &mut CudaBuf,
    ) {
        if !self.norm_gemv_fits(g, rows, w) {
            return crate::backend::norm_then_linear(self, x, y, g, eps, rows, sum, normed, w, out);
        }
        self.record(self.norm_gemv(x, y, g, eps, sum, normed, w, out));
    }

    fn norm_router(
        &self,
        x: &CudaBuf,
        y: Option<&CudaBuf>,
        g: &CudaVector,
        eps: f32,
        rows: usize,
        sum: &mut CudaBuf,
        normed: &mut CudaBuf,
        router: &MoeRouter<'_, Self>,
        scratch: &mut CudaMoeScratch,
        logits: &mut CudaBuf,
    ) {
        if !self.router_fuses(g, rows, router.weight) {
            return self.norm_linear(x, y, g, eps, rows, sum, normed, router.weight, logits);
        }
        let r = self.norm_router_fused(x, y, g, eps, sum, normed, router, scratch, logits);
        self.record(r);
    }

    fn add(&self, acc: &mut CudaBuf, x: &CudaBuf, len: usize) {
        let args = [P(self.ptr(&acc.mem)), P(self.ptr(&x.mem)), L(len as i64)];
        self.record(self.launch("add", Self::flat_cfg(len), &args));
    }

    fn linear(&self, x: &CudaBuf, rows: usize, w: &CudaWeight, out: &mut CudaBuf) {
        self.record(self.linear_into(x, rows, w, out));
    }

    fn split_qkv(
        &self,
        qkv: &CudaBuf,
        rows: usize,
        q_dim: usize,
        kv_dim: usize,
        bias: Option<&CudaVector>,
        q: &mut CudaBuf,
        k: &mut CudaBuf,
        v: &mut CudaBuf,
    ) {
        let args = [
            P(self.ptr(&qkv.mem)),
            // a null bias pointer: none
            P(bias.map_or(0, |b| self.ptr(&b.mem))),
            P(self.ptr(&q.mem)),
            P(self.ptr(&k.mem)),
            P(self.ptr(&v.mem)),
            I(q_dim as i32),
            I(kv_dim as i32),
        ];
        let cfg = Self::cols_cfg(rows, q_dim + 2 * kv_dim);
        self.record(self.launch("split_qkv", cfg, &args));
    }

    fn apply_rope(&self, rope: &CudaRope, x: &mut CudaBuf, rows: usize, n_heads: usize) {
        let r = self.step_ptrs().and_then(|st| {
            let args = [
                P(self.ptr(&x.mem)),
                P(st.positions),
                P(self.ptr(&rope.inv_freq)),
                I(n_heads as i32),
                I(rope.head_dim as i32),
                I(rope.rotary_dim as i32),
                I(rope.neox as i32),
            ];
            let pairs = n_heads * rope.rotary_dim / 2;
            self.launch("rope", Self::cols_cfg(rows, pairs), &args)
        });
        self.record(r);
    }

    fn write_kv(&self, kv: &mut CudaKv, layer: usize, k: &CudaBuf, v: &CudaBuf) {
        let r = self.step_ptrs().and_then(|st| {
            let (kc, vc) = kv.layer_ptrs(self, layer);
            let args = [
                P(self.ptr(&k.mem)),
                P(self.ptr(&v.mem)),
                P(kc),
                P(vc),
                P(st.slots),
                I(kv.kv_dim as i32),
                F(kv.scales[layer].0),
                F(kv.scales[layer].1),
            ];
            let name = kv.kernel("write_kv", "write_kv_fp8");
            self.launch(name, Self::cols_cfg(self.step.n_tokens, kv.kv_dim), &args)
        });
        self.record(r);
    }

    /// One launch (`qkv_to_cache` in cache_write.cu) for head sizes up to 256; the separate ops
    /// otherwise.
    fn qkv_to_cache(
        &self,
        qkv: &CudaBuf,
        rows: usize,
        d: &AttnDims,
        bias: Option<&CudaVector>,
        qk_norm: Option<(&CudaVector, &CudaVector, f32)>,
        rope: &CudaRope,
        kv: &mut CudaKv,
        layer: usize,
        qkv_out: [&mut CudaBuf; 3],
    ) {
        if d.head_dim > 256 || rope.head_dim != d.head_dim {
            let (norm, out) = (qk_norm, qkv_out);
            return qkv_to_cache_op_by_op(self, qkv, rows, d, bias, norm, rope, kv, layer, out);
        }
        let q = &mut *qkv_out[0];
        self.record(self.qkv_to_cache_launch(qkv, rows, d, bias, qk_norm, rope, kv, layer, q));
    }

    fn attention(&self, q: &CudaBuf, kv: &CudaKv, layer: usize, d: &AttnDims, out: &mut CudaBuf) {
        self.record(self.attention_into(q, kv, layer, d, out));
    }

    fn silu_mul(&self, gate_up: &CudaBuf, rows: usize, inter: usize, out: &mut CudaBuf) {
        self.record(self.silu_mul_into(gate_up, rows, inter, out));
    }

    fn linear_swiglu(
        &self,
        x: &CudaBuf,
        rows: usize,
        w: &CudaWeight,
        inter: usize,
        gate_up: &mut CudaBuf,
        act: &mut CudaBuf,
    ) {
        self.record(self.linear_swiglu_into(x, rows, w, inter, gate_up, act));
    }

    fn moe(
        &self,
        x: &CudaBuf,
        rows: usize,
        router_logits: &CudaBuf,
        correction_bias: Option<&CudaVector>,
        experts: &CudaExperts,
        d: &MoeDims,
        scratch: &mut CudaMoeScratch,
        out: &mut CudaBuf,
    ) -> Result<()> {
        self.moe_forward(
            x,
            rows,
            router_logits,
            correction_bias,
            experts,
            d,
            scratch,
            out,
        )
    }

    fn gather_rows(&self, x: &CudaBuf, width: usize, rows: &[usize], out: &mut CudaBuf) {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let r = (|| {
            let mut slot = self.rows.borrow_mut();
            super::step::upload(&self.stream, &mut slot, &idx)?;
            let args = [
                P(self.ptr(&x.mem)),
                P(self.ptr(slot.as_ref().unwrap())),
                P(self.ptr(&out.mem)),
                I(width as i32),
            ];
            self.launch("gather_rows", Self::cols_cfg(rows.len(), width), &args)
        })();
        self.record(r);
    }

    fn read(&self, x: &CudaBuf, out: &mut [f32]) -> Result<()> {
        self.take_error()?;
        let words = self.stream.clone_dtoh(&x.mem.slice(..out.len()))?;
        self.stream.synchronize().context("CUDA stream")?;
        for (o, w) in out.iter_mut().zip(words) {
            *o = self.dtype.to_f32(w);
        }
        Ok(())
    }

    /// Samples, and scores logprobs, on the device (`sample.rs`), copying back only token ids
    /// and the logprobs asked for; a step with speculative verification, or with logprobs wider
    /// than the device's limit, runs the exact host sampler.
    fn sample(
        &self,
        logits: &CudaBuf,
        vocab: usize,
        rows: &[LogitsRow<'_, '_>],
        host: &mut [f32],
    ) -> Result<Vec<RowOutput>> {
        if sample::all_on_device(rows) {
            self.take_error()?;
            return self.sample_on_device(logits, vocab, rows);
        }
        host_sample(self, logits, vocab, rows, host)
    }
}
