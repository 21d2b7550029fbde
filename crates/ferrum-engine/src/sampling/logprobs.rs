//! Logprobs as vLLM v1 reports them by default (`logprobs_mode = raw_logprobs`): a log-softmax
//! of the raw logits, before penalties, temperature or any filtering.

use crate::executor::TokenLogprobs;

/// Numerically stable log-softmax in f64 accumulation. NaN logits count as -inf.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY || max.is_nan() {
        return vec![f32::NEG_INFINITY; logits.len()];
    }
    let sum: f64 = logits
        .iter()
        .filter(|x| !x.is_nan())
        .map(|&x| ((x - max) as f64).exp())
        .sum();
    let lse = max as f64 + sum.ln();
    logits
        .iter()
        .map(|&x| {
            if x.is_nan() {
                f32::NEG_INFINITY
            } else {
                (x as f64 - lse) as f32
            }
        })
        .collect()
}

/// Logprob, rank and top-`k` of `token` under `logits` (raw). For the runner's prompt logprobs.
pub fn token_logprobs(logits: &[f32], token: u32, k: usize) -> TokenLogprobs {
    token_logprobs_from(&log_softmax(logits), token, k)
}

/// Same, from already computed logprobs.
pub fn token_logprobs_from(logprobs: &[f32], token: u32, k: usize) -> TokenLogprobs {
    let logprob = logprobs
        .get(token as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let rank = 1 + logprobs.iter().filter(|&&l| l > logprob).count();
    TokenLogprobs {
        token_id: token,
        logprob,
        rank,
        top: top_k(logprobs, k),
    }
}

/// The `k` largest entries, largest first; equal values keep the lower id first.
fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    let by_value_then_id = |a: &u32, b: &u32| {
        values[*b as usize]
            .total_cmp(&values[*a as usize])
            .then(a.cmp(b))
    };
    let mut ids: Vec<u32> = (0..values.len() as u32).collect();
    // O(V) selection, then sort only the k winners.
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by_value_then_id);
        ids.truncate(k);
    }
    ids.sort_by(by_value_then_id);
    ids.into_iter().map(|i| (i, values[i as usize])).collect()
}
