//! The one dot product every reduction uses. Sixteen independent lane accumulators (vectorized by
//! LLVM into two AVX or four SSE registers), then a fixed pairwise tree: the summation order depends
//! only on the length, so every caller gets bit-identical results.

pub(crate) const LANES: usize = 16;

#[inline(always)]
pub(crate) fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Accumulates `a·b` into lanes (tail elements go to lane `i % LANES`, in order).
#[inline(always)]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> [f32; LANES] {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let full = a.len() / LANES * LANES;
    for (ca, cb) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    for i in full..a.len() {
        acc[i % LANES] += a[i] * b[i];
    }
    acc
}

#[inline(always)]
fn dot_inline(a: &[f32], b: &[f32]) -> f32 {
    reduce(dot_lanes(a, b))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_inline(a, b)
}

/// `Σ a[i]·b[i]` in the canonical order. AVX2 changes only the register width, not the
/// per-lane arithmetic (Rust never fuses mul+add on its own), so both paths agree bit for bit.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked above).
        return unsafe { dot_avx2(a, b) };
    }
    dot_inline(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_reference_and_is_order_fixed() {
        for n in [1usize, 7, 16, 17, 64, 100, 576, 1537] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 30.0)
                .collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let got = dot(&a, &b);
            assert!(
                (got as f64 - exact).abs() <= 1e-5 * (1.0 + exact.abs()),
                "n={n}"
            );
            assert_eq!(
                got.to_bits(),
                dot_inline(&a, &b).to_bits(),
                "avx2 and generic differ"
            );
        }
    }
}
