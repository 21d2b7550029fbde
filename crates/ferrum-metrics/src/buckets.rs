//! vLLM's default histogram bucket families (vllm/v1/metrics/buckets.py, 0.34.0).
//!
//! Dashboards compute quantiles from these exact `le` bounds, so they are part of the
//! compatibility surface: any change here must also change the committed fixture.

/// Request phase times (e2e, queue, inference, prefill, decode), seconds.
pub(crate) const REQUEST_LATENCY: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// Time to first token, seconds.
pub(crate) const TIME_TO_FIRST_TOKEN: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// Inter-token latency and per-request time per output token, seconds.
pub(crate) const INTER_TOKEN_LATENCY: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// Tokens per engine step.
pub(crate) const ITERATION_TOKENS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// The `n` sampling parameter.
pub(crate) const REQUEST_PARAMS_N: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0];

/// vLLM's `build_1_2_5_buckets(max)`: 1, 2, 5, 10, 20, 50, ... up to and including `max`.
/// Used for the per-request token-count histograms with `max = max_model_len`.
pub(crate) fn one_two_five(max: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut scale: u128 = 1;
    loop {
        for m in [1u128, 2, 5] {
            let v = m * scale;
            if v > max as u128 {
                return out;
            }
            out.push(v as f64);
        }
        scale *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::one_two_five;

    #[test]
    fn one_two_five_matches_vllm() {
        assert_eq!(
            one_two_five(100),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(
            one_two_five(8192),
            vec![
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0
            ]
        );
        assert_eq!(one_two_five(0), Vec::<f64>::new());
        assert_eq!(one_two_five(1), vec![1.0]);
    }
}
