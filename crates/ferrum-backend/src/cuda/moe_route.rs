//! MoE routing on the GPU (`kernels/moe_route.cu`): each token's top-k experts and their
//! weights from the router's logits, into the MoE scratch for the expert kernels of `moe.rs`.
//! At one token the router's GEMV (with its pre-norm) routes too, in the same launch.

use anyhow::{Result, bail};
use cudarc::driver::LaunchConfig;

use super::backend::{Arg, CudaBackend, CudaBuf};
use super::moe::{CudaExperts, CudaMoeScratch, MOE_GEMV_MAX_TOKENS};
use super::weights::{CudaVector, CudaWeight, WeightData};
use crate::backend::{MoeDims, MoeRouter, Routing};

/// The most experts the routers take: 32 lanes × `ROUTE_SLOTS` registers each (`moe_route.cu`).
const ROUTE_MAX_EXPERTS: usize = 32 * 16;

/// The routing kernel's threads a block, a block a token.
const ROUTE_THREADS: u32 = 128;

/// The routers `moe_route` takes (`ROUTE_SOFTMAX`, `ROUTE_SIGMOID` in moe_route.cu).
const ROUTE_SOFTMAX: i32 = 0;
const ROUTE_SIGMOID: i32 = 1;

impl CudaBackend {
    /// A token's slots in the scratch at `rows` rows: its top_k choices, then in the per-pair
    /// path the shared expert where it is folded in (larger steps run it apart,
    /// `shared_apart` in moe.rs: as one more expert that every token takes it made the
    /// device-grouped steps slower, GLM-4.5-Air's 24 layers at 64 sequences 28.37 ms a step
    /// against 26.27 on an H100). Fails where the routers or the scratch cannot take the step.
    pub(super) fn route_slots(
        rows: usize,
        ex: &CudaExperts,
        d: &MoeDims,
        s: &CudaMoeScratch,
    ) -> Result<usize> {
        let shared = ex.shared;
        let k = d.top_k
            + if rows <= MOE_GEMV_MAX_TOKENS {
                shared
            } else {
                0
            };
        if rows > s.max_tokens
            || rows * k > s.ids.len()
            || k > 32
            || d.n_experts + shared != ex.n
            || d.n_experts > ROUTE_MAX_EXPERTS
        {
            bail!(
                "moe: {rows} tokens (scratch for {} pairs), top_k {} + {shared} shared (at most 32), {} experts configured (at most {ROUTE_MAX_EXPERTS}), {} loaded",
                s.ids.len(),
                d.top_k,
                d.n_experts,
                ex.n
            );
        }
        Ok(k)
    }

    /// Routes `rows` tokens into `s.ids` / `s.weights`, `k` slots a token (`route_slots`),
    /// unless the router's launch already has (`norm_router_fused`).
    pub(super) fn route(
        &self,
        logits: &CudaBuf,
        correction_bias: Option<&CudaVector>,
        d: &MoeDims,
        rows: usize,
        k: usize,
        s: &mut CudaMoeScratch,
    ) -> Result<()> {
        use Arg::{I, P};
        if std::mem::take(&mut s.routed) == Some(rows) {
            return Ok(());
        }
        // a block per token
        let per_token = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (ROUTE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut args = self.route_args(logits, correction_bias, d)?;
        args.extend([
            I(rows as i32),
            I(k as i32),
            P(self.ptr(&s.ids)),
            P(self.ptr(&s.weights)),
        ]);
        self.launch("moe_route", per_token, &args)
    }

    /// Whether `norm_router_fused` takes this router: one token, a half weight that the fused
    /// norm GEMV takes, and `tune.route_fused`.
    pub fn router_fuses(&self, g: &CudaVector, rows: usize, w: &CudaWeight) -> bool {
        self.tune.route_fused
            && rows == 1
            && matches!(w.data, WeightData::Half(_))
            && self.norm_gemv_fits(g, rows, w)
    }

    /// One token's pre-norm, router and routing in one launch (`gemv_norm_route`): the logits
    /// as `norm_gemv` writes them, the routing as `route` would, which the block's next `moe`
    /// call then skips (`s.routed`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn norm_router_fused(
        &self,
        x: &CudaBuf,
        y: Option<&CudaBuf>,
        g: &CudaVector,
        eps: f32,
        sum: &CudaBuf,
        normed: &CudaBuf,
        r: &MoeRouter<'_, Self>,
        s: &mut CudaMoeScratch,
        logits: &CudaBuf,
    ) -> Result<()> {
        use Arg::{I, P};
        let w = r.weight;
        let WeightData::Half(m) = &w.data else {
            bail!("the fused router takes half weights");
        };
        let k = Self::route_slots(1, r.experts, r.dims, s)?;
        let split = self.gemv_split(w);
        let mut args = self.norm_args(x, y, g, eps, sum, normed).to_vec();
        args.extend([P(self.ptr(m)), I(w.k as i32), I(split as i32)]);
        args.extend(self.route_args(logits, r.correction_bias, r.dims)?);
        args.extend([
            I(k as i32),
            P(self.ptr(&s.ids)),
            P(self.ptr(&s.weights)),
            P(self.ptr(&s.route_done)),
        ]);
        let label = || format!("norm + router + routing 1×{} · {}×{}ᵀ", w.k, w.rows, w.k);
        let cfg = Self::norm_gemv_cfg(w, split);
        self.timed(label, || self.launch_now("gemv_norm_route", cfg, &args))?;
        s.routed = Some(1);
        Ok(())
    }

    /// The router's arguments as `moe_route` takes them (`RouteArgs` in moe_route.cu), first.
    fn route_args(
        &self,
        logits: &CudaBuf,
        correction_bias: Option<&CudaVector>,
        d: &MoeDims,
    ) -> Result<Vec<Arg>> {
        use Arg::{F, I, P};
        // router, groups, groups kept, renormalized, scaling
        let (kind, n_group, topk_group, norm, scaling) = match d.routing {
            Routing::Softmax { norm_topk_prob } => (ROUTE_SOFTMAX, 1, 1, norm_topk_prob, 1.0),
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
                (
                    ROUTE_SIGMOID,
                    n_group,
                    topk_group,
                    norm_topk_prob,
                    routed_scaling_factor,
                )
            }
        };
        let bias = match (kind, correction_bias) {
            (ROUTE_SIGMOID, Some(b)) => self.ptr(&b.mem),
            _ => 0,
        };
        Ok(vec![
            P(self.ptr(&logits.mem)),
            P(bias),
            I(d.n_experts as i32),
            I(d.top_k as i32),
            I(kind),
            I(n_group as i32),
            I(topk_group as i32),
            I(norm as i32),
            F(scaling),
            I(self.tune.route_topk as i32),
        ])
    }
}
