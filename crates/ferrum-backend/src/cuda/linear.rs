//! Linear layers, `out[rows][n] = x[rows][k] · w[n][k]ᵀ`. Half weights: one row through our
//! one-row GEMV (`FERRUM_CUDA_GEMV_ROW=0` for cuBLAS), more through cuBLAS GEMMs (our eight-row
//! GEMV with `FERRUM_CUDA_GEMV=1`; at 1.5 TB/s on an H200 it loses to cuBLAS's 3.8 and stays off).
//! Block-FP8 weights: our GEMV up to eight rows, which reads each e4m3 byte once; more rows
//! through the W8A8 GEMM on Hopper (`fp8_gemm.rs`), else dequantized into a scratch buffer for a
//! cuBLAS GEMM (compute-bound there, so reading the weight twice costs little). The scratch is
//! sized at load, by the largest FP8 weight, so a forward allocates nothing.

use anyhow::{Result, anyhow};
use cudarc::cublas::sys as blas;
use cudarc::driver::LaunchConfig;

use super::backend::{Arg, CudaBackend, CudaBuf};
use super::fp8_gemm::{FP8_TILE, tile_ld};
use super::weights::{CudaVector, CudaWeight, WeightData};

/// Rows up to which block-FP8 layers take the GEMV (`GEMV_MAX_ROWS` in `linear.cu`).
pub(super) const GEMV_MAX_ROWS: usize = 8;

/// The most dynamic shared memory `gemv_norm` takes without raising its limit: a norm of
/// k ≤ 24576 half values.
const STAGED_GEMV_MAX_SMEM: usize = 48 * 1024;

impl CudaBackend {
    /// Grows the FP8 dequantization scratch to `n` values (at load, before any forward).
    pub(super) fn reserve_dequant(&self, n: usize) -> Result<()> {
        let mut slot = self.dequant.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.len() < n) {
            *slot = Some(self.stream.alloc_zeros::<u16>(n.max(1))?);
        }
        Ok(())
    }

    /// The GEMV kernels' launch: eight warps a block, `split` of them a row.
    fn gemv_cfg(n: usize, split: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (n.div_ceil(8 / split) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// Warps a row for a GEMV over `w` (`split` in linear.cu): doubled, up to 8, while the
    /// rows' warps stay within 32 a multiprocessor (half of its warp slots) and each
    /// warp's share of a row stays whole scale blocks and at least one 16-byte load a lane.
    /// Qwen3-30B-A3B's o_proj (2048 rows) takes 2, its routers (128 rows) 8; layers of many
    /// rows, 1.
    pub(super) fn gemv_split(&self, w: &CudaWeight) -> usize {
        if !self.tune.gemv_split {
            return 1;
        }
        // values a 16-byte load, and the columns a share must be a multiple of
        let (per_load, unit) = match &w.data {
            WeightData::Fp8 { bk, .. } => (16, (*bk).max(16)),
            WeightData::Half(_) => (8, 8),
        };
        let mut split = 1;
        while split < 8 {
            let next = 2 * split;
            let share = w.k / next;
            if w.rows * next > 32 * self.sm_count
                || !w.k.is_multiple_of(next)
                || !share.is_multiple_of(unit)
                || share < 32 * per_load
            {
                break;
            }
            split = next;
        }
        split
    }

    /// The GEMV kernel that takes this layer at `rows` rows, or `None` for cuBLAS: the one
    /// dispatch rule (the profile's labels read it too).
    fn gemv_for(&self, w: &CudaWeight, rows: usize) -> Option<&'static str> {
        if rows > GEMV_MAX_ROWS {
            return None;
        }
        // one row: the kernels instantiated for one (fewer registers, more blocks resident)
        let half_ok = w.k.is_multiple_of(8);
        match &w.data {
            WeightData::Fp8 { .. } if rows == 1 => Some("gemv_fp8_row"),
            WeightData::Fp8 { .. } => Some("gemv_fp8"),
            WeightData::Half(_) if rows == 1 && self.tune.gemv_row && half_ok => {
                Some("gemv_half_row")
            }
            WeightData::Half(_) if self.tune.gemv && half_ok => Some("gemv_half"),
            WeightData::Half(_) => None,
        }
    }

    pub(super) fn linear_into(
        &self,
        x: &CudaBuf,
        rows: usize,
        w: &CudaWeight,
        out: &mut CudaBuf,
    ) -> Result<()> {
        let gemv = self.gemv_for(w, rows);
        let label = || {
            let kind = match (gemv, &w.data) {
                (Some(kernel), _) => kernel,
                (None, WeightData::Half(_)) => "cublas",
                (None, WeightData::Fp8 { .. }) => "fp8 gemm",
            };
            format!("linear {kind} {rows}×{} · {}×{}ᵀ", w.k, w.rows, w.k)
        };
        self.timed(label, || self.linear_now(x, rows, w, gemv, out))
    }

    fn linear_now(
        &self,
        x: &CudaBuf,
        rows: usize,
        w: &CudaWeight,
        gemv: Option<&'static str>,
        out: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let (xp, op) = (self.ptr(&x.mem), self.ptr(&out.mem));
        let Some(kernel) = gemv else {
            return self.gemm_rows(xp, rows, &w.data, 0, w.rows, w.k, op);
        };
        let dims = [I(rows as i32), I(w.rows as i32), I(w.k as i32)];
        let split = self.gemv_split(w);
        let args: Vec<Arg> = match &w.data {
            WeightData::Fp8 {
                codes, scales, bk, ..
            } => [P(xp), P(self.ptr(codes)), P(self.ptr(scales)), P(op)]
                .into_iter()
                .chain(dims)
                .chain([I(*bk as i32), I(split as i32)])
                .collect(),
            WeightData::Half(m) => [P(xp), P(self.ptr(m)), P(op)]
                .into_iter()
                .chain(dims)
                .chain([I(split as i32)])
                .collect(),
        };
        self.launch(kernel, Self::gemv_cfg(w.rows, split), &args)
    }

    /// `silu_mul`: `out = silu(gate) * up` over `rows` rows of `[gate | up]`.
    pub(super) fn silu_mul_into(
        &self,
        gate_up: &CudaBuf,
        rows: usize,
        inter: usize,
        out: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let args = [
            P(self.ptr(&gate_up.mem)),
            P(self.ptr(&out.mem)),
            I(inter as i32),
        ];
        self.launch("silu_mul", Self::cols_cfg(rows, inter), &args)
    }

    /// [`crate::Backend::linear_swiglu`]: at one row, where a one-row GEMV takes the weight and
    /// `FERRUM_CUDA_GEMV_SWIGLU=1`, one launch (`gemv_swiglu`: each block four gate rows and
    /// their up rows, `act` written directly); otherwise the linear layer, then `silu_mul`.
    pub(super) fn linear_swiglu_into(
        &self,
        x: &CudaBuf,
        rows: usize,
        w: &CudaWeight,
        inter: usize,
        gate_up: &mut CudaBuf,
        act: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let fused = self.tune.gemv_swiglu && rows == 1 && w.rows == 2 * inter;
        let kernel = match self.gemv_for(w, rows) {
            Some("gemv_fp8_row") if fused => "gemv_swiglu_fp8",
            Some("gemv_half_row") if fused => "gemv_swiglu_half",
            _ => {
                self.linear_into(x, rows, w, gate_up)?;
                return self.silu_mul_into(gate_up, rows, inter, act);
            }
        };
        let (xp, op) = (self.ptr(&x.mem), self.ptr(&act.mem));
        let args: Vec<Arg> = match &w.data {
            WeightData::Fp8 {
                codes, scales, bk, ..
            } => vec![
                P(xp),
                P(self.ptr(codes)),
                P(self.ptr(scales)),
                P(op),
                I(inter as i32),
                I(w.k as i32),
                I(*bk as i32),
            ],
            WeightData::Half(m) => {
                vec![P(xp), P(self.ptr(m)), P(op), I(inter as i32), I(w.k as i32)]
            }
        };
        let cfg = LaunchConfig {
            grid_dim: (inter.div_ceil(4) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let label = || format!("linear {kernel} 1×{} · {}×{}ᵀ", w.k, w.rows, w.k);
        self.timed(label, || self.launch_now(kernel, cfg, &args))
    }

    /// Whether [`crate::Backend::norm_linear`] takes one launch (`gemv_norm`): before half
    /// weights by default (`FERRUM_CUDA_NORM_GEMV=0` takes two launches), before block-FP8
    /// ones with `FERRUM_CUDA_NORM_GEMV=all` (see `Tunables::norm_gemv_fp8`); at one row, where
    /// a one-row GEMV takes the weight, the norm is as wide as its columns and fits the shared
    /// memory, and each 16-byte piece of weights stays within a scale block.
    pub(super) fn norm_gemv_fits(&self, g: &CudaVector, rows: usize, w: &CudaWeight) -> bool {
        let (on, pieces_fit) = match &w.data {
            WeightData::Fp8 { bk, .. } => (
                self.tune.norm_gemv_fp8,
                w.k.is_multiple_of(16) && bk.is_multiple_of(16),
            ),
            WeightData::Half(_) => (self.tune.norm_gemv, w.k.is_multiple_of(16)),
        };
        on && rows == 1
            && g.len == w.k
            && 2 * w.k <= STAGED_GEMV_MAX_SMEM
            && pieces_fit
            && matches!(
                self.gemv_for(w, rows),
                Some("gemv_fp8_row" | "gemv_half_row")
            )
    }

    /// `gemv_norm` (the prelude): each block computes the pre-norm into shared memory (k values
    /// of T) and runs the one-row GEMV over it, writing its slice of `sum` and `normed`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_gemv(
        &self,
        x: &CudaBuf,
        y: Option<&CudaBuf>,
        g: &CudaVector,
        eps: f32,
        sum: &mut CudaBuf,
        normed: &mut CudaBuf,
        w: &CudaWeight,
        out: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let split = self.gemv_split(w);
        let input = self.norm_args(x, y, g, eps, sum, normed);
        let (kernel, weight): (&str, Vec<Arg>) = match &w.data {
            WeightData::Fp8 {
                codes, scales, bk, ..
            } => (
                "gemv_norm_fp8",
                vec![P(self.ptr(codes)), P(self.ptr(scales)), I(*bk as i32)],
            ),
            WeightData::Half(m) => ("gemv_norm_half", vec![P(self.ptr(m))]),
        };
        let tail = [
            P(self.ptr(&out.mem)),
            I(w.rows as i32),
            I(w.k as i32),
            I(split as i32),
        ];
        let args: Vec<Arg> = input.into_iter().chain(weight).chain(tail).collect();
        let label = || format!("norm + linear {kernel} 1×{} · {}×{}ᵀ", w.k, w.rows, w.k);
        let cfg = Self::norm_gemv_cfg(w, split);
        self.timed(label, || self.launch_now(kernel, cfg, &args))
    }

    /// `gemv_norm`'s first arguments: the stream, the output to add, the norm's weight and
    /// epsilon, where the sum and the normed stream go, and whether the norm's weight loads
    /// before the wait for the kernel before (`tune.norm_early`).
    pub(super) fn norm_args(
        &self,
        x: &CudaBuf,
        y: Option<&CudaBuf>,
        g: &CudaVector,
        eps: f32,
        sum: &CudaBuf,
        normed: &CudaBuf,
    ) -> [Arg; 7] {
        use Arg::{F, I, P};
        [
            P(self.ptr(&x.mem)),
            P(y.map_or(0, |y| self.ptr(&y.mem))),
            P(self.ptr(&g.mem)),
            F(eps),
            P(self.ptr(&sum.mem)),
            P(self.ptr(&normed.mem)),
            I(self.tune.norm_early as i32),
        ]
    }

    /// `gemv_norm`'s launch over `w`: the GEMV's, with the normed row in shared memory.
    pub(super) fn norm_gemv_cfg(w: &CudaWeight, split: usize) -> LaunchConfig {
        LaunchConfig {
            shared_mem_bytes: 2 * w.k as u32,
            ..Self::gemv_cfg(w.rows, split)
        }
    }

    /// `out[rows][n] = x[rows][k] · W[first..first + n]ᵀ`, rows `first..first + n` of a stacked
    /// weight of row length `k` (one expert of a stack, or the whole layer), through cuBLAS;
    /// block-FP8 rows through the W8A8 GEMM where it takes them (`fp8_gemm.rs`), otherwise
    /// dequantized into the scratch first.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_rows(
        &self,
        x: u64,
        rows: usize,
        w: &WeightData,
        first: usize,
        n: usize,
        k: usize,
        out: u64,
    ) -> Result<()> {
        use Arg::{I, L, P};
        match w {
            WeightData::Half(m) => {
                self.gemm(x, rows, self.ptr(m) + (2 * first * k) as u64, n, k, out)
            }
            WeightData::Fp8 {
                codes,
                scales,
                bk,
                tiles,
            } => {
                let aligned =
                    first.is_multiple_of(FP8_TILE) && k.is_multiple_of(16) && n.is_multiple_of(16);
                // (tiles first: the W8A8 probe runs this path with none, inside `fp8_gemm()`)
                if let (Some(t), true) = (tiles, aligned)
                    && let Some(lt) = self.fp8_gemm()
                {
                    let codes = self.ptr(codes) + (first * k) as u64;
                    let t = self.ptr(t) + (4 * first / FP8_TILE * tile_ld(k)) as u64;
                    if self.gemm_fp8(lt, x, rows, codes, t, n, k, out)? {
                        return Ok(());
                    }
                }
                let scratch = self.dequant.borrow();
                let d = scratch
                    .as_ref()
                    .filter(|s| s.len() >= n * k)
                    .ok_or_else(|| anyhow!("no FP8 dequantization scratch for a {n}×{k} weight"))?;
                let dp = self.ptr(d);
                let sc = k.div_ceil(*bk);
                let args = [
                    P(self.ptr(codes) + (first * k) as u64),
                    P(self.ptr(scales) + (4 * first * sc) as u64),
                    P(dp),
                    L(n as i64),
                    I(k as i32),
                    I(*bk as i32),
                ];
                self.launch("dequant_fp8", Self::flat_cfg(n * k), &args)?;
                self.gemm(x, rows, dp, n, k, out)
            }
        }
    }

    /// cuBLAS: row-major `out[rows][n] = x[rows][k] · w[n][k]ᵀ` is column-major `outᵀ = w · xᵀ`
    /// with `w` read transposed (m = n, n = rows).
    fn gemm(&self, x: u64, rows: usize, w: u64, n: usize, k: usize, out: u64) -> Result<()> {
        self.timed(
            || format!("cublas {rows}×{k} · {n}×{k}ᵀ"),
            || self.gemm_now(x, rows, w, n, k, out),
        )
    }

    fn gemm_now(&self, x: u64, rows: usize, w: u64, n: usize, k: usize, out: u64) -> Result<()> {
        let (alpha, beta) = (1f32, 0f32);
        let dt = self.dtype.blas();
        // SAFETY: x, w and out are live device allocations of at least rows·k, n·k and rows·n
        // values of the backend's dtype, ordered by the one stream cuBLAS is bound to.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.blas.handle(),
                blas::cublasOperation_t::CUBLAS_OP_T,
                blas::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                rows as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                w as *const _,
                dt,
                k as i32,
                x as *const _,
                dt,
                k as i32,
                &beta as *const f32 as *const _,
                out as *mut _,
                dt,
                n as i32,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| anyhow!("cuBLAS GEMM {rows}×{k}×{n}: {e:?}"))
    }
}
