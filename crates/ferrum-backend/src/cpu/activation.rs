//! SwiGLU's gate: `silu(gate) * up`, over rows laid out as `[gate | up]` (the fused projection).

use rayon::prelude::*;

/// `gate_up` is tokens × 2·inter (`[gate | up]` per row); writes tokens × inter into `out`.
pub fn silu_mul(gate_up: &[f32], inter: usize, out: &mut [f32]) {
    out.par_chunks_mut(inter)
        .zip(gate_up.par_chunks(2 * inter))
        .for_each(|(o, gu)| {
            let (g, u) = gu.split_at(inter);
            for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
}
