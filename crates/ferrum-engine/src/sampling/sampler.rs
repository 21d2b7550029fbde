//! The sampler: one row of logits plus the sequence's state in, one token (and its logprobs)
//! out. Pure apart from the unseeded thread RNG, so any runner can call it per row.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::logprobs::{log_softmax, token_logprobs_from};
use super::processors::{
    apply_allowed_token_ids, apply_logit_bias, apply_min_p, apply_min_tokens, apply_penalties,
    apply_temperature, apply_top_k, apply_top_p, argmax,
};
use crate::executor::{Sampled, StepSeq};

/// Samples the next token of `seq` from `logits` (the row for its last position; the slice
/// is used as scratch and left processed). Order as vLLM v1: raw logprobs, allowed_token_ids,
/// logit_bias,
/// min_tokens, penalties, then greedy argmax or temperature, min_p, top_k, top_p and a draw.
pub fn sample(logits: &mut [f32], seq: &StepSeq<'_>) -> Sampled {
    sample_masked(logits, seq, None)
}

/// Whether [`sample`] of this sequence is the argmax of its raw logits: greedy, and no processor
/// that could move the maximum (allowed ids, logit bias, an unmet `min_tokens`, penalties) nor
/// logprobs to report. A GPU backend then needs only the argmax on the device, not the row.
pub fn is_plain_argmax(seq: &StepSeq<'_>) -> bool {
    seq.params.is_greedy() && needs_only_filters(seq)
}

/// Whether this step's choice needs nothing but temperature, min-p, top-k, top-p and the draw
/// (no logprobs and no [`needs_processors`]): the device sampler's fast path, with the uniform
/// from [`draw_uniform`].
pub fn needs_only_filters(seq: &StepSeq<'_>) -> bool {
    seq.params.logprobs.is_none() && !needs_processors(seq)
}

/// Whether a processor that reads more than the row itself applies this step: allowed ids,
/// logit bias, a pending `min_tokens`, or a penalty (the steps of [`process`] between the raw
/// logprobs and temperature).
pub fn needs_processors(seq: &StepSeq<'_>) -> bool {
    let p = seq.params;
    p.allowed_token_ids.is_some()
        || !p.logit_bias.is_empty()
        || seq.num_output_tokens() < p.min_tokens
        || p.repetition_penalty != 1.0
        || p.frequency_penalty != 0.0
        || p.presence_penalty != 0.0
}

/// [`sample`] under a structured-output token mask (`bits`, see
/// [`super::constraint::ConstraintMatcher::fill_mask`]). As in vLLM v1, the grammar bitmask
/// is applied to the logits before the sampler sees them, so before the raw logprobs and every
/// other processor.
pub fn sample_masked(logits: &mut [f32], seq: &StepSeq<'_>, mask: Option<&[u32]>) -> Sampled {
    let raw_logprobs = process(logits, seq, mask);
    let p = seq.params;
    let id = if p.is_greedy() {
        argmax(logits)
    } else {
        draw(logits, draw_uniform(seq))
    };
    Sampled {
        id,
        logprobs: raw_logprobs.map(|(k, lp)| token_logprobs_from(&lp, id, k)),
    }
}

/// Every processor of [`sample_masked`] in its order, leaving `logits` ready for the final
/// choice (greedy: argmax; otherwise the filtered, temperature-scaled logits to draw from).
/// Returns the raw logprobs (with `k`) when the request asked for logprobs. Shared with the
/// speculative verifier ([`super::spec`]).
pub(crate) fn process(
    logits: &mut [f32],
    seq: &StepSeq<'_>,
    mask: Option<&[u32]>,
) -> Option<(usize, Vec<f32>)> {
    if let Some(bits) = mask {
        super::constraint::apply_token_mask(logits, bits);
    }
    let p = seq.params;
    let raw_logprobs = p.logprobs.map(|k| (k, log_softmax(logits)));

    let (prompt, output) = seq.tokens.split_at(seq.num_prompt_tokens);
    apply_allowed_token_ids(logits, p.allowed_token_ids.as_deref());
    apply_logit_bias(logits, &p.logit_bias);
    apply_min_tokens(
        logits,
        output.len(),
        p.min_tokens,
        &p.stop_token_ids,
        seq.eos_token_ids,
        p.ignore_eos,
    );
    apply_penalties(
        logits,
        prompt,
        output,
        p.repetition_penalty,
        p.frequency_penalty,
        p.presence_penalty,
    );

    if !p.is_greedy() {
        apply_temperature(logits, p.temperature);
        apply_min_p(logits, p.min_p);
        apply_top_k(logits, p.top_k);
        apply_top_p(logits, p.top_p);
    }
    raw_logprobs
}

/// The uniform in [0, 1) that this step's draw inverts: the seeded stream of a request with a
/// seed, else the thread's generator.
pub fn draw_uniform(seq: &StepSeq<'_>) -> f64 {
    match seq.params.seed {
        Some(s) => seeded_uniform(s, seq.seq_index, seq.num_output_tokens()),
        None => rand::rng().random::<f64>(),
    }
}

/// The uniform draw of a seeded request: a ChaCha20 stream keyed only by
/// (seed, child index, output index). Nothing else in the batch can change it, so a seeded
/// request reproduces its tokens whatever it is batched with, and after a preemption.
pub fn seeded_uniform(seed: u64, seq_index: usize, output_index: usize) -> f64 {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(seq_index as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(output_index as u64).to_le_bytes());
    key[24..].copy_from_slice(b"ferrumv1");
    ChaCha20Rng::from_seed(key).random::<f64>()
}

/// The softmax's unnormalized weight of a logit, `exp(l - max)` in f64 (NaN: no mass), and the
/// total over `logits`; `None` when nothing has mass (all masked). The one rule behind the draw
/// and the speculative verifier's acceptance probability.
pub(crate) fn softmax_weights(logits: &[f32]) -> Option<(impl Fn(f32) -> f64, f64)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY || max.is_nan() {
        return None;
    }
    let weight = move |l: f32| {
        if l.is_nan() {
            0.0
        } else {
            ((l - max) as f64).exp()
        }
    };
    let total: f64 = logits.iter().map(|&l| weight(l)).sum();
    Some((weight, total))
}

/// Inverse-CDF draw over softmax(logits) in token-id order with `u` in [0, 1).
/// Falls back to argmax when nothing has mass (everything masked).
pub(crate) fn draw(logits: &[f32], u: f64) -> u32 {
    let Some((weight, total)) = softmax_weights(logits) else {
        return argmax(logits);
    };
    let target = u * total;
    let mut cum = 0.0;
    let mut last_with_mass = argmax(logits);
    for (i, &l) in logits.iter().enumerate() {
        let w = weight(l);
        if w > 0.0 {
            cum += w;
            last_with_mass = i as u32;
            if cum > target {
                return i as u32;
            }
        }
    }
    // Rounding left `target` just above the sum: take the last token with mass.
    last_with_mass
}
