//! The MoE pieces of `cuda_ops`: random experts for both backends, and the shared expert folded
//! into the routed ones.

use ferrum_backend::cuda::CudaBackend;
use ferrum_backend::{CpuBackend, MoeDims, MoeRouter, Routing, Weights};
use rand_chacha::ChaCha8Rng;

use super::{compare, read};
use crate::common::{Up, W, rand_vec, tensor};

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

/// One expert (or MLP) on `be`: its gate and up stacked, its down apart.
fn upload_expert<B: Up>(be: &B, [g, u, dn]: &[W; 3], d: &MoeDims) -> (B::Weight, B::Weight) {
    let (h, i) = (d.hidden, d.inter);
    let lin = |name: &str, r: usize, k: usize, w: &W| be.upload_linear(w.host(name, r, k)).unwrap();
    let gu = be
        .stack(vec![lin("gate", i, h, g), lin("up", i, h, u)])
        .unwrap();
    (gu, lin("down", h, i, dn))
}

/// The experts on `be`, and the shared expert where the backend did not take it among them.
#[allow(clippy::type_complexity)]
pub fn upload_experts_shared<B: Up>(
    be: &B,
    gates: &[[W; 3]],
    shared: Option<&[W; 3]>,
    d: &MoeDims,
) -> (B::Experts, Option<(B::Weight, B::Weight)>) {
    let experts = gates.iter().map(|e| upload_expert(be, e, d)).collect();
    let shared = shared.map(|e| upload_expert(be, e, d));
    be.experts(experts, shared).unwrap()
}

/// The experts on `be`.
pub fn upload_experts<B: Up>(be: &B, gates: &[[W; 3]], d: &MoeDims) -> B::Experts {
    upload_experts_shared(be, gates, None, d).0
}

/// Routed experts, then the shared expert where the backend left it apart: its SwiGLU MLP
/// added (as the model runs it). The output, and whether the backend took the shared expert.
#[allow(clippy::too_many_arguments)]
fn moe_with_shared<B: Up>(
    be: &mut B,
    gates: &[[W; 3]],
    shared: &[W; 3],
    bias: &[f32],
    d: &MoeDims,
    x: &[f32],
    logits: &[f32],
    rows: usize,
) -> (Vec<f32>, bool) {
    let (h, i) = (d.hidden, d.inter);
    let (experts, apart) = upload_experts_shared(be, gates, Some(shared), d);
    let bias = be
        .upload_vector(tensor("bias", vec![bias.len()], bias))
        .unwrap();
    let mut scratch = be.moe_scratch(300, d).unwrap();
    let (x, logits) = (be.up(x), be.up(logits));
    let mut out = be.up(&vec![0.0; rows * h]);
    let folded = apart.is_none();
    be.moe(
        &x,
        rows,
        &logits,
        Some(&bias),
        &experts,
        d,
        &mut scratch,
        &mut out,
    )
    .unwrap();
    if let Some((gate_up, down)) = apart {
        let mut gu = be.up(&vec![0.0; rows * 2 * i]);
        let mut act = be.up(&vec![0.0; rows * i]);
        let mut y = be.up(&vec![0.0; rows * h]);
        be.linear_swiglu(&x, rows, &gate_up, i, &mut gu, &mut act);
        be.linear(&act, rows, &down, &mut y);
        be.add(&mut out, &y, rows * h);
    }
    (read(be, &out, rows * h), folded)
}

/// GLM-4.5's shared expert stacked with the routed ones on the GPU (the default; up to 8 tokens
/// one slot more a token for the per-pair GEMVs, weight 1; above, run apart from the stack after
/// the device- or host-grouped experts) against the CPU's routed experts plus the shared MLP,
/// half and FP8 experts, sigmoid routing with its scaling factor (which the shared expert's
/// weight does not take).
pub fn shared_expert_fold(c: &mut CpuBackend, g: &mut CudaBackend, rng: &mut ChaCha8Rng) {
    let (hidden, inter, n_experts, top_k) = (256usize, 128usize, 16usize, 4usize);
    let d = MoeDims {
        n_experts,
        top_k,
        hidden,
        inter,
        n_shared: 1,
        routing: Routing::SigmoidGroupLimited {
            n_group: 4,
            topk_group: 2,
            norm_topk_prob: true,
            routed_scaling_factor: 2.5,
        },
    };
    let bias = rand_vec(rng, n_experts, 0.5);
    let default = g.moe_shared_fold();
    g.set_moe_shared_fold(true);
    for fp8 in [false, true] {
        let mut gates = expert_weights(rng, n_experts + 1, hidden, inter, fp8);
        let shared = gates.pop().unwrap();
        for rows in [1usize, 3, 9, 37, 300] {
            let x = rand_vec(rng, rows * hidden, 1.0);
            let logits = rand_vec(rng, rows * n_experts, 2.0);
            let (cpu, cpu_folded) =
                moe_with_shared(c, &gates, &shared, &bias, &d, &x, &logits, rows);
            let (gpu, folded) = moe_with_shared(g, &gates, &shared, &bias, &d, &x, &logits, rows);
            assert!(
                !cpu_folded && folded,
                "the GPU takes the shared expert, the CPU not"
            );
            let kind = if fp8 { "fp8" } else { "half" };
            let label = format!("moe + shared expert folded, {kind} experts, {rows} tokens");
            // past 8 tokens FP8 experts of whole 128-column blocks run in W8A8 (the
            // activations' e4m3 rounding: 4.5 % at 9 tokens on the emulator)
            compare(
                &label,
                &cpu,
                &gpu,
                if fp8 && rows > 8 { 8e-2 } else { 3e-2 },
            );
        }
    }
    g.set_moe_shared_fold(default);
}

/// A token's pre-norm, router and routing in one launch on the GPU (`norm_router`: at one token
/// the router's last block to finish routes) against the CPU's norm, router and routed experts,
/// and bit for bit against the GPU's router then `moe_route`. Both routers (the sigmoid one with
/// groups, its bias and the shared expert folded) over more experts than a warp has lanes;
/// three tokens in a row through one scratch, so that a launch whose count of finished blocks
/// did not come back to 0 would leave the next token unrouted.
pub fn router_fused(c: &mut CpuBackend, g: &mut CudaBackend, rng: &mut ChaCha8Rng) {
    let inter = 64;
    let sigmoid = Routing::SigmoidGroupLimited {
        n_group: 4,
        topk_group: 2,
        norm_topk_prob: true,
        routed_scaling_factor: 2.5,
    };
    let softmax = Routing::Softmax {
        norm_topk_prob: true,
    };
    g.set_norm_gemv(true);
    for (routing, n_experts, top_k, hidden, n_shared) in
        [(softmax, 128, 8, 512, 0), (sigmoid, 96, 6, 256, 1)]
    {
        let d = MoeDims {
            n_experts,
            top_k,
            hidden,
            inter,
            n_shared,
            routing,
        };
        let mut gates = expert_weights(rng, n_experts + n_shared, hidden, inter, false);
        let shared = (n_shared > 0).then(|| gates.pop().unwrap());
        let router = W::Dense(rand_vec(rng, n_experts * hidden, 0.05));
        let norm = rand_vec(rng, hidden, 1.5);
        let bias = rand_vec(rng, n_experts, 0.5);
        let tokens: Vec<[Vec<f32>; 2]> = (0..3)
            .map(|_| [rand_vec(rng, hidden, 1.0), rand_vec(rng, hidden, 1.0)])
            .collect();
        let case = RouterCase {
            d: &d,
            gates: &gates,
            shared: shared.as_ref(),
            router: &router,
            norm: &norm,
            bias: &bias,
            tokens: &tokens,
        };
        let cpu = routed_tokens(c, &case);
        g.set_route_fused(false);
        let apart = routed_tokens(g, &case);
        g.set_route_fused(true);
        let (gw, gv) = (
            g.upload_linear(router.host("router", n_experts, hidden))
                .unwrap(),
            g.upload_vector(tensor("norm", vec![hidden], &norm))
                .unwrap(),
        );
        assert!(g.router_fuses(&gv, 1, &gw), "the router fuses at one token");
        let fused = routed_tokens(g, &case);
        let name = format!("{n_experts} experts top {top_k}, {n_shared} shared");
        for (t, ((a, b), f)) in cpu.iter().zip(&apart).zip(&fused).enumerate() {
            assert!(
                b.iter().zip(f).all(|(b, f)| b.to_bits() == f.to_bits()),
                "norm + router + routing in one launch, {name}, token {t}: differs from the router then moe_route"
            );
            compare(
                &format!("norm + router + routing in one launch, {name}, token {t}"),
                a,
                f,
                3e-2,
            );
        }
    }
    g.set_norm_gemv(false);
}

/// The inputs of `router_fused`'s runs: the block, its experts (and shared expert), router and
/// norm weights, the sigmoid router's bias, and each token's stream and attention output.
struct RouterCase<'a> {
    d: &'a MoeDims,
    gates: &'a [[W; 3]],
    shared: Option<&'a [W; 3]>,
    router: &'a W,
    norm: &'a [f32],
    bias: &'a [f32],
    tokens: &'a [[Vec<f32>; 2]],
}

/// Each token's MoE output on `be`, the tokens one at a time as a decode step runs them:
/// `norm_router` over the stream `x` plus the attention's output `y`, then `moe` over its logits
/// (and the shared expert's MLP where the backend left it apart).
fn routed_tokens<B: Up>(be: &mut B, c: &RouterCase) -> Vec<Vec<f32>> {
    let RouterCase {
        d,
        gates,
        shared,
        router,
        norm,
        bias,
        tokens,
    } = *c;
    let (h, i, n) = (d.hidden, d.inter, d.n_experts);
    let (experts, apart) = upload_experts_shared(be, gates, shared, d);
    let weight = be.upload_linear(router.host("router", n, h)).unwrap();
    let bias = be.upload_vector(tensor("bias", vec![n], bias)).unwrap();
    let g = be.upload_vector(tensor("norm", vec![h], norm)).unwrap();
    let correction_bias = matches!(d.routing, Routing::SigmoidGroupLimited { .. }).then_some(&bias);
    let r = MoeRouter {
        weight: &weight,
        correction_bias,
        experts: &experts,
        dims: d,
    };
    let mut scratch = be.moe_scratch(1, d).unwrap();
    let (mut sum, mut normed) = (be.up(&vec![0.0; h]), be.up(&vec![0.0; h]));
    let (mut logits, mut out) = (be.up(&vec![0.0; n]), be.up(&vec![0.0; h]));
    tokens
        .iter()
        .map(|[x, y]| {
            let (x, y) = (be.up(x), be.up(y));
            be.norm_router(
                &x,
                Some(&y),
                &g,
                1e-6,
                1,
                &mut sum,
                &mut normed,
                &r,
                &mut scratch,
                &mut logits,
            );
            be.moe(
                &normed,
                1,
                &logits,
                correction_bias,
                &experts,
                d,
                &mut scratch,
                &mut out,
            )
            .unwrap();
            if let Some((gate_up, down)) = &apart {
                let mut gu = be.up(&vec![0.0; 2 * i]);
                let mut act = be.up(&vec![0.0; i]);
                let mut y = be.up(&vec![0.0; h]);
                be.linear_swiglu(&normed, 1, gate_up, i, &mut gu, &mut act);
                be.linear(&act, 1, down, &mut y);
                be.add(&mut out, &y, h);
            }
            read(be, &out, h)
        })
        .collect()
}
