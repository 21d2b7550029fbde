//! Block-FP8 linear layers at many rows, W8A8 on Hopper's FP8 tensor cores through cuBLASLt:
//! the activations are quantized per row and block of 128 columns (`quant_fp8_rows`), the weight
//! keeps its checkpoint's 128×128 scale tiles, and cuBLASLt applies both scales inside the GEMM
//! (`VEC128_32F` × `BLK128x128_32F`, cuBLAS 12.9 and later on sm_90). This is the scheme of vLLM's
//! and DeepGEMM's block-FP8 path; the weight is read once, as e4m3, where the dequantizing path
//! (`linear.rs`) writes and reads it again in bf16.
//!
//! A shape cuBLASLt has no algorithm for (or a weight whose rows do not fall in whole 128-row
//! tiles) takes the dequantizing path; `FERRUM_CUDA_FP8_GEMM=dequant` forces that path (the
//! benchmark's A/B).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;

use anyhow::{Result, anyhow};
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig};

use super::backend::{Arg, CudaBackend};
use super::step::grow;
use super::weights::{WeightData, pad_tiles, tiles_per_row};

/// cuBLASLt's workspace: what its FP8 kernels ask for at most, allocated once (a captured graph
/// holds its address).
const WORKSPACE_BYTES: usize = 32 << 20;

/// Scale tiles are 128×128; the activations' scale blocks are 128 columns.
pub(super) const FP8_TILE: usize = 128;

/// The weight's scale tiles as cuBLASLt reads them: `[ceil(rows / 128)][ld]`, `ld` the column
/// blocks rounded up to a multiple of four (16-byte rows).
pub(super) fn tile_ld(k: usize) -> usize {
    k.div_ceil(FP8_TILE).next_multiple_of(4)
}

/// One GEMM shape's descriptors and the algorithm cuBLASLt chose for it.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    algo: sys::cublasLtMatmulAlgo_t,
}

/// The cuBLASLt handle, its workspace, the plans by shape (`None`: no algorithm, take the
/// dequantizing path) and the quantized activations.
pub(super) struct Fp8Gemm {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    plans: RefCell<HashMap<(usize, usize, usize), Option<Plan>>>,
    codes: RefCell<Option<CudaSlice<u8>>>,
    scales: RefCell<Option<CudaSlice<f32>>>,
    /// The output of a GEMM padded to whole 16-row groups.
    out: RefCell<Option<CudaSlice<u16>>>,
}

impl Fp8Gemm {
    pub(super) fn new(stream: &std::sync::Arc<CudaStream>) -> Result<Fp8Gemm> {
        let handle =
            lt::create_handle().map_err(|e| anyhow!("creating the cuBLASLt handle: {e:?}"))?;
        Ok(Fp8Gemm {
            handle,
            workspace: stream.alloc_zeros::<u8>(WORKSPACE_BYTES)?,
            plans: RefCell::new(HashMap::new()),
            codes: RefCell::new(None),
            scales: RefCell::new(None),
            out: RefCell::new(None),
        })
    }
}

impl Fp8Gemm {
    /// The quantized activations' scratch, grown to `codes` bytes and `scales` floats: their
    /// device addresses.
    fn quant_scratch(
        &self,
        stream: &std::sync::Arc<CudaStream>,
        codes: usize,
        scales: usize,
    ) -> Result<(u64, u64)> {
        let (mut q, mut s) = (self.codes.borrow_mut(), self.scales.borrow_mut());
        grow(stream, &mut q, codes)?;
        grow(stream, &mut s, scales)?;
        let (q, s) = (q.as_ref().unwrap(), s.as_ref().unwrap());
        Ok((q.device_ptr(stream).0, s.device_ptr(stream).0))
    }
}

impl Drop for Fp8Gemm {
    fn drop(&mut self) {
        // SAFETY: the descriptors and the handle are this struct's, each destroyed once, the
        // handle last; cuBLASLt reads a descriptor when a call is enqueued, so work still queued
        // on the stream does not use them.
        unsafe {
            for plan in self.plans.get_mut().drain().filter_map(|(_, p)| p) {
                for l in plan.layouts {
                    let _ = lt::destroy_matrix_layout(l);
                }
                let _ = lt::destroy_matmul_desc(plan.desc);
            }
            let _ = lt::destroy_handle(self.handle);
        }
    }
}

fn check(r: Result<(), cudarc::cublaslt::result::CublasError>, what: &str) -> Result<()> {
    r.map_err(|e| anyhow!("cuBLASLt {what}: {e:?}"))
}

impl CudaBackend {
    /// `out[rows][n] = x[rows][k] · W[n][k]ᵀ` in W8A8, `codes`/`tiles` pointing at the first of the
    /// weight's `n` rows and at its scale tiles. `Ok(false)`: cuBLASLt has no algorithm for this
    /// shape and `out` is untouched.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_fp8(
        &self,
        lt: &Fp8Gemm,
        x: u64,
        rows: usize,
        codes: u64,
        tiles: u64,
        n: usize,
        k: usize,
        out: u64,
    ) -> Result<bool> {
        // cuBLASLt has FP8 algorithms for whole 16-row groups only (on an H100, 1184 or 1952
        // rows ran, 1187 fell back): the GEMM runs over `padded` rows, the rows past `rows`
        // quantized from nothing (their codes and scales are whatever the scratch holds) and their
        // outputs left in a scratch buffer, of which the first `rows` are copied out
        let padded = rows.next_multiple_of(16);
        let groups = k.div_ceil(FP8_TILE);
        let (qp, sp) = lt.quant_scratch(&self.stream, padded * k, padded * groups)?;
        if !self.has_plan(lt, padded, n, k, (tiles, sp))? {
            return Ok(false);
        }
        // grown even when unused, so that the largest step (the profiling forward, before any
        // graph capture) settles its address: a graph captured at a smaller batch must not hold
        // a buffer a later size regrows
        let mut d_out = lt.out.borrow_mut();
        grow(&self.stream, &mut d_out, padded * n)?;
        let d = if padded == rows {
            out
        } else {
            self.ptr(d_out.as_ref().unwrap())
        };
        use Arg::{I, P};
        let args = [
            P(x),
            P(qp),
            P(sp),
            I(rows as i32),
            I(padded as i32),
            I(k as i32),
        ];
        self.quant_launch("quant_fp8_rows", rows, k, &args)?;
        self.matmul_fp8(lt, (qp, sp), padded, (codes, tiles), n, k, d)?;
        if padded != rows {
            // SAFETY: `out` holds rows × n half values (the caller's buffer) and `d` padded × n;
            // both belong to this stream
            unsafe {
                cudarc::driver::result::memcpy_dtod_async(
                    out,
                    d,
                    2 * rows * n,
                    self.stream.cu_stream(),
                )
            }
            .map_err(|e| anyhow!("copying the padded FP8 GEMM's rows: {e:?}"))?;
        }
        Ok(true)
    }

    /// A stack of experts' W8A8 GEMMs over rows grouped by expert: expert e's rows are
    /// `padded[e]..padded[e + 1]` of the input and of `out` (input row r is `x`'s row `src[r]`,
    /// or row r where `src` is 0; whole 16-row groups; `padded_dev` holds
    /// the same n + 1 offsets on the device), its weight rows `e·n..(e + 1)·n` of the stack. The
    /// activations are quantized for all experts in one launch, each expert's scales a block of
    /// their own, then each expert with rows is one cuBLASLt matmul writing its output rows in
    /// place (a prefill's layer was three launches per expert: quantize, matmul, copy). Returns
    /// the experts with rows that cuBLASLt has no algorithm for; their output rows are untouched.
    /// The scratch grows to `capacity` rows at once (the most any step's routing can pad to), so
    /// that the profiling forward settles its address before decode graphs capture it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn expert_gemms_fp8(
        &self,
        lt: &Fp8Gemm,
        (x, src): (u64, u64),
        (padded, padded_dev): (&[usize], u64),
        capacity: usize,
        (codes, tiles): (u64, u64),
        n: usize,
        k: usize,
        out: u64,
    ) -> Result<Vec<usize>> {
        let experts = padded.len() - 1;
        let total = padded[experts];
        let groups = k.div_ceil(FP8_TILE);
        let rows = capacity.max(total);
        let (qp, sp) = lt.quant_scratch(&self.stream, rows * k, rows * groups)?;
        if total == 0 {
            return Ok(Vec::new());
        }
        // expert e's weight codes and tiles, its activations' codes and scales
        let weight = |e: usize| {
            (
                codes + (e * n * k) as u64,
                tiles + (4 * (e * n / FP8_TILE) * tile_ld(k)) as u64,
            )
        };
        let acts = |first: usize| (qp + (first * k) as u64, sp + (4 * first * groups) as u64);
        let mut missing = Vec::new();
        for e in 0..experts {
            let (first, rows) = (padded[e], padded[e + 1] - padded[e]);
            if rows > 0 && !self.has_plan(lt, rows, n, k, (weight(e).1, acts(first).1))? {
                missing.push(e);
            }
        }
        use Arg::{I, P};
        let args = [
            P(x),
            P(src),
            P(qp),
            P(sp),
            I(total as i32),
            I(k as i32),
            P(padded_dev),
            I(experts as i32),
        ];
        self.quant_launch("quant_fp8_grouped", total, k, &args)?;
        for e in 0..experts {
            let (first, rows) = (padded[e], padded[e + 1] - padded[e]);
            if rows == 0 || missing.contains(&e) {
                continue;
            }
            let d = out + (2 * first * n) as u64;
            self.matmul_fp8(lt, acts(first), rows, weight(e), n, k, d)?;
        }
        Ok(missing)
    }

    /// `quant_fp8_rows` or `quant_fp8_grouped` (`kernel`) over `rows` rows of `k` columns: one
    /// warp per (row, block of 128 columns), eight to a block, or from
    /// `tune.quant_by_row_min_rows` rows one warp a row (their `_by_row` builds).
    pub(super) fn quant_launch(
        &self,
        kernel: &'static str,
        rows: usize,
        k: usize,
        args: &[Arg],
    ) -> Result<()> {
        let by_row = rows >= self.tune.quant_by_row_min_rows;
        let (name, warps) = match (by_row, kernel) {
            (false, _) => (kernel, rows * k.div_ceil(FP8_TILE)),
            (true, "quant_fp8_rows") => ("quant_fp8_rows_by_row", rows),
            (true, _) => ("quant_fp8_grouped_by_row", rows),
        };
        let cfg = LaunchConfig {
            grid_dim: (warps.div_ceil(8) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        self.launch(name, cfg, args)
    }

    /// Whether cuBLASLt has an algorithm for a `padded × k · n × kᵀ` W8A8 GEMM (asked once per
    /// shape, with live scale pointers; the plan keeps the answer).
    fn has_plan(
        &self,
        lt: &Fp8Gemm,
        padded: usize,
        n: usize,
        k: usize,
        scales: (u64, u64),
    ) -> Result<bool> {
        let key = (padded, n, k);
        if let Some(known) = lt.plans.borrow().get(&key) {
            return Ok(known.is_some());
        }
        let plan = self.plan_fp8(lt, padded, n, k, scales)?;
        let found = plan.is_some();
        lt.plans.borrow_mut().insert(key, plan);
        Ok(found)
    }

    /// `d[padded][n] = dequant(q) · dequant(W)ᵀ` on the plan of this shape (which must exist):
    /// `q` the activations' codes and scales, `w` the weight's codes and 128×128 scale tiles.
    #[allow(clippy::too_many_arguments)]
    fn matmul_fp8(
        &self,
        lt: &Fp8Gemm,
        (qp, sp): (u64, u64),
        padded: usize,
        (codes, tiles): (u64, u64),
        n: usize,
        k: usize,
        d: u64,
    ) -> Result<()> {
        let plans = lt.plans.borrow();
        let plan = plans[&(padded, n, k)]
            .as_ref()
            .expect("a plan found before");
        self.timed(
            || format!("cublaslt fp8 {padded}×{k} · {n}×{k}ᵀ"),
            || {
                let (alpha, beta) = (1f32, 0f32);
                // SAFETY: the scale pointers are live device buffers (the weight's tiles, the
                // activations' scales just written); the descriptor is this plan's alone.
                unsafe {
                    set_attr::<u64>(
                        plan.desc,
                        sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                        tiles,
                    )?;
                    set_attr::<u64>(
                        plan.desc,
                        sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                        sp,
                    )?;
                    let [a, b, dl] = plan.layouts;
                    check(
                        lt::matmul(
                            lt.handle,
                            plan.desc,
                            &alpha as *const f32 as *const c_void,
                            &beta as *const f32 as *const c_void,
                            codes as *const c_void,
                            a,
                            qp as *const c_void,
                            b,
                            d as *const c_void,
                            dl,
                            d as *mut c_void,
                            dl,
                            &plan.algo,
                            self.ptr(&lt.workspace) as *mut c_void,
                            WORKSPACE_BYTES,
                            self.stream.cu_stream() as *mut _,
                        ),
                        "FP8 matmul",
                    )
                }
            },
        )
    }

    /// Runs one small W8A8 GEMM beside the dequantizing path before any layer relies on it: a
    /// cuBLASLt that reads the scale layouts differently (they are new in cuBLAS 12.9) would
    /// give wrong numbers silently, so a disagreement turns the W8A8 path off, with an error
    /// that says so.
    pub(super) fn probe_fp8_gemm(&self, lt: &Fp8Gemm) -> Result<()> {
        let (rows, n, k) = (16, 256, 384);
        let (nb, kb) = (n / FP8_TILE, k / FP8_TILE);
        // a fixed pseudo-random problem: codes of magnitude up to 8, tile scales 2⁻⁴ to 2⁻¹
        let mut state = 0x9e37_79b9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let codes: Vec<u8> = (0..n * k)
            .map(|_| (next() % 0x50) as u8 | (next() as u8 & 0x80))
            .collect();
        let tile: Vec<f32> = (0..nb * kb)
            .map(|_| 1.0 / (2 << (next() % 4)) as f32)
            .collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let codes_d = self.stream.clone_htod(&codes)?;
        let (tiles_d, scales_d) = (
            self.stream.clone_htod(&pad_tiles(&tile, k))?,
            self.stream
                .clone_htod(&tiles_per_row(&tile, n, k, (FP8_TILE, FP8_TILE)))?,
        );
        let x_d = self.stream.clone_htod(&self.dtype.encode(&x))?;
        let outs = [
            self.stream.alloc_zeros::<u16>(rows * n)?,
            self.stream.alloc_zeros::<u16>(rows * n)?,
        ];
        let (xp, out_lt, out_ref) = (self.ptr(&x_d), self.ptr(&outs[0]), self.ptr(&outs[1]));
        if !self.gemm_fp8(
            lt,
            xp,
            rows,
            self.ptr(&codes_d),
            self.ptr(&tiles_d),
            n,
            k,
            out_lt,
        )? {
            anyhow::bail!(
                "cuBLASLt offers no block-scaled FP8 GEMM here (it needs cuBLAS 12.9 or later on sm_90)"
            );
        }
        // the same weight without tiles: the dequantizing path
        let w = WeightData::Fp8 {
            codes: codes_d,
            scales: scales_d,
            bk: FP8_TILE,
            tiles: None,
        };
        self.reserve_dequant(n * k)?;
        self.gemm_rows(xp, rows, &w, 0, n, k, out_ref)?;
        let (a, b) = (
            self.stream.clone_dtoh(&outs[0])?,
            self.stream.clone_dtoh(&outs[1])?,
        );
        self.stream.synchronize()?;
        let f = |w: &u16| self.dtype.to_f32(*w);
        let scale = b.iter().map(|w| f(w).abs()).fold(1e-6f32, f32::max);
        // a NaN counts as infinitely wrong
        let worst = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (f(p) - f(q)).abs())
            .map(|d| if d.is_nan() { f32::INFINITY } else { d })
            .fold(0f32, f32::max);
        if worst / scale > 0.1 {
            anyhow::bail!(
                "cuBLASLt's block-scaled FP8 GEMM disagrees with the dequantized GEMM (relative error {:.2e})",
                worst / scale
            );
        }
        tracing::debug!(
            "W8A8 probe: relative error {:.2e} against the dequantized GEMM",
            worst / scale
        );
        Ok(())
    }

    /// The descriptors of a `rows × k · n × kᵀ` W8A8 GEMM and cuBLASLt's algorithm for it:
    /// column-major, the weight `A` (k × n, transposed), the activations `B` (k × rows), the output
    /// `D` (n × rows) in the model's half type.
    fn plan_fp8(
        &self,
        lt: &Fp8Gemm,
        rows: usize,
        n: usize,
        k: usize,
        scales: (u64, u64),
    ) -> Result<Option<Plan>> {
        use sys::cublasLtMatmulDescAttributes_t as A;
        use sys::cublasLtMatmulMatrixScale_t as S;
        let desc = lt::create_matmul_desc(
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cudaDataType::CUDA_R_32F,
        );
        let desc = desc.map_err(|e| anyhow!("cuBLASLt matmul descriptor: {e:?}"))?;
        let fp8 = sys::cudaDataType::CUDA_R_8F_E4M3;
        let half = match self.dtype.blas() {
            cudarc::cublas::sys::cudaDataType::CUDA_R_16BF => sys::cudaDataType::CUDA_R_16BF,
            _ => sys::cudaDataType::CUDA_R_16F,
        };
        let layout = |t, r: usize, c: usize, ld: usize| {
            lt::create_matrix_layout(t, r as u64, c as u64, ld as i64)
                .map_err(|e| anyhow!("cuBLASLt layout: {e:?}"))
        };
        let layouts = [
            layout(fp8, k, n, k)?,
            layout(fp8, k, rows, k)?,
            layout(half, n, rows, n)?,
        ];
        let plan = Plan {
            desc,
            layouts,
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        // SAFETY: the descriptors are live (the plan owns them); the attribute values are the
        // sizes cuBLASLt documents for them.
        unsafe {
            set_attr::<u32>(
                desc,
                A::CUBLASLT_MATMUL_DESC_TRANSA,
                cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T as u32,
            )?;
            set_attr::<u32>(
                desc,
                A::CUBLASLT_MATMUL_DESC_TRANSB,
                cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N as u32,
            )?;
            set_attr::<u32>(
                desc,
                A::CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
                S::CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F as u32,
            )?;
            set_attr::<u32>(
                desc,
                A::CUBLASLT_MATMUL_DESC_B_SCALE_MODE,
                S::CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F as u32,
            )?;
            set_attr::<u64>(desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, scales.0)?;
            set_attr::<u64>(desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, scales.1)?;
            let pref =
                lt::create_matmul_pref().map_err(|e| anyhow!("cuBLASLt preference: {e:?}"))?;
            let bytes = WORKSPACE_BYTES as u64;
            let set = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &bytes as *const u64 as *const c_void,
                8,
            );
            let [a, b, d] = layouts;
            let found =
                set.and_then(|_| lt::get_matmul_algo_heuristic(lt.handle, desc, a, b, d, d, pref));
            let _ = lt::destroy_matmul_pref(pref);
            match found {
                Ok(h) => Ok(Some(Plan {
                    algo: h.algo,
                    ..plan
                })),
                Err(e) => {
                    tracing::debug!(
                        "cuBLASLt has no W8A8 FP8 algorithm for {rows}×{k} · {n}×{k}ᵀ ({e:?}): dequantizing"
                    );
                    for l in layouts {
                        let _ = lt::destroy_matrix_layout(l);
                    }
                    let _ = lt::destroy_matmul_desc(desc);
                    Ok(None)
                }
            }
        }
    }
}

/// Sets a descriptor attribute of type `T` (a u32 enum value, or a u64 device address).
///
/// # Safety
/// `desc` is a live descriptor and `T` the attribute's documented type.
unsafe fn set_attr<T: Copy>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    v: T,
) -> Result<()> {
    let size = std::mem::size_of::<T>();
    check(
        unsafe { lt::set_matmul_desc_attribute(desc, attr, &v as *const T as *const c_void, size) },
        "descriptor attribute",
    )
}
