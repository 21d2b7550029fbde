//! Mixture of experts on the CPU: routing ([`route`]) and the routed experts ([`moe_experts`]),
//! mirroring Hugging Face transformers (5.x, `modeling_qwen3_moe.py`, `modeling_glm4_moe.py`,
//! `integrations/moe.py`) operation for operation in f32.
//!
//! Routing, per token (all f32):
//! - [`Router::Softmax`] (Qwen3-MoE's `Qwen3MoeTopKRouter`): `softmax(logits, dtype=float)`,
//!   `topk` over the probabilities, then if `norm_topk_prob` each weight divided by the sum of
//!   the top-k (no epsilon). The softmax is ATen's CPU kernel's shape: `m = max`,
//!   `e = exp(x - m)`, `s = Σ e`, `p = e · (1/s)` (a multiply by the reciprocal, not a divide).
//! - [`Router::SigmoidGroupLimited`] (GLM-4.5's `Glm4MoeTopkRouter`, DeepSeek-V3's noaux_tc):
//!   `scores = sigmoid(logits)`; `choice = scores + e_score_correction_bias`; a group's score is
//!   the sum of its two best `choice` values; the `topk_group` best groups stay; `topk` over the
//!   `choice` values of the experts in them; the weights are the *un-biased* `scores` of the
//!   chosen experts; if `norm_topk_prob` each is divided by `(Σ weights + 1e-20)`; then every
//!   weight (normalized or not) is multiplied by `routed_scaling_factor`.
//!
//! What torch leaves unspecified is fixed here: ties go to the lower index (torch.topk breaks
//! ties by its selection algorithm: CPU and CUDA pick differently, neither by index), the
//! chosen experts are listed best first (GLM's router asks `topk(sorted=False)`, whose order
//! is the algorithm's), NaN ranks above everything (as in torch.topk). Sums over the top-k
//! (the normalization and the combine) run in rank order from 0.0, which is what torch's CPU
//! reduction does for these shapes (checked on torch 2.11: `sum(-1)` over 8 values and `sum(1)`
//! of a `(T, 8, H)` tensor for H = 64 and 2048). The softmax's `Σ e` runs in expert order (ATen
//! sums in SIMD lanes, and its `exp` is SLEEF's), so probabilities can differ from torch's in
//! the last bit; the routes and weights match transformers' to that (tested against a fixture
//! it made).
//!
//! Experts (transformers' default `grouped_mm` experts implementation): per expert, the rows of
//! the tokens routed to it are gathered, `gate_up = x·Wᵀ`, `act = silu(gate) · up`,
//! `y = act·Downᵀ`, then `y · weight` (one f32 multiply); each token's output is
//! `0 + y₀w₀ + y₁w₁ + …` in rank order. Every step is per row (the matmul is batch-invariant), so
//! a token's output never depends on the other tokens of the batch.

use super::{Weight, matmul_t, silu_mul};
use rayon::prelude::*;

/// How router logits become (expert, weight) pairs: the backend layer's
/// [`Routing`](crate::backend::Routing) (one definition for every backend). See the module docs
/// for the exact math.
pub use crate::backend::Routing as Router;

/// Most expert groups a router may have (DeepSeek-V3 has 8).
const MAX_GROUPS: usize = 64;

/// torch.topk's order: NaN above everything, else `>`.
#[inline(always)]
fn above(a: f32, b: f32) -> bool {
    if a.is_nan() { !b.is_nan() } else { a > b }
}

/// Inserts `(id, v)` into a best-first list of `*len` entries (capacity `ids.len()`). An entry
/// equal to `v` stays ahead of it, so inserting in ascending id order puts lower ids first.
#[inline(always)]
fn insert_top(ids: &mut [u32], vals: &mut [f32], len: &mut usize, id: u32, v: f32) {
    let cap = ids.len();
    let mut pos = *len;
    while pos > 0 && above(v, vals[pos - 1]) {
        pos -= 1;
    }
    if pos >= cap {
        return;
    }
    let end = (*len).min(cap - 1);
    for i in (pos..end).rev() {
        ids[i + 1] = ids[i];
        vals[i + 1] = vals[i];
    }
    ids[pos] = id;
    vals[pos] = v;
    if *len < cap {
        *len += 1;
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Routes `t` tokens: `logits` is t × n_experts (the router's output, f32); writes each token's
/// `top_k` experts best first into `ids` and their weights into `weights` (both t × top_k).
/// `correction_bias` is GLM/DeepSeek's `e_score_correction_bias` (none for softmax routers;
/// `None` for a sigmoid router means zeros). Errors for sizes or a router configuration that
/// cannot work (the values come from a model's config); allocates nothing.
#[allow(clippy::too_many_arguments)]
pub fn route(
    logits: &[f32],
    t: usize,
    n_experts: usize,
    top_k: usize,
    router: &Router,
    correction_bias: Option<&[f32]>,
    ids: &mut [u32],
    weights: &mut [f32],
) -> Result<(), String> {
    if n_experts == 0 || n_experts > u32::MAX as usize {
        return Err(format!("moe routing: {n_experts} experts"));
    }
    if top_k == 0 || top_k > n_experts {
        return Err(format!(
            "moe routing: top_k = {top_k} with {n_experts} experts (need 1 ≤ top_k ≤ experts)"
        ));
    }
    if logits.len() != t * n_experts {
        return Err(format!(
            "moe routing: {} logits for {t} tokens × {n_experts} experts",
            logits.len()
        ));
    }
    if ids.len() != t * top_k || weights.len() != t * top_k {
        return Err(format!(
            "moe routing: ids/weights hold {}/{} entries, want {t} tokens × top_k {top_k}",
            ids.len(),
            weights.len()
        ));
    }
    let rows = logits
        .par_chunks(n_experts)
        .zip(ids.par_chunks_mut(top_k))
        .zip(weights.par_chunks_mut(top_k));
    match *router {
        Router::Softmax { norm_topk_prob } => {
            if correction_bias.is_some() {
                return Err("moe routing: a softmax router takes no correction bias".into());
            }
            rows.for_each(|((l, id), w)| route_softmax(l, norm_topk_prob, id, w));
        }
        Router::SigmoidGroupLimited {
            n_group,
            topk_group,
            norm_topk_prob,
            routed_scaling_factor,
        } => {
            if n_group == 0 || n_group > MAX_GROUPS || !n_experts.is_multiple_of(n_group) {
                return Err(format!(
                    "moe routing: n_group = {n_group} must divide the {n_experts} experts \
                     (and be at most {MAX_GROUPS})"
                ));
            }
            let per = n_experts / n_group;
            if n_group > 1 && per < 2 {
                return Err(format!(
                    "moe routing: {per} expert per group; a group's score is its best two"
                ));
            }
            if topk_group == 0 || topk_group > n_group {
                return Err(format!(
                    "moe routing: topk_group = {topk_group} with n_group = {n_group}"
                ));
            }
            if top_k > topk_group * per {
                return Err(format!(
                    "moe routing: top_k = {top_k} exceeds the {} experts of the {topk_group} \
                     chosen groups",
                    topk_group * per
                ));
            }
            if let Some(b) = correction_bias
                && b.len() != n_experts
            {
                return Err(format!(
                    "moe routing: correction bias has {} entries for {n_experts} experts",
                    b.len()
                ));
            }
            let cfg = GroupCfg {
                n_group,
                topk_group,
                norm_topk_prob,
                routed_scaling_factor,
            };
            rows.for_each(|((l, id), w)| route_sigmoid(l, correction_bias, &cfg, id, w));
        }
    }
    Ok(())
}

/// One token of [`Router::Softmax`].
fn route_softmax(l: &[f32], norm: bool, ids: &mut [u32], w: &mut [f32]) {
    // max propagates NaN (torch's `maximum` does), and then every probability is NaN
    let max = l
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if above(x, m) { x } else { m });
    let mut sum = 0f32;
    for &x in l {
        sum += (x - max).exp();
    }
    let inv = 1.0 / sum;
    let mut len = 0;
    for (e, &x) in l.iter().enumerate() {
        insert_top(ids, w, &mut len, e as u32, (x - max).exp() * inv);
    }
    if norm {
        let s = w.iter().fold(0f32, |a, &v| a + v);
        for v in w.iter_mut() {
            *v /= s;
        }
    }
}

struct GroupCfg {
    n_group: usize,
    topk_group: usize,
    norm_topk_prob: bool,
    routed_scaling_factor: f32,
}

/// One token of [`Router::SigmoidGroupLimited`].
fn route_sigmoid(l: &[f32], bias: Option<&[f32]>, cfg: &GroupCfg, ids: &mut [u32], w: &mut [f32]) {
    let choice = |e: usize| match bias {
        Some(b) => sigmoid(l[e]) + b[e],
        None => sigmoid(l[e]),
    };
    let per = l.len() / cfg.n_group;
    // chosen groups as a bit set; with one group there is nothing to limit
    let mut groups = u64::MAX;
    if cfg.n_group > 1 {
        let mut score = [0f32; MAX_GROUPS];
        for (g, s) in score.iter_mut().enumerate().take(cfg.n_group) {
            let (mut id2, mut v2, mut len) = ([0u32; 2], [0f32; 2], 0);
            for e in g * per..(g + 1) * per {
                insert_top(&mut id2, &mut v2, &mut len, e as u32, choice(e));
            }
            *s = v2[0] + v2[1];
        }
        groups = 0;
        for _ in 0..cfg.topk_group {
            let mut best = usize::MAX;
            for g in 0..cfg.n_group {
                if groups & (1 << g) == 0 && (best == usize::MAX || above(score[g], score[best])) {
                    best = g;
                }
            }
            groups |= 1 << best;
        }
    }
    let mut len = 0;
    for e in 0..l.len() {
        if groups & (1 << (e / per)) != 0 {
            insert_top(ids, w, &mut len, e as u32, choice(e));
        }
    }
    for (v, &e) in w.iter_mut().zip(ids.iter()) {
        *v = sigmoid(l[e as usize]);
    }
    if cfg.norm_topk_prob {
        let denom = w.iter().fold(0f32, |a, &v| a + v) + 1e-20;
        for v in w.iter_mut() {
            *v /= denom;
        }
    }
    for v in w.iter_mut() {
        *v *= cfg.routed_scaling_factor;
    }
}

/// One routed expert: SwiGLU with the gate and up projections fused.
pub struct Expert {
    /// 2·inter × hidden: the gate rows, then the up rows.
    pub gate_up: Weight,
    /// hidden × inter.
    pub down: Weight,
}

/// Buffers for [`moe_experts`], sized once for at most `max_tokens` tokens so a forward pass
/// allocates nothing.
pub struct MoeScratch {
    max_tokens: usize,
    top_k: usize,
    hidden: usize,
    inter: usize,
    /// (token, rank) pairs `p = token·top_k + rank`, sorted by expert, then p
    order: Vec<u32>,
    /// `slot[p]`: where pair p sits in `order` (and its row in `y`)
    slot: Vec<u32>,
    /// one expert's gathered input rows, max_tokens × hidden
    x: Vec<f32>,
    /// max_tokens × 2·inter
    gate_up: Vec<f32>,
    /// max_tokens × inter
    act: Vec<f32>,
    /// every pair's weighted expert output, in `order`'s order: max_tokens·top_k × hidden
    y: Vec<f32>,
}

impl MoeScratch {
    pub fn new(max_tokens: usize, top_k: usize, hidden: usize, inter: usize) -> MoeScratch {
        let pairs = max_tokens * top_k;
        assert!(
            pairs <= u32::MAX as usize,
            "moe scratch: {pairs} token-expert pairs"
        );
        assert!(
            max_tokens > 0 && top_k > 0 && hidden > 0 && inter > 0,
            "moe scratch: zero size ({max_tokens} tokens, top_k {top_k}, hidden {hidden}, \
             inter {inter})"
        );
        MoeScratch {
            max_tokens,
            top_k,
            hidden,
            inter,
            order: vec![0; pairs],
            slot: vec![0; pairs],
            x: vec![0.0; max_tokens * hidden],
            gate_up: vec![0.0; max_tokens * 2 * inter],
            act: vec![0.0; max_tokens * inter],
            y: vec![0.0; pairs * hidden],
        }
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        4 * (self.order.len()
            + self.slot.len()
            + self.x.len()
            + self.gate_up.len()
            + self.act.len()
            + self.y.len())
    }
}

/// The routed experts for `t` tokens (`x`: t × hidden; `ids` / `weights`: t × top_k, as
/// [`route`] writes them): `out[tok] = Σ_k weights[tok][k] · expert_{ids[tok][k]}(x[tok])`,
/// summed in rank order. Only experts that received tokens run. Allocates nothing for
/// `t ≤ scratch.max_tokens()` (the matmul's threads may). Panics on sizes that do not match or
/// an expert id out of range (a caller bug: [`route`] never writes one).
#[allow(clippy::too_many_arguments)]
pub fn moe_experts(
    x: &[f32],
    t: usize,
    hidden: usize,
    inter: usize,
    ids: &[u32],
    weights: &[f32],
    top_k: usize,
    experts: &[Expert],
    scratch: &mut MoeScratch,
    out: &mut [f32],
) {
    assert_eq!(
        (scratch.top_k, scratch.hidden, scratch.inter),
        (top_k, hidden, inter),
        "moe_experts: scratch was made for other sizes (top_k, hidden, inter)"
    );
    assert!(
        t <= scratch.max_tokens,
        "moe_experts: {t} tokens, scratch holds {}",
        scratch.max_tokens
    );
    assert_eq!(x.len(), t * hidden, "moe_experts: x is not t×hidden");
    assert_eq!(out.len(), t * hidden, "moe_experts: out is not t×hidden");
    assert_eq!(ids.len(), t * top_k, "moe_experts: ids is not t×top_k");
    assert_eq!(
        weights.len(),
        t * top_k,
        "moe_experts: weights is not t×top_k"
    );
    if t == 0 {
        return;
    }
    let pairs = t * top_k;
    let MoeScratch {
        max_tokens,
        order,
        slot,
        x: xg,
        gate_up,
        act,
        y,
        ..
    } = scratch;
    let max_rows = *max_tokens;
    let order = &mut order[..pairs];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u32;
    }
    // unique keys, so the (in-place, allocation-free) unstable sort has one result
    order.sort_unstable_by_key(|&p| ((ids[p as usize] as u64) << 32) | p as u64);
    for (i, &p) in order.iter().enumerate() {
        slot[p as usize] = i as u32;
    }

    let mut a = 0;
    while a < pairs {
        let e = ids[order[a] as usize] as usize;
        let mut b = a + 1;
        while b < pairs && ids[order[b] as usize] as usize == e {
            b += 1;
        }
        assert!(
            e < experts.len(),
            "moe_experts: expert id {e} with {} experts",
            experts.len()
        );
        let ex = &experts[e];
        assert!(
            ex.gate_up.k == hidden
                && ex.gate_up.rows() == 2 * inter
                && ex.down.k == inter
                && ex.down.rows() == hidden,
            "moe_experts: expert {e} is not gate_up 2·{inter}×{hidden}, down {hidden}×{inter}"
        );
        // a group holds at most t pairs unless a token lists one expert twice; then it runs in
        // pieces of the scratch's size (rows are independent, so the pieces change no bit)
        let mut c = a;
        while c < b {
            let rows = (b - c).min(max_rows);
            let chunk = &order[c..c + rows];
            for (dst, &p) in xg.chunks_exact_mut(hidden).zip(chunk) {
                let tok = p as usize / top_k;
                dst.copy_from_slice(&x[tok * hidden..(tok + 1) * hidden]);
            }
            let gu = &mut gate_up[..rows * 2 * inter];
            matmul_t(&xg[..rows * hidden], rows, &ex.gate_up, gu);
            silu_mul(gu, inter, &mut act[..rows * inter]);
            let yc = &mut y[c * hidden..(c + rows) * hidden];
            matmul_t(&act[..rows * inter], rows, &ex.down, yc);
            for (yr, &p) in yc.chunks_exact_mut(hidden).zip(chunk) {
                let w = weights[p as usize];
                for v in yr {
                    *v *= w;
                }
            }
            c += rows;
        }
        a = b;
    }

    let (slot, y) = (&*slot, &*y);
    super::par::for_each_row(out, hidden, 1, &|tok, o| {
        o.fill(0.0);
        for &s in &slot[tok * top_k..(tok + 1) * top_k] {
            let s = s as usize;
            for (o, &v) in o.iter_mut().zip(&y[s * hidden..(s + 1) * hidden]) {
                *o += v;
            }
        }
    });
}

#[cfg(test)]
mod tests;
