//! Arrival intervals: Gamma(burstiness, 1 / (rate * burstiness)) draws have mean 1 / rate
//! and variance 1 / (rate^2 * burstiness); seeded runs repeat.

use ferrum_bench::arrivals::{arrival_offsets, request_intervals};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    (m, xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
}

#[test]
fn mean_interval_is_one_over_rate() {
    let n = 10_000;
    for (rate, burstiness) in [(4.0, 1.0), (20.0, 0.5), (2.5, 3.0)] {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let xs = request_intervals(n, rate, burstiness, &mut rng);
        assert!(xs.iter().all(|&x| x > 0.0));
        let (m, v) = mean_var(&xs);
        // The sample mean's standard error is 1 / (rate * sqrt(burstiness * n)), at most
        // 1.4% of the mean here; 5% is > 3.5 standard errors.
        let want = 1.0 / rate;
        assert!(
            (m - want).abs() < 0.05 * want,
            "rate {rate} b {burstiness}: mean {m}"
        );
        // Burstiness shows in the spread: a coefficient of variation of 1 / sqrt(b).
        let want_var = 1.0 / (rate * rate * burstiness);
        assert!(
            (v - want_var).abs() < 0.15 * want_var,
            "rate {rate} b {burstiness}: var {v}"
        );
    }
}

#[test]
fn offsets_are_rescaled_and_seeded() {
    let mut a = ChaCha8Rng::seed_from_u64(7);
    let mut b = ChaCha8Rng::seed_from_u64(7);
    let x = arrival_offsets(1000, 10.0, 1.0, &mut a);
    assert_eq!(x, arrival_offsets(1000, 10.0, 1.0, &mut b));
    // vLLM rescales the running sum so the last request leaves at n / rate.
    assert!((x[999] - 100.0).abs() < 1e-9);
    assert!(x.windows(2).all(|w| w[0] <= w[1]));
    // Infinite rate: everything at once; infinite burstiness: a fixed 1 / rate spacing.
    let mut r = ChaCha8Rng::seed_from_u64(0);
    assert!(
        arrival_offsets(5, f64::INFINITY, 1.0, &mut r)
            .iter()
            .all(|&t| t == 0.0)
    );
    let even = arrival_offsets(4, 2.0, f64::INFINITY, &mut r);
    assert_eq!(even, vec![0.5, 1.0, 1.5, 2.0]);
}
