//! The MoE pieces of `cuda_ops`: random experts for both backends.

use ferrum_backend::MoeDims;
use rand_chacha::ChaCha8Rng;

use crate::common::{Up, W, rand_vec};

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
