//! The MoE pieces of `cuda_ops`: random experts for both backends, and a MoE block's pre-norm
//! and router with the routing folded into the router's GEMV (`norm_router`), against the CPU's
//! norm, router, routing and experts.

use ferrum_backend::{Backend, CpuBackend, MoeDims, Routing};
use rand_chacha::ChaCha8Rng;

use super::{compare, read, step};
use crate::common::{Up, W, rand_vec, tensor};
use ferrum_backend::cuda::CudaBackend;

/// `n` experts' (gate, up, down) weights, random, in half or block-FP8.
pub fn expert_weights(
    rng: &mut ChaCha8Rng,
    n: usize,
    hidden: usize,
    inter: usize,
    fp8: bool,
) -> Vec<[W; 3]> {
    let w = |rng: &mut ChaCha8Rng, rows: usize, k: usize| match fp8 {
        true => W::fp8(rng, rows, k),
        false => W::Dense(rand_vec(rng, rows * k, 0.1)),
    };
    (0..n)
        .map(|_| {
            [
                w(rng, inter, hidden),
                w(rng, inter, hidden),
                w(rng, hidden, inter),
            ]
        })
        .collect()
}

/// The experts on `be`: each one's gate and up stacked, its down apart.
pub fn upload_experts<B: Up>(be: &B, gates: &[[W; 3]], d: &MoeDims) -> B::Experts {
    let (h, i) = (d.hidden, d.inter);
    let lin = |name: &str, r: usize, k: usize, w: &W| be.upload_linear(w.host(name, r, k)).unwrap();
    let experts = gates
        .iter()
        .map(|[g, u, dn]| {
            let gu = be
                .stack(vec![lin("gate", i, h, g), lin("up", i, h, u)])
                .unwrap();
            (gu, lin("down", h, i, dn))
        })
        .collect();
    be.experts(experts).unwrap()
}

/// One token through a MoE block's `norm_router` (x + y normed with `gw`, the router `wr`)
/// then `moe`, over `scratch`: the router's logits and the block's output.
#[allow(clippy::too_many_arguments)]
fn routed<B: Up>(
    be: &B,
    gates: &[[W; 3]],
    d: &MoeDims,
    scratch: &mut B::MoeScratch,
    x: &[f32],
    y: &[f32],
    gw: &[f32],
    wr: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (h, n) = (d.hidden, d.n_experts);
    let experts = upload_experts(be, gates, d);
    let router = be
        .upload_linear(W::Dense(wr.to_vec()).host("router", n, h))
        .unwrap();
    let g = be.upload_vector(tensor("norm", vec![h], gw)).unwrap();
    let (mut sum, mut normed) = (be.up(&vec![0.0; h]), be.up(&vec![0.0; h]));
    let (mut logits, mut out) = (be.up(&vec![0.0; n]), be.up(&vec![0.0; h]));
    let (xb, yb) = (be.up(x), be.up(y));
    be.norm_router(
        &xb,
        Some(&yb),
        &g,
        1e-6,
        1,
        &mut sum,
        &mut normed,
        &router,
        &mut logits,
        d,
        scratch,
    );
    be.moe(&normed, 1, &logits, None, &experts, d, scratch, &mut out)
        .unwrap();
    (read(be, &logits, n), read(be, &out, h))
}

pub fn router_ops(c: &mut CpuBackend, g: &mut CudaBackend, rng: &mut ChaCha8Rng) {
    // one token's top-k in the router GEMV's last block (FERRUM_CUDA_ROUTE_FOLD=1) and the
    // `moe` after it taking that choice: its logits against the CPU's, its output against the
    // GPU's separate launches (the same logits, so the same choice: a flip at a near-tie
    // between bf16 and f32 logits would make the CPU's output no oracle); 128 experts (four a
    // lane, Qwen3-30B-A3B's router) and 160 (eight a lane); a second step over the same
    // scratch, whose block counter the first left at zero
    // (the fold rides on the norm fused into the router's GEMV: the default, which the linear
    // ops' checks leave off)
    g.set_norm_gemv(true);
    for (hidden, inter, n_experts, top_k) in
        [(256usize, 64usize, 128usize, 8usize), (128, 32, 160, 6)]
    {
        let d = MoeDims {
            n_experts,
            top_k,
            hidden,
            inter,
            routing: Routing::Softmax {
                norm_topk_prob: true,
            },
        };
        let gates = expert_weights(rng, n_experts, hidden, inter, false);
        let (meta, _) = step(&[(1, 0)], rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let (mut cs, mut gs) = (c.moe_scratch(1, &d).unwrap(), g.moe_scratch(1, &d).unwrap());
        for round in 0..2 {
            let x = rand_vec(rng, hidden, 2.0);
            let y = rand_vec(rng, hidden, 2.0);
            let gw = rand_vec(rng, hidden, 1.5);
            let wr = rand_vec(rng, n_experts * hidden, 0.1);
            let (cpu_logits, _) = routed(c, &gates, &d, &mut cs, &x, &y, &gw, &wr);
            // the fused launch first: a choice it failed to write would leave the previous
            // step's ids in the scratch, not this one's
            g.set_route_fold(true);
            let (logits, out) = routed(g, &gates, &d, &mut gs, &x, &y, &gw, &wr);
            g.set_route_fold(false);
            let (ops_logits, ops) = routed(g, &gates, &d, &mut gs, &x, &y, &gw, &wr);
            let label = format!(
                "norm_router {n_experts} experts top {top_k}, routed in the router, step {round}"
            );
            compare(&format!("{label}: logits"), &cpu_logits, &logits, 2e-2);
            compare(
                &format!("{label}: logits vs ops"),
                &ops_logits,
                &logits,
                1e-6,
            );
            compare(&format!("{label}: moe vs ops"), &ops, &out, 1e-6);
        }
    }
    g.set_norm_gemv(false);
}
