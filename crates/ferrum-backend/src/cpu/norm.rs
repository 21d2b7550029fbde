//! RMSNorm and the residual add.

use super::dot::{dot_lanes, reduce};
use super::par::for_each_row;

/// `out = x / sqrt(mean(x²) + eps) * weight` for one row.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let inv = inv_rms(x, eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(weight) {
        *o = v * inv * g;
    }
}

fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let mean_sq = reduce(dot_lanes(x, x)) / x.len() as f32;
    1.0 / (mean_sq + eps).sqrt()
}

/// [`rms_norm_rows`] in place (Qwen3's per-head q/k norm), same arithmetic.
pub fn rms_norm_rows_inplace(x: &mut [f32], weight: &[f32], eps: f32) {
    for_each_row(x, weight.len(), 16, &|_, r| {
        let inv = inv_rms(r, eps);
        for (v, &g) in r.iter_mut().zip(weight) {
            *v = *v * inv * g;
        }
    });
}

/// RMSNorm of every `weight.len()`-wide row of `x` (also used per head for QK-norm).
pub fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for_each_row(out, d, 16, &|i, o| {
        rms_norm(&x[i * d..][..d], weight, eps, o)
    });
}

pub fn add_inplace(acc: &mut [f32], x: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rms_norm_matches_formula() {
        let x = [1.0f32, -2.0, 3.0, 0.5];
        let w = [1.0f32, 0.5, 2.0, 1.0];
        let mut out = [0.0f32; 4];
        super::rms_norm(&x, &w, 1e-6, &mut out);
        let ms = (1.0 + 4.0 + 9.0 + 0.25) / 4.0f64;
        for i in 0..4 {
            let want = x[i] as f64 / (ms + 1e-6).sqrt() * w[i] as f64;
            assert!((out[i] as f64 - want).abs() < 1e-6);
        }
    }
}
