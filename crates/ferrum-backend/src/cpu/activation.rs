//! SwiGLU's gate: `silu(gate) * up`, over rows laid out as `[gate | up]` (the fused projection).

use super::exp::exp;
use super::par::for_each_row;

/// `gate_up` is tokens × 2·inter (`[gate | up]` per row); writes tokens × inter into `out`.
pub fn silu_mul(gate_up: &[f32], inter: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    for_each_row(out, inter, 1, &|i, o| {
        let (g, u) = gate_up[i * 2 * inter..][..2 * inter].split_at(inter);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: AVX2 checked above.
            return unsafe { row_avx2(o, g, u) };
        }
        row(o, g, u)
    });
}

/// Wider registers for the same operations: bit-identical to [`row`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_avx2(o: &mut [f32], g: &[f32], u: &[f32]) {
    row(o, g, u)
}

#[inline(always)]
fn row(o: &mut [f32], g: &[f32], u: &[f32]) {
    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn avx2_and_portable_rows_agree_bitwise_and_match_the_formula() {
        let g: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let u: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 97) as f32 * 0.1 - 4.0)
            .collect();
        let mut a = vec![0f32; 1000];
        super::row(&mut a, &g, &u);
        for ((&a, &g), &u) in a.iter().zip(&g).zip(&u) {
            let want = g as f64 / (1.0 + (-g as f64).exp()) * u as f64;
            assert!(
                (a as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{a} {want}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut b = vec![0f32; 1000];
            unsafe { super::row_avx2(&mut b, &g, &u) };
            assert_eq!(a, b);
        }
    }
}
