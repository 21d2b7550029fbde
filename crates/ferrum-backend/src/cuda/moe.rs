//! Routed experts on the GPU (`kernels/moe_route.cu`, `kernels/moe.cu`): routing on the device, then the chosen experts'
//! SwiGLU, then the weighted combine in rank order. Up to [`MOE_GEMV_MAX_TOKENS`] tokens each
//! (token, expert) pair is a GEMV reading only its expert's rows, SiLU-and-mul and the combine
//! folded into the GEMVs; up to [`MOE_DEVICE_GROUPED_MAX_TOKENS`] (batched decode) the pairs are
//! grouped by expert on the device (counts, offsets, a scatter: no copy to the host, so CUDA
//! graphs capture it) and each chosen expert's rows are read once for its pairs, on the tensor
//! cores; above (prefill), the routing comes to the host once per layer and each expert with
//! tokens is one GEMM over its rows (block-FP8: the activations of every expert quantized in one
//! launch, then one cuBLASLt matmul per expert). Every expert's weights sit in two stacked
//! buffers, in the half dtype or block-FP8 (the GEMV and MMA kernels read the codes and scales
//! directly).

use anyhow::{Result, bail};
use cudarc::driver::{CudaSlice, LaunchConfig};

use super::backend::{Arg, CudaBackend, CudaBuf};
use super::fp8_gemm::FP8_TILE;
use super::weights::{CudaVector, CudaWeight, WeightData, concat_rows, same_format};

/// Tokens up to which the experts run as per-pair GEMVs.
pub(super) const MOE_GEMV_MAX_TOKENS: usize = 8;

/// Tokens up to which the pairs are grouped on the device by default; above, GEMMs per expert.
pub(super) const MOE_DEVICE_GROUPED_MAX_TOKENS: usize = 256;
use crate::backend::MoeDims;

/// The host-grouped path pads each expert's rows to a multiple of this (cuBLASLt's W8A8 GEMM
/// runs whole 16-row groups only).
const GROUP_ROWS: usize = 16;

/// Consecutive rows a warp of the per-pair expert GEMVs (`MOE_GEMV_ROWS` in moe.cu).
const MOE_GEMV_ROWS: usize = 2;

/// The columns `moe_expert_pipe` copies a chunk (its KC in moe.cu).
const PIPE_CHUNK: usize = 64;

/// Dynamic shared memory of `moe_expert_pipe` (`PipeSmem` in moe.cu): S stages (four for e4m3
/// weights, three for half) of the block's 64 raw weight rows, of 32 pairs' inputs and of the
/// rows' scales, and for e4m3 the rows scaled to T.
fn pipe_smem_bytes(fp8: bool) -> usize {
    let (stages, rows, pairs, t, kc) = (if fp8 { 4 } else { 3 }, 64, 32, 2, PIPE_CHUNK);
    let ld = kc + 8;
    let raw = stages * rows * if fp8 { kc } else { ld * t };
    let xs = stages * pairs * ld * t;
    let ws = if fp8 { rows * ld * t } else { 0 };
    raw + xs + ws + stages * rows * 4
}

/// Dynamic shared memory of `moe_expert_w8a8` (`W8Smem` in moe_w8a8.cu): four stages of the
/// block's 64 rows and of 32 pairs' codes, 128 columns each in rows of 144 bytes, and their
/// scales.
const W8A8_SMEM_BYTES: usize = 4 * ((64 + 32) * 144 + (64 + 32) * 4);

/// The most rows the host-grouped path can pad `pairs` pairs over `experts` experts to.
fn grouped_rows(pairs: usize, experts: usize) -> usize {
    pairs + (GROUP_ROWS - 1) * experts
}

/// One MoE block's routed experts: `[expert][2·inter][hidden]` (gate rows, then up rows) and
/// `[expert][hidden][inter]`, in the activations' half type or block-FP8; after them the block's
/// shared expert where it is folded in (`shared`: every token takes it, weight 1).
pub struct CudaExperts {
    gate_up: WeightData,
    down: WeightData,
    /// Experts in the stack, the shared one included.
    pub(super) n: usize,
    pub(super) shared: usize,
    hidden: usize,
    inter: usize,
}

/// Buffers for the largest step: ids and weights per (token, rank) pair, then each pair's gate/up
/// outputs, activations and weighted-down inputs (`y`: the device-grouped steps' outputs in pair
/// order, sized for those steps alone).
pub struct CudaMoeScratch {
    pub(super) ids: CudaSlice<u32>,
    pub(super) weights: CudaSlice<f32>,
    gate_up: CudaSlice<u16>,
    act: CudaSlice<u16>,
    y: CudaSlice<u16>,
    /// The grouped path: per sorted pair its token, per pair its sorted index, the tokens'
    /// inputs and the experts' outputs in sorted order.
    tok: CudaSlice<u32>,
    pos: CudaSlice<u32>,
    xs: CudaSlice<u16>,
    ys: CudaSlice<u16>,
    /// The on-device grouping: pairs per expert, their offsets (n + 1), a cursor per expert,
    /// and the pairs listed by expert.
    counts: CudaSlice<i32>,
    offsets: CudaSlice<i32>,
    cursor: CudaSlice<i32>,
    sorted: CudaSlice<u32>,
    /// `moe_expert_w8a8`'s inputs as e4m3 codes and their scales per 128 columns (sized for the
    /// device-grouped steps: the tokens' hidden states or the pairs' activations).
    q: CudaSlice<u8>,
    q_scales: CudaSlice<f32>,
    pub(super) max_tokens: usize,
    /// Tokens the router's launch has routed for the next `moe` call (`norm_router_fused`),
    /// and the count of its blocks done (`gemv_norm_route`: 0 between launches).
    pub(super) routed: Option<usize>,
    pub(super) route_done: CudaSlice<u32>,
}

impl CudaBackend {
    /// The routed experts stacked, and the shared expert after them where
    /// `tune.moe_shared_fold` is on and it has their shape and format (otherwise it comes back).
    #[allow(clippy::type_complexity)]
    pub(super) fn stack_experts(
        &self,
        mut experts: Vec<(CudaWeight, CudaWeight)>,
        shared: Option<(CudaWeight, CudaWeight)>,
    ) -> Result<(CudaExperts, Option<(CudaWeight, CudaWeight)>)> {
        let Some((g0, d0)) = experts.first() else {
            bail!("an MoE block with no experts");
        };
        let (hidden, inter) = (g0.k, d0.k);
        let like_routed = |(g, d): &(CudaWeight, CudaWeight)| {
            g.rows == 2 * inter
                && g.k == hidden
                && d.rows == hidden
                && d.k == inter
                && same_format(&g.data, &g0.data)
                && same_format(&d.data, &d0.data)
        };
        if !experts.iter().all(like_routed) {
            bail!(
                "experts of one MoE block must all be {}×{hidden} and {hidden}×{inter}",
                2 * inter
            );
        }
        let fold = self.tune.moe_shared_fold && shared.as_ref().is_some_and(like_routed);
        let fp8 = matches!(g0.data, WeightData::Fp8 { .. });
        let (shared, apart) = match shared {
            Some(w) if fold => {
                experts.push(w);
                (1, None)
            }
            other => (0, other),
        };
        let n = experts.len();
        if fp8 {
            // the grouped path dequantizes one expert's gate/up at a time
            self.reserve_dequant(2 * inter * hidden)?;
        }
        let (gu, dn): (Vec<CudaWeight>, Vec<CudaWeight>) = experts.into_iter().unzip();
        let experts = CudaExperts {
            gate_up: concat_rows(
                self,
                &gu.iter().map(|w| &w.data).collect::<Vec<_>>(),
                hidden,
            )?,
            down: concat_rows(self, &dn.iter().map(|w| &w.data).collect::<Vec<_>>(), inter)?,
            n,
            shared,
            hidden,
            inter,
        };
        Ok((experts, apart))
    }

    /// Shared experts a block's stack holds after its routed ones: the block's one shared
    /// expert where `tune.moe_shared_fold` is on (`stack_experts` folds it when its shape and
    /// format are the routed experts'; the scratch is sized for it either way).
    fn shared_slots(&self, d: &MoeDims) -> usize {
        usize::from(self.tune.moe_shared_fold && d.n_shared == 1)
    }

    pub(super) fn new_moe_scratch(&self, max_tokens: usize, d: &MoeDims) -> Result<CudaMoeScratch> {
        // a token's slots: its routed choices, then, in the per-pair steps, the shared expert
        // where it is folded in (larger steps run it apart: no slot)
        let shared = self.shared_slots(d);
        let (slots, experts) = (d.top_k + shared, d.n_experts + shared);
        let t = max_tokens.max(1);
        let pairs = (t * d.top_k).max(t.min(MOE_GEMV_MAX_TOKENS) * slots);
        let grouped = grouped_rows(pairs, experts);
        // each token's ranks start as distinct experts (j mod n_experts): the router overwrites
        // them before any use, but an ablation run without it (`FERRUM_CUDA_SKIP`) then times
        // the experts over as many distinct weights as a routed step reads, not one expert k
        // times out of L2
        let first: Vec<u32> = (0..pairs).map(|p| ((p % slots) % experts) as u32).collect();
        // the W8A8 experts' quantized inputs: the hidden states of a device-grouped step's
        // tokens (gate/up), or its pairs' activations (down)
        let w8 = max_tokens.min(self.tune.moe_device_grouped_max);
        let (q_rows_h, q_rows_i) = (w8, w8 * d.top_k);
        let q_bytes = (q_rows_h * d.hidden).max(q_rows_i * d.inter).max(1);
        let q_blocks = (q_rows_h * d.hidden.div_ceil(FP8_TILE))
            .max(q_rows_i * d.inter.div_ceil(FP8_TILE))
            .max(1);
        Ok(CudaMoeScratch {
            ids: self.stream.clone_htod(&first)?,
            weights: self.stream.alloc_zeros(pairs)?,
            gate_up: self.stream.alloc_zeros(grouped * 2 * d.inter)?,
            act: self.stream.alloc_zeros(grouped * d.inter)?,
            y: self.stream.alloc_zeros((w8 * d.top_k * d.hidden).max(1))?,
            tok: self.stream.alloc_zeros(grouped)?,
            pos: self.stream.alloc_zeros(pairs)?,
            xs: self.stream.alloc_zeros(grouped * d.hidden)?,
            ys: self.stream.alloc_zeros(grouped * d.hidden)?,
            counts: self.stream.alloc_zeros(experts)?,
            offsets: self.stream.alloc_zeros(experts + 1)?,
            cursor: self.stream.alloc_zeros(experts)?,
            sorted: self.stream.alloc_zeros(pairs)?,
            q: self.stream.alloc_zeros(q_bytes)?,
            q_scales: self.stream.alloc_zeros(q_blocks)?,
            max_tokens,
            routed: None,
            route_done: self.stream.alloc_zeros(1)?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn moe_forward(
        &self,
        x: &CudaBuf,
        rows: usize,
        router_logits: &CudaBuf,
        correction_bias: Option<&CudaVector>,
        ex: &CudaExperts,
        d: &MoeDims,
        s: &mut CudaMoeScratch,
        out: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let k = Self::route_slots(rows, ex, d, s)?;
        let (h, pairs, w) = (ex.hidden, rows * k, self.ptr(&s.weights));
        self.route(router_logits, correction_bias, d, rows, k, s)?;
        if rows <= MOE_GEMV_MAX_TOKENS {
            return self.experts_per_pair(x, ex, rows, k, s, out);
        }
        // the pairs' outputs, and where pair p's lies (none: at row p)
        let device_grouped = rows <= self.tune.moe_device_grouped_max && pairs * h <= s.y.len();
        let (y, pos) = if device_grouped {
            self.experts_device_grouped(x, ex, k, pairs, s)?;
            (self.ptr(&s.y), 0)
        } else {
            self.experts_grouped(x, ex, k, pairs, s)?;
            (self.ptr(&s.ys), self.ptr(&s.pos))
        };
        let args = [
            P(y),
            P(pos),
            P(w),
            P(self.ptr(&out.mem)),
            I(h as i32),
            I(k as i32),
        ];
        self.launch("moe_combine", Self::rows_cfg(rows, 256), &args)?;
        if ex.shared > 0 {
            self.shared_apart(x, rows, ex, s, out)?;
        }
        Ok(())
    }

    /// A folded shared expert (the stack's last) over a step past the per-pair path, as the
    /// model's own MLP runs it: gate/up over every token, SiLU-and-mul, down, added to `out`
    /// (the scratch's pair buffers are free again once the combine has read them).
    fn shared_apart(
        &self,
        x: &CudaBuf,
        rows: usize,
        ex: &CudaExperts,
        s: &CudaMoeScratch,
        out: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, L, P};
        let (h, inter, e) = (ex.hidden, ex.inter, ex.n - 1);
        let (gu, act, y) = (self.ptr(&s.gate_up), self.ptr(&s.act), self.ptr(&s.ys));
        self.gemm_rows(
            self.ptr(&x.mem),
            rows,
            &ex.gate_up,
            e * 2 * inter,
            2 * inter,
            h,
            gu,
        )?;
        let args = [P(gu), P(act), I(inter as i32)];
        self.launch("silu_mul", Self::cols_cfg(rows, inter), &args)?;
        self.gemm_rows(act, rows, &ex.down, e * h, h, inter, y)?;
        let args = [P(self.ptr(&out.mem)), P(y), L((rows * h) as i64)];
        self.launch("add", Self::flat_cfg(rows * h), &args)
    }

    /// Each (token, expert) pair's SwiGLU as GEMVs that read only its expert's rows: gate/up with
    /// SiLU-and-mul into `s.act`, then down with the weighted combine straight into `out` (two
    /// launches: at a handful of tokens each launch costs more than its math).
    fn experts_per_pair(
        &self,
        x: &CudaBuf,
        ex: &CudaExperts,
        rows: usize,
        k: usize,
        s: &mut CudaMoeScratch,
        out: &mut CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let (ids, act) = (self.ptr(&s.ids), self.ptr(&s.act));
        let gate_up = ExpertGemv {
            x: self.ptr(&x.mem),
            x_div: k,
            rows: ex.inter,
            k: ex.hidden,
        };
        // four row groups a block, gate and up of each on two warps
        let cfg = LaunchConfig {
            grid_dim: (
                (rows * k) as u32,
                ex.inter.div_ceil(4 * MOE_GEMV_ROWS) as u32,
                1,
            ),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let kernels = ("moe_gemv_swiglu", "moe_gemv_swiglu_fp8");
        self.expert_launch(kernels, &ex.gate_up, &gate_up, &[P(ids), P(act)], cfg)?;
        let down = ExpertGemv {
            x: act,
            x_div: 1,
            rows: ex.hidden,
            k: ex.inter,
        };
        let tail = [
            P(ids),
            P(self.ptr(&s.weights)),
            I(k as i32),
            P(self.ptr(&out.mem)),
        ];
        // a block per MOE_GEMV_ROWS output rows, a warp per expert of the token (k <= 32)
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, ex.hidden.div_ceil(MOE_GEMV_ROWS) as u32, 1),
            block_dim: (32 * k as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let kernels = ("moe_gemv_combine", "moe_gemv_combine_fp8");
        self.expert_launch(kernels, &ex.down, &down, &tail, cfg)
    }

    /// The pairs grouped by expert on the device, then per chosen expert one pass over its rows
    /// for up to 32 of its pairs on the tensor cores (block-FP8: `moe_expert_w8a8`; else
    /// `moe_expert_pipe`, or `moe_expert_mma` for 64), into `s.y` in pair order.
    fn experts_device_grouped(
        &self,
        x: &CudaBuf,
        ex: &CudaExperts,
        k: usize,
        pairs: usize,
        s: &mut CudaMoeScratch,
    ) -> Result<()> {
        use Arg::{I, P};
        let n = ex.n;
        let ids = self.ptr(&s.ids);
        self.stream.memset_zeros(&mut s.counts)?;
        let per_pair = LaunchConfig {
            grid_dim: (pairs.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (counts, offsets, cursor, sorted) = (
            self.ptr(&s.counts),
            self.ptr(&s.offsets),
            self.ptr(&s.cursor),
            self.ptr(&s.sorted),
        );
        self.launch("moe_count", per_pair, &[P(ids), I(pairs as i32), P(counts)])?;
        let one = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = [P(counts), I(n as i32), P(offsets), P(cursor)];
        self.launch("moe_offsets", one, &args)?;
        let args = [P(ids), I(pairs as i32), P(cursor), P(sorted)];
        self.launch("moe_scatter", per_pair, &args)?;
        let q = (self.ptr(&s.q), s.q.len(), self.ptr(&s.q_scales));
        // one block of four warps per (expert, 64 output rows); blocks of experts no pair
        // chose return at once
        let proj =
            |data: &WeightData, x: u64, x_div: usize, rows_out: usize, k_in: usize, out: u64| {
                let group = (n, offsets, sorted);
                let x_rows = (x, pairs / x_div, x_div);
                if self.experts_w8a8(data, x_rows, rows_out, k_in, q, group, out)? {
                    return Ok(());
                }
                let cfg = LaunchConfig {
                    grid_dim: (n as u32, rows_out.div_ceil(64) as u32, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                };
                let w = ExpertGemv {
                    x,
                    x_div,
                    rows: rows_out,
                    k: k_in,
                };
                let tail = [P(offsets), P(sorted), P(out)];
                // the pipelined kernel takes rows of whole chunks (e4m3: scale blocks too)
                let fp8 = matches!(data, WeightData::Fp8 { .. });
                let pipe = self.tune.moe_pipe
                    && k_in.is_multiple_of(PIPE_CHUNK)
                    && match data {
                        WeightData::Fp8 { bk, .. } => bk.is_multiple_of(PIPE_CHUNK),
                        WeightData::Half(_) => true,
                    };
                let (kernels, smem) = if pipe {
                    (
                        ("moe_expert_pipe", "moe_expert_pipe_fp8"),
                        pipe_smem_bytes(fp8),
                    )
                } else {
                    (("moe_expert_mma", "moe_expert_mma_fp8"), 0)
                };
                let cfg = LaunchConfig {
                    shared_mem_bytes: smem as u32,
                    ..cfg
                };
                self.expert_launch(kernels, data, &w, &tail, cfg)
            };
        self.swiglu(ex, self.ptr(&x.mem), k, pairs, s, self.ptr(&s.y), proj)
    }

    /// One device-grouped expert projection in W8A8 (`moe_expert_w8a8`) where it applies
    /// (`tune.moe_w8a8`, block-FP8 weights with scale blocks of 128 and row lengths a multiple
    /// of 128, the inputs fitting the scratch `q`: codes, their bytes, scales): the inputs,
    /// `x.1` rows of which pair p reads row p / `x.2`, quantized per 128 columns, then the
    /// kernel. False where it does not apply. `group`: the experts, and the device grouping's
    /// offsets and sorted pairs.
    #[allow(clippy::too_many_arguments)]
    fn experts_w8a8(
        &self,
        data: &WeightData,
        x: (u64, usize, usize),
        rows_out: usize,
        k_in: usize,
        q: (u64, usize, u64),
        group: (usize, u64, u64),
        out: u64,
    ) -> Result<bool> {
        use Arg::{I, P};
        let WeightData::Fp8 {
            codes, scales, bk, ..
        } = data
        else {
            return Ok(false);
        };
        let (x, in_rows, x_div) = x;
        let (codes_q, q_bytes, scales_q) = q;
        if !self.tune.moe_w8a8
            || *bk != FP8_TILE
            || !k_in.is_multiple_of(FP8_TILE)
            || in_rows * k_in > q_bytes
        {
            return Ok(false);
        }
        let args = [
            P(x),
            P(codes_q),
            P(scales_q),
            I(in_rows as i32),
            I(in_rows as i32),
            I(k_in as i32),
        ];
        self.quant_launch("quant_fp8_rows", in_rows, k_in, &args)?;
        let (n_experts, offsets, sorted) = group;
        let cfg = LaunchConfig {
            grid_dim: (n_experts as u32, rows_out.div_ceil(64) as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: W8A8_SMEM_BYTES as u32,
        };
        let args = [
            P(codes_q),
            P(scales_q),
            I(in_rows as i32),
            I(x_div as i32),
            P(self.ptr(codes)),
            P(self.ptr(scales)),
            I(rows_out as i32),
            I(k_in as i32),
            P(offsets),
            P(sorted),
            P(out),
        ];
        self.launch("moe_expert_w8a8", cfg, &args)?;
        Ok(true)
    }

    /// The pairs grouped by expert on the host: the tokens' inputs in expert order, each
    /// expert's rows padded to whole 16-row groups (the W8A8 GEMM's unit), one GEMM per expert
    /// with pairs for gate/up and one for down (block-FP8 experts: their activations quantized in
    /// one launch for all, gate/up's read from the tokens' rows where they lie), the outputs
    /// left in expert order in `s.ys`, pair p's at row `s.pos[p]` (the combine reads them
    /// there). Experts no token chose cost nothing.
    fn experts_grouped(
        &self,
        x: &CudaBuf,
        ex: &CudaExperts,
        k: usize,
        pairs: usize,
        s: &mut CudaMoeScratch,
    ) -> Result<()> {
        use Arg::{I, P};
        let h = ex.hidden;
        let ids = self.stream.clone_dtoh(&s.ids.slice(..pairs))?;
        self.stream.synchronize()?;
        let mut count = vec![0usize; ex.n];
        for &e in &ids {
            if e as usize >= ex.n {
                bail!("moe: routing chose expert {e} of {}", ex.n);
            }
            count[e as usize] += 1;
        }
        // expert e's rows: start[e]..start[e] + count[e], then padding to start[e + 1]
        let mut start = vec![0usize; ex.n + 1];
        for e in 0..ex.n {
            start[e + 1] = start[e] + count[e].next_multiple_of(GROUP_ROWS);
        }
        let rows = start[ex.n];
        // stable within an expert: pairs keep their order; padding rows read token 0
        let mut next = start.clone();
        let (mut tok, mut pos) = (vec![0u32; rows], vec![0u32; pairs]);
        for (p, &e) in ids.iter().enumerate() {
            let j = next[e as usize];
            next[e as usize] += 1;
            tok[j] = (p / k) as u32;
            pos[p] = j as u32;
        }
        self.stream
            .memcpy_htod(&tok, &mut s.tok.slice_mut(..rows))?;
        self.stream
            .memcpy_htod(&pos, &mut s.pos.slice_mut(..pairs))?;
        let offsets: Vec<i32> = start.iter().map(|&o| o as i32).collect();
        self.stream
            .memcpy_htod(&offsets, &mut s.offsets.slice_mut(..ex.n + 1))?;
        let (xs, ys) = (self.ptr(&s.xs), self.ptr(&s.ys));
        let (x_in, tok) = (self.ptr(&x.mem), self.ptr(&s.tok));
        // the tokens' inputs of sorted rows first..first + n into the same rows of xs
        let gather = |first: usize, n: usize| {
            let args = [
                P(x_in),
                P(tok + (4 * first) as u64),
                P(xs + (2 * first * h) as u64),
                I(h as i32),
            ];
            self.launch("gather_rows", Self::cols_cfg(n, h), &args)
        };
        // a projection cuBLASLt takes in W8A8, its activations quantized in one launch
        let lt_takes = |data: &WeightData, rows_out: usize, k_in: usize| match data {
            WeightData::Fp8 {
                codes,
                tiles: Some(t),
                ..
            } if rows_out.is_multiple_of(FP8_TILE) && k_in.is_multiple_of(16) => self
                .fp8_gemm()
                .map(|lt| (lt, (self.ptr(codes), self.ptr(t)))),
            _ => None,
        };
        // there the gate/up quantization reads the tokens' rows of x through `tok` (no gathered
        // copy); other paths read xs
        let gate_up_direct = lt_takes(&ex.gate_up, 2 * ex.inter, h).is_some();
        if !gate_up_direct {
            gather(0, rows)?;
        }
        let padded_dev = self.ptr(&s.offsets);
        // the inputs are one row per sorted pair (and padding)
        let proj = |data: &WeightData, x: u64, _: usize, rows_out: usize, k_in: usize, out: u64| {
            let direct = x == xs && gate_up_direct;
            let mut each: Vec<usize> = (0..ex.n).collect();
            if let Some((lt, w)) = lt_takes(data, rows_out, k_in) {
                // the experts cuBLASLt had no algorithm for take the per-expert path below
                let padded = (&start[..], padded_dev);
                let cap = grouped_rows(s.max_tokens * k, ex.n);
                let input = if direct { (x_in, tok) } else { (x, 0) };
                each = self.expert_gemms_fp8(lt, input, padded, cap, w, rows_out, k_in, out)?;
            }
            let half = 2u64; // bytes per activation value
            for e in each {
                let (first, n) = (start[e], count[e]);
                if n > 0 {
                    if direct {
                        gather(first, n)?;
                    }
                    let (xe, oe) = (
                        x + half * (first * k_in) as u64,
                        out + half * (first * rows_out) as u64,
                    );
                    self.gemm_rows(xe, n, data, e * rows_out, rows_out, k_in, oe)?;
                }
            }
            Ok(())
        };
        self.swiglu(ex, xs, 1, rows, s, ys, proj)
    }

    /// The routed experts' SwiGLU over the step's pairs, whatever the path: `proj(weights,
    /// input, input rows per pair divisor, output rows, row length, output)` for gate/up into
    /// `s.gate_up`, SiLU-and-mul into `s.act`, `proj` for down into `out`.
    #[allow(clippy::too_many_arguments)]
    fn swiglu(
        &self,
        ex: &CudaExperts,
        x: u64,
        x_div: usize,
        pairs: usize,
        s: &CudaMoeScratch,
        out: u64,
        proj: impl Fn(&WeightData, u64, usize, usize, usize, u64) -> Result<()>,
    ) -> Result<()> {
        use Arg::{I, P};
        let (h, inter) = (ex.hidden, ex.inter);
        let (gu, act) = (self.ptr(&s.gate_up), self.ptr(&s.act));
        proj(&ex.gate_up, x, x_div, 2 * inter, h, gu)?;
        let args = [P(gu), P(act), I(inter as i32)];
        self.launch("silu_mul", Self::cols_cfg(pairs, inter), &args)?;
        proj(&ex.down, act, 1, h, inter, out)
    }

    /// Launches `kernels.0` (`kernels.1` for block-FP8 experts) with its arguments in the order
    /// every per-expert kernel (GEMV or MMA) takes them: the input and its row divisor, the
    /// expert stack (half weights, or e4m3 codes and per-row scales), rows and row length (and
    /// the scales' column block), then `tail`.
    fn expert_launch(
        &self,
        kernels: (&'static str, &'static str),
        data: &WeightData,
        g: &ExpertGemv,
        tail: &[Arg],
        cfg: LaunchConfig,
    ) -> Result<()> {
        use Arg::{I, P};
        let (rows, k) = (g.rows as i32, g.k as i32);
        let mut args = vec![P(g.x), I(g.x_div as i32)];
        let name = match data {
            WeightData::Half(m) => {
                args.extend([P(self.ptr(m)), I(rows), I(k)]);
                kernels.0
            }
            WeightData::Fp8 {
                codes, scales, bk, ..
            } => {
                args.extend([
                    P(self.ptr(codes)),
                    P(self.ptr(scales)),
                    I(rows),
                    I(k),
                    I(*bk as i32),
                ]);
                kernels.1
            }
        };
        args.extend_from_slice(tail);
        self.launch(name, cfg, &args)
    }
}

/// One expert-GEMV launch's shape: `out[p][r] = W[r] · x[p / x_div]`, `rows` rows of `k`.
struct ExpertGemv {
    x: u64,
    x_div: usize,
    rows: usize,
    k: usize,
}
