//! Verification of speculative (draft) tokens: the target model's logits at the sequence's last
//! position and at every draft position in, the accepted tokens out, so that the output
//! distribution is exactly the target model's (vLLM v1's `RejectionSampler` for drafts without
//! probabilities, as n-gram drafts are).
//!
//! Row `j` holds the logits after the sequence's tokens plus `draft[..j]`. Every processor of
//! [`super::sample`] (logit bias, min_tokens, penalties, temperature, top-k/p, min-p) is applied
//! to row `j` as if `draft[..j]` had been accepted, and a seeded request draws from its own
//! stream keyed by the output index, as plain sampling does.
//! - Greedy: accept `draft[j]` while it equals the argmax of processed row `j`; at the first
//!   mismatch emit that argmax; after all drafts, the argmax of the last row (the bonus token).
//!   The tokens are exactly those of decoding without speculation.
//! - Random: the draft is a point mass, so accept `d = draft[j]` with probability `p_j(d)`; on
//!   rejection draw from `p_j` with `d` removed and renormalized (the residual distribution
//!   `max(p - q, 0)` for a one-hot `q`); after all drafts, draw the bonus token from the last
//!   row. Each emitted token is then distributed exactly as `p_j`.
//!
//! Structured output hook: `masks[j]` is the grammar's token bitmask for row `j` (computed by
//! advancing the matcher over `draft[..j]`, see [`super::constraint`]); it is applied before
//! every processor, so a draft the grammar refuses has probability 0 and is rejected there.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::logprobs::token_logprobs_from;
use super::processors::argmax;
use super::sampler::{draw, process, seeded_uniform, softmax_weights};
use crate::executor::{Sampled, StepSeq};

/// Verifies `seq.draft` against `rows` (`1 + seq.draft.len()` rows of `vocab` logits, used as
/// scratch). Returns the accepted drafts followed by one more token (the correction at the first
/// rejection, or the bonus token after all drafts): `1 ..= draft.len() + 1` tokens, where every
/// token but the last equals the draft at its index. `masks[j]` (missing: none) constrains row `j`.
pub fn verify(
    rows: &mut [f32],
    vocab: usize,
    seq: &StepSeq<'_>,
    masks: &[Option<&[u32]>],
) -> Vec<Sampled> {
    let draft = seq.draft;
    assert!(
        rows.len() >= (draft.len() + 1) * vocab,
        "verification needs {} logits rows",
        draft.len() + 1
    );
    let p = seq.params;
    let mut tokens = seq.tokens.to_vec();
    let mut out = Vec::with_capacity(draft.len() + 1);
    for (j, row) in rows.chunks_mut(vocab).take(draft.len() + 1).enumerate() {
        let view = StepSeq {
            tokens: &tokens,
            draft: &[],
            ..*seq
        };
        let raw = process(row, &view, masks.get(j).copied().flatten());
        let out_idx = view.num_output_tokens();
        let d = draft.get(j).copied();
        let (id, accepted) = if p.is_greedy() {
            let a = argmax(row);
            (a, Some(a) == d)
        } else {
            match d {
                None => (draw(row, uniform(p.seed, seq, out_idx, Use::Sample)), false),
                Some(d) => reject_or_accept(
                    row,
                    d,
                    uniform(p.seed, seq, out_idx, Use::Accept),
                    uniform(p.seed, seq, out_idx, Use::Recover),
                ),
            }
        };
        out.push(Sampled {
            id,
            logprobs: raw.map(|(k, lp)| token_logprobs_from(&lp, id, k)),
        });
        if !accepted {
            break;
        }
        tokens.push(id);
    }
    out
}

/// One rejection-sampling decision for a one-hot draft `d` over processed `logits` (the
/// distribution `p = softmax(logits)`): accept when `u_accept < p(d)`, otherwise draw from `p`
/// without `d` with `u_recover`. Returns the token and whether it is the accepted draft.
pub fn reject_or_accept(logits: &mut [f32], d: u32, u_accept: f64, u_recover: f64) -> (u32, bool) {
    if (d as usize) < logits.len() && u_accept < prob_of(logits, d) {
        return (d, true);
    }
    if let Some(l) = logits.get_mut(d as usize) {
        *l = f32::NEG_INFINITY;
    }
    (draw(logits, u_recover), false)
}

/// `softmax(logits)[d]` in f64, NaN counting as no mass (as the draw does).
fn prob_of(logits: &[f32], d: u32) -> f64 {
    softmax_weights(logits).map_or(0.0, |(weight, total)| weight(logits[d as usize]) / total)
}

#[derive(Clone, Copy)]
enum Use {
    /// The plain draw (the bonus token): the same stream as sampling without speculation.
    Sample,
    Accept,
    Recover,
}

/// A seeded request's uniforms come from (seed, child, output index, use), so they do not depend
/// on the batch or the draft length; unseeded ones from the thread RNG.
fn uniform(seed: Option<u64>, seq: &StepSeq<'_>, out_idx: usize, what: Use) -> f64 {
    let Some(seed) = seed else {
        return rand::rng().random::<f64>();
    };
    let tag: &[u8; 8] = match what {
        Use::Sample => return seeded_uniform(seed, seq.seq_index, out_idx),
        Use::Accept => b"ferrumsa",
        Use::Recover => b"ferrumsr",
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(seq.seq_index as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(out_idx as u64).to_le_bytes());
    key[24..].copy_from_slice(tag);
    ChaCha20Rng::from_seed(key).random::<f64>()
}
