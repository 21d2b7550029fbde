//! Structured output as the engine sees it: a compiled constraint (a grammar, a JSON schema, a
//! regex...) is a [`ConstraintFactory`] carried by [`crate::SamplingParams::constraint`]; each
//! sequence gets its own [`ConstraintMatcher`] from it (so `n > 1` children advance
//! independently), kept in the sequence's engine state ([`MatcherCell`]) and advanced with every
//! token the engine appends. The runner asks the matcher for the allowed-token bitmask of the
//! next position (in parallel with the forward pass) and the sampler applies it before any other
//! logits processor. The engine knows nothing of the grammar library (`ferrum-structured`
//! implements these traits over llguidance).
//!
//! Speculative decoding hook: to verify draft tokens `d1..dk`, take the lock once, compute the
//! mask for position 0, `accept(d1)`, the mask for position 1, ... (stopping at the first draft
//! token the grammar refuses), then `rollback(number accepted)` so the engine's appends (which
//! call `accept` again for the tokens finally kept) see the state they expect.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// A compiled constraint: hands out fresh per-sequence matchers.
pub trait ConstraintFactory: Send + Sync {
    /// A matcher at the start of the output.
    fn new_matcher(&self) -> Box<dyn ConstraintMatcher>;
    /// A short description for logs ("json_schema", "regex", ...).
    fn describe(&self) -> String;
}

/// One sequence's position in its grammar.
pub trait ConstraintMatcher: Send {
    /// Writes the tokens allowed next as a bitmask: bit `t % 32` of `bits[t / 32]` set iff token
    /// `t` may follow. `bits` is `ceil(vocab / 32)` words (the model's vocabulary; ids beyond
    /// the tokenizer's stay 0). EOS ids are set only where the grammar accepts.
    fn fill_mask(&mut self, bits: &mut [u32]) -> Result<(), String>;
    /// Advances by one sampled token; `Err` when the grammar refuses it (fails the request).
    fn accept(&mut self, token: u32) -> Result<(), String>;
    /// Undoes the last `n` accepted tokens (speculative decoding's rejected drafts).
    fn rollback(&mut self, n: usize) -> Result<(), String>;
    /// No further token can be accepted: the output is complete.
    fn is_finished(&self) -> bool;
}

/// The constraint of a request, as [`crate::SamplingParams`] carries it. Two are equal when
/// they are the same compiled object.
#[derive(Clone)]
pub struct Constraint(pub Arc<dyn ConstraintFactory>);

impl Constraint {
    pub fn new(f: Arc<dyn ConstraintFactory>) -> Self {
        Self(f)
    }
    pub fn new_matcher(&self) -> MatcherCell {
        MatcherCell(Mutex::new(self.0.new_matcher()))
    }
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Constraint({})", self.0.describe())
    }
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A sequence's matcher. The engine thread advances it between steps; the runner's mask thread
/// locks it during the forward (never at the same time: the lock is uncontended).
pub struct MatcherCell(Mutex<Box<dyn ConstraintMatcher>>);

impl MatcherCell {
    pub fn lock(&self) -> MutexGuard<'_, Box<dyn ConstraintMatcher>> {
        // A panic inside a matcher poisons only that sequence's lock; its state is still
        // usable for error reporting.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for MatcherCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MatcherCell")
    }
}

/// Words of a bitmask over `vocab` tokens.
pub fn mask_words(vocab: usize) -> usize {
    vocab.div_ceil(32)
}

/// Whether token `t` is allowed by `bits`.
#[inline]
pub fn mask_allows(bits: &[u32], t: usize) -> bool {
    bits.get(t / 32).is_some_and(|w| w >> (t % 32) & 1 == 1)
}

/// Sets every logit the mask disallows to -inf (vLLM's `apply_grammar_bitmask`).
pub fn apply_token_mask(logits: &mut [f32], bits: &[u32]) {
    for (i, chunk) in logits.chunks_mut(32).enumerate() {
        let w = bits.get(i).copied().unwrap_or(0);
        if w == u32::MAX {
            continue;
        }
        for (j, l) in chunk.iter_mut().enumerate() {
            if w >> j & 1 == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// The token masks of one step: for each `StepBatch::seqs[i]` that samples under a grammar,
/// one mask per logits row it samples from (1, or `1 + draft.len()` when verifying drafts).
#[derive(Debug, Default)]
pub struct StepMasks {
    pub masks: Vec<Option<Vec<Vec<u32>>>>,
    /// Wall time spent computing them.
    pub elapsed: std::time::Duration,
    /// Sequences whose matcher failed: `(index in seqs, error)`. They sample unconstrained this
    /// step; the engine then fails them when it appends the token the grammar refuses.
    pub errors: Vec<(usize, String)>,
}

impl StepMasks {
    /// The masks of `seqs[i]`, if constrained.
    pub fn of(&self, i: usize) -> Option<&[Vec<u32>]> {
        self.masks.get(i).and_then(|m| m.as_deref())
    }
}

/// Computes every constrained sequence's masks for this step (`vocab`: the logits' width).
/// Meant to run on its own thread while the forward runs (the runner joins it before sampling).
/// Draft positions: mask 0, accept draft 1, mask 1, ... then roll the drafts back, so the
/// matcher is left where the engine expects it; after a draft the grammar refuses, the
/// remaining positions repeat the last mask (verification rejects there anyway).
pub fn compute_masks(batch: &crate::executor::StepBatch<'_>, vocab: usize) -> StepMasks {
    let t0 = std::time::Instant::now();
    let mut out = StepMasks::default();
    if batch.matchers.is_empty() {
        return out;
    }
    let words = mask_words(vocab);
    for (i, s) in batch.seqs.iter().enumerate() {
        let m = match batch.matcher(i) {
            Some(m) if s.sample => m,
            _ => {
                out.masks.push(None);
                continue;
            }
        };
        let mut m = m.lock();
        let mut masks = Vec::with_capacity(1 + s.draft.len());
        let mut accepted = 0;
        let mut failed = None;
        for j in 0..=s.draft.len() {
            if failed.is_some() || j > accepted {
                let last = masks
                    .last()
                    .cloned()
                    .unwrap_or_else(|| vec![u32::MAX; words]);
                masks.push(last);
                continue;
            }
            let mut bits = vec![0u32; words];
            if let Err(e) = m.fill_mask(&mut bits) {
                failed = Some(e);
                bits.fill(u32::MAX);
            }
            masks.push(bits);
            if let Some(&d) = s.draft.get(j)
                && failed.is_none()
                && mask_allows(masks.last().unwrap(), d as usize)
                && !m.is_finished()
                && m.accept(d).is_ok()
            {
                accepted += 1;
            }
        }
        if accepted > 0
            && let Err(e) = m.rollback(accepted)
        {
            failed.get_or_insert(e);
        }
        if let Some(e) = failed {
            out.errors.push((i, e));
            out.masks.push(None);
        } else {
            out.masks.push(Some(masks));
        }
    }
    out.elapsed = t0.elapsed();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_application() {
        let mut logits = vec![1.0f32; 70];
        let mut bits = vec![0u32; mask_words(70)];
        assert_eq!(bits.len(), 3);
        for t in [0usize, 31, 32, 69] {
            bits[t / 32] |= 1 << (t % 32);
        }
        apply_token_mask(&mut logits, &bits);
        for (t, &l) in logits.iter().enumerate() {
            assert_eq!(l.is_finite(), [0, 31, 32, 69].contains(&t), "token {t}");
            assert_eq!(mask_allows(&bits, t), l.is_finite());
        }
        // a short mask disallows the rest
        let mut logits = vec![0.5f32; 40];
        apply_token_mask(&mut logits, &[u32::MAX]);
        assert!(logits[..32].iter().all(|l| l.is_finite()));
        assert!(logits[32..].iter().all(|l| *l == f32::NEG_INFINITY));
    }
}
