//! Routed experts on the GPU (`kernels/moe.cu`): routing on the device, then the chosen experts'
//! SwiGLU as GEMVs over each (token, expert) pair, reading only those experts' rows, and the
//! weighted combine in rank order. Every expert's weights sit in two stacked buffers, in the
//! half dtype or block-FP8 (`moe_gemv_fp8` reads the codes and scales directly).

use anyhow::{Result, bail};
use cudarc::driver::{CudaSlice, LaunchConfig};

use super::backend::{Arg, CudaBackend, CudaBuf};
use super::weights::{CudaVector, CudaWeight, WeightData, concat_rows};
use crate::backend::{MoeDims, Routing};

/// One MoE block's routed experts: `[expert][2·inter][hidden]` (gate rows, then up rows) and
/// `[expert][hidden][inter]`, in the activations' half type or block-FP8.
pub struct CudaExperts {
    gate_up: WeightData,
    down: WeightData,
    n: usize,
    hidden: usize,
    inter: usize,
}

/// Buffers for the largest step: ids and weights per (token, rank) pair, then each pair's gate/up
/// outputs, activations and weighted-down inputs.
pub struct CudaMoeScratch {
    ids: CudaSlice<u32>,
    weights: CudaSlice<f32>,
    gate_up: CudaSlice<u16>,
    act: CudaSlice<u16>,
    y: CudaSlice<u16>,
    max_tokens: usize,
}

impl CudaBackend {
    pub(super) fn stack_experts(
        &self,
        experts: Vec<(CudaWeight, CudaWeight)>,
    ) -> Result<CudaExperts> {
        let Some((g0, d0)) = experts.first() else {
            bail!("an MoE block with no experts");
        };
        let (hidden, inter) = (g0.k, d0.k);
        if experts
            .iter()
            .any(|(g, d)| g.rows != 2 * inter || g.k != hidden || d.rows != hidden || d.k != inter)
        {
            bail!(
                "experts of one MoE block must all be {}×{hidden} and {hidden}×{inter}",
                2 * inter
            );
        }
        let n = experts.len();
        let (gu, dn): (Vec<CudaWeight>, Vec<CudaWeight>) = experts.into_iter().unzip();
        Ok(CudaExperts {
            gate_up: concat_rows(self, &gu.iter().map(|w| &w.data).collect::<Vec<_>>())?,
            down: concat_rows(self, &dn.iter().map(|w| &w.data).collect::<Vec<_>>())?,
            n,
            hidden,
            inter,
        })
    }

    pub(super) fn new_moe_scratch(&self, max_tokens: usize, d: &MoeDims) -> Result<CudaMoeScratch> {
        let pairs = max_tokens.max(1) * d.top_k;
        Ok(CudaMoeScratch {
            ids: self.stream.alloc_zeros(pairs)?,
            weights: self.stream.alloc_zeros(pairs)?,
            gate_up: self.stream.alloc_zeros(pairs * 2 * d.inter)?,
            act: self.stream.alloc_zeros(pairs * d.inter)?,
            y: self.stream.alloc_zeros(pairs * d.hidden)?,
            max_tokens,
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
        use Arg::{F, I, P};
        if rows > s.max_tokens || d.top_k > 32 || d.n_experts != ex.n {
            bail!(
                "moe: {rows} tokens (scratch for {}), top_k {} (at most 32), {} experts configured, {} loaded",
                s.max_tokens,
                d.top_k,
                d.n_experts,
                ex.n
            );
        }
        let (k, h, inter) = (d.top_k, ex.hidden, ex.inter);
        let pairs = rows * k;
        let (ids, w) = (self.ptr(&s.ids), self.ptr(&s.weights));
        let per_thread = LaunchConfig {
            grid_dim: (rows.div_ceil(64) as u32, 1, 1),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        let logits = P(self.ptr(&router_logits.mem));
        match d.routing {
            Routing::Softmax { norm_topk_prob } => {
                let args = [
                    logits,
                    P(ids),
                    P(w),
                    I(rows as i32),
                    I(d.n_experts as i32),
                    I(k as i32),
                    I(norm_topk_prob as i32),
                ];
                self.launch("moe_route_softmax", per_thread, &args)?;
            }
            Routing::SigmoidGroupLimited {
                n_group,
                topk_group,
                norm_topk_prob,
                routed_scaling_factor,
            } => {
                if n_group == 0 || n_group > 64 || !d.n_experts.is_multiple_of(n_group) {
                    bail!(
                        "moe: n_group {n_group} must divide {} experts (at most 64 groups)",
                        d.n_experts
                    );
                }
                let args = [
                    logits,
                    P(correction_bias.map_or(0, |b| self.ptr(&b.mem))),
                    P(ids),
                    P(w),
                    I(rows as i32),
                    I(d.n_experts as i32),
                    I(k as i32),
                    I(n_group as i32),
                    I(topk_group as i32),
                    I(norm_topk_prob as i32),
                    F(routed_scaling_factor),
                ];
                self.launch("moe_route_sigmoid", per_thread, &args)?;
            }
        }
        // eight output rows (warps) per block
        let gemv = |rows_out: usize| LaunchConfig {
            grid_dim: (pairs as u32, rows_out.div_ceil(8) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (gu, act, y) = (self.ptr(&s.gate_up), self.ptr(&s.act), self.ptr(&s.y));
        // out[p][r] = expert(ids[p])[r] · x[p / x_div] for rows_out rows of k
        let expert_gemv =
            |data: &WeightData, x: u64, x_div: usize, rows_out: usize, k_in: usize, out: u64| {
                let (x_div, rows_out, k_in) = (x_div as i32, rows_out as i32, k_in as i32);
                match data {
                    WeightData::Half(m) => {
                        let args = [
                            P(x),
                            I(x_div),
                            P(self.ptr(m)),
                            I(rows_out),
                            I(k_in),
                            P(ids),
                            P(out),
                        ];
                        self.launch("moe_gemv", gemv(rows_out as usize), &args)
                    }
                    WeightData::Fp8 { codes, scales, bk } => {
                        let args = [
                            P(x),
                            I(x_div),
                            P(self.ptr(codes)),
                            P(self.ptr(scales)),
                            I(rows_out),
                            I(k_in),
                            I(*bk as i32),
                            P(ids),
                            P(out),
                        ];
                        self.launch("moe_gemv_fp8", gemv(rows_out as usize), &args)
                    }
                }
            };
        expert_gemv(&ex.gate_up, self.ptr(&x.mem), k, 2 * inter, h, gu)?;
        self.launch(
            "silu_mul",
            Self::rows_cfg(pairs, 256),
            &[P(gu), P(act), I(inter as i32)],
        )?;
        expert_gemv(&ex.down, act, 1, h, inter, y)?;
        let args = [P(y), P(w), P(self.ptr(&out.mem)), I(h as i32), I(k as i32)];
        self.launch("moe_combine", Self::rows_cfg(rows, 256), &args)
    }
}
