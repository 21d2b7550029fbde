//! The numpy statistics vLLM's report uses, with numpy's conventions: `np.std` is the
//! population standard deviation, `np.percentile` interpolates linearly between closest
//! ranks, and vLLM passes `values or 0`, so an empty list reports 0 everywhere.

/// `np.mean(xs or 0)`.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// `np.std(xs or 0)` (ddof = 0).
pub fn std(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let m = mean(xs);
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
    var.sqrt()
}

/// `np.median(xs or 0)`.
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// `np.percentile(xs or 0, p)` with the default "linear" method.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let virtual_index = (p / 100.0) * (n - 1) as f64;
    let lo = (virtual_index.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = virtual_index - lo as f64;
    lerp(sorted[lo], sorted[hi], t)
}

/// numpy's `_lerp`: interpolates from the nearer end so that t = 1 gives `b` exactly.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy() {
        let xs = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(mean(&xs), 2.5);
        assert_eq!(median(&xs), 2.5);
        // np.percentile([1,2,3,4], 99) == 3.97
        assert!((percentile(&xs, 99.0) - 3.97).abs() < 1e-12);
        assert!((std(&xs) - 1.118_033_988_749_895).abs() < 1e-12);
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert_eq!(median(&[7.0]), 7.0);
        assert_eq!(percentile(&xs, 100.0), 4.0);
    }
}
