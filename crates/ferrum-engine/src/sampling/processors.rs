//! The logits processors, each a small in-place function, applied by [`super::sample`] in
//! vLLM v1's order: logit_bias, min_tokens, penalties, then (random sampling only)
//! temperature, min_p, top_k, top_p. Masked entries become -inf.

/// Adds each bias to its token's logit (out-of-range ids are ignored; validation rejects them).
/// Everything outside `allowed` becomes impossible (vLLM's `allowed_token_ids`).
pub fn apply_allowed_token_ids(logits: &mut [f32], allowed: Option<&[u32]>) {
    let Some(allowed) = allowed else { return };
    let mut keep = vec![false; logits.len()];
    for &id in allowed {
        if let Some(k) = keep.get_mut(id as usize) {
            *k = true;
        }
    }
    for (l, k) in logits.iter_mut().zip(keep) {
        if !k {
            *l = f32::NEG_INFINITY;
        }
    }
}

pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(id, b) in bias {
        if let Some(l) = logits.get_mut(id as usize) {
            *l += b;
        }
    }
}

/// While fewer than `min_tokens` outputs exist, the tokens that would stop the sequence
/// (stop_token_ids, and the EOS ids unless `ignore_eos`) cannot be sampled.
pub fn apply_min_tokens(
    logits: &mut [f32],
    num_outputs: usize,
    min_tokens: usize,
    stop_token_ids: &[u32],
    eos_token_ids: &[u32],
    ignore_eos: bool,
) {
    let banned = min_tokens_banned(
        num_outputs,
        min_tokens,
        stop_token_ids,
        eos_token_ids,
        ignore_eos,
    );
    for id in banned {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// The ids [`apply_min_tokens`] forbids: none once `num_outputs >= min_tokens`.
pub fn min_tokens_banned<'a>(
    num_outputs: usize,
    min_tokens: usize,
    stop_token_ids: &'a [u32],
    eos_token_ids: &'a [u32],
    ignore_eos: bool,
) -> impl Iterator<Item = u32> + 'a {
    let pending = num_outputs < min_tokens;
    let eos: &[u32] = if ignore_eos { &[] } else { eos_token_ids };
    stop_token_ids
        .iter()
        .chain(eos)
        .copied()
        .filter(move |_| pending)
}

/// vLLM's `apply_penalties`: the repetition penalty applies once to every token seen in the
/// prompt or the output (positive logits divided, others multiplied); frequency subtracts
/// `penalty * count` and presence subtracts `penalty` for tokens seen in the output only.
pub fn apply_penalties(
    logits: &mut [f32],
    prompt: &[u32],
    output: &[u32],
    repetition_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
) {
    let vocab = logits.len();
    if repetition_penalty != 1.0 {
        let mut seen = vec![false; vocab];
        for &t in prompt.iter().chain(output) {
            if let Some(s) = seen.get_mut(t as usize) {
                *s = true;
            }
        }
        for (l, _) in logits.iter_mut().zip(&seen).filter(|(_, s)| **s) {
            *l = if *l > 0.0 {
                *l / repetition_penalty
            } else {
                *l * repetition_penalty
            };
        }
    }
    if frequency_penalty != 0.0 || presence_penalty != 0.0 {
        let mut sorted = output.to_vec();
        sorted.sort_unstable();
        for run in sorted.chunk_by(|a, b| a == b) {
            if let Some(l) = logits.get_mut(run[0] as usize) {
                *l -= frequency_penalty * run.len() as f32 + presence_penalty;
            }
        }
    }
}

/// Divides by the temperature (callers handle greedy before this).
pub fn apply_temperature(logits: &mut [f32], temperature: f32) {
    for l in logits.iter_mut() {
        *l /= temperature;
    }
}

/// Masks tokens whose probability is below `min_p` times the most likely token's:
/// `p_i < min_p * p_max`  <=>  `exp(l_i - l_max) < min_p`.
pub fn apply_min_p(logits: &mut [f32], min_p: f32) {
    if min_p <= 0.0 {
        return;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    for l in logits.iter_mut() {
        if ((*l - max) as f64).exp() < min_p as f64 {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Keeps the `k` largest logits; like vLLM, every token tied with the k-th value is kept.
pub fn apply_top_k(logits: &mut [f32], top_k: i32) {
    if !super::params::top_k_applies(top_k, logits.len()) {
        return;
    }
    let k = top_k as usize;
    let mut vals = logits.to_vec();
    let (_, kth, _) = vals.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = *kth;
    for l in logits.iter_mut() {
        if *l < kth {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Nucleus filtering exactly as vLLM's `apply_top_k_top_p`: sort ascending, take the
/// cumulative probability from the least likely up, and drop every token whose cumulative
/// sum is `<= 1 - top_p`; the most likely token always stays. Among equal logits the higher
/// id counts as less likely (dropped first), so results are deterministic.
pub fn apply_top_p(logits: &mut [f32], top_p: f32) {
    if top_p >= 1.0 {
        return;
    }
    let mut ids: Vec<u32> = (0..logits.len() as u32)
        .filter(|&i| logits[i as usize] > f32::NEG_INFINITY)
        .collect();
    if ids.len() <= 1 {
        return;
    }
    ids.sort_unstable_by(|&a, &b| {
        logits[a as usize]
            .total_cmp(&logits[b as usize])
            .then(b.cmp(&a))
    });
    let max = logits[*ids.last().unwrap() as usize];
    let weights: Vec<f64> = ids
        .iter()
        .map(|&i| ((logits[i as usize] - max) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let threshold = 1.0 - top_p as f64;
    let mut cum = 0.0;
    for (pos, (&id, w)) in ids.iter().zip(&weights).enumerate() {
        cum += w / total;
        if pos + 1 == ids.len() || cum > threshold {
            break;
        }
        logits[id as usize] = f32::NEG_INFINITY;
    }
}

/// Index of the largest logit; ties go to the lowest id; all -inf/NaN gives 0.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_val = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > best_val {
            best = i;
            best_val = l;
        }
    }
    best as u32
}
