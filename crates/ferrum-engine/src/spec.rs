//! Speculative decoding on the engine side: the n-gram proposer (vLLM's `NgramProposer`,
//! "prompt lookup decoding"), its configuration, and the acceptance counters behind vLLM's
//! `vllm:spec_decode_*` metrics. Verification lives with the sampler
//! ([`crate::sampling::verify`]); scheduling and K/V rollback in the scheduler.

/// `--speculative-config '{"method": "ngram", ...}'`, resolved and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeculativeConfig {
    /// Draft tokens proposed per step at most (`num_speculative_tokens`, K).
    pub num_speculative_tokens: usize,
    /// Shortest suffix that may match (`prompt_lookup_min`).
    pub prompt_lookup_min: usize,
    /// Longest suffix tried (`prompt_lookup_max`).
    pub prompt_lookup_max: usize,
}

impl SpeculativeConfig {
    /// vLLM's resolution for `method = "ngram"`: both lookup bounds missing → 5 and 5, one
    /// missing → the other's value; then both must be ≥ 1 and min ≤ max (vLLM's messages).
    pub fn ngram(
        num_speculative_tokens: usize,
        prompt_lookup_min: Option<usize>,
        prompt_lookup_max: Option<usize>,
    ) -> Result<Self, String> {
        let (min, max) = match (prompt_lookup_min, prompt_lookup_max) {
            (None, None) => (5, 5),
            (None, Some(max)) => (max, max),
            (Some(min), None) => (min, min),
            (Some(min), Some(max)) => (min, max),
        };
        if num_speculative_tokens < 1 {
            return Err(format!(
                "Expected num_speculative_tokens to be greater than zero ({num_speculative_tokens})."
            ));
        }
        if min < 1 {
            return Err(format!("prompt_lookup_min={min} must be > 0"));
        }
        if max < 1 {
            return Err(format!("prompt_lookup_max={max} must be > 0"));
        }
        if min > max {
            return Err(format!(
                "prompt_lookup_min={min} must be <= prompt_lookup_max={max}"
            ));
        }
        Ok(Self {
            num_speculative_tokens,
            prompt_lookup_min: min,
            prompt_lookup_max: max,
        })
    }

    /// The draft for a sequence whose tokens are `tokens`, at most `k` long.
    pub fn propose<'t>(&self, tokens: &'t [u32], max_model_len: usize, k: usize) -> &'t [u32] {
        propose_ngram(
            tokens,
            self.prompt_lookup_min,
            self.prompt_lookup_max,
            max_model_len,
            k.min(self.num_speculative_tokens),
        )
    }
}

/// vLLM's `_find_longest_matched_ngram_and_propose_tokens`: the longest suffix of `tokens` of
/// length in `[min_n, max_n]` that also occurs earlier; among its earlier occurrences the
/// EARLIEST wins; proposes the (at most `k`, and at most `max_model_len - len`) tokens that
/// followed it. KMP over the reversed sequence, O(len).
pub fn propose_ngram(
    tokens: &[u32],
    min_n: usize,
    max_n: usize,
    max_model_len: usize,
    k: usize,
) -> &[u32] {
    let total = tokens.len();
    if total < min_n || max_n == 0 {
        return &[];
    }
    let k = k.min(max_model_len.saturating_sub(total));
    if k == 0 {
        return &[];
    }
    let rev = |i: usize| tokens[total - 1 - i];
    let mut lps = vec![0usize; max_n];
    let (mut longest, mut position) = (0usize, 0usize);
    let mut prev = 0usize;
    let mut i = 1;
    while i < total {
        if rev(prev) == rev(i) {
            prev += 1;
            // `>=`: the latest position in the reversed tokens, the earliest in the original
            if prev >= longest {
                longest = prev;
                position = i;
            }
            if i < max_n {
                lps[i] = prev;
            }
            if prev == max_n {
                prev = lps[max_n - 1];
            }
            i += 1;
        } else if prev != 0 {
            prev = lps[prev - 1];
        } else {
            i += 1;
        }
    }
    if longest < min_n {
        return &[];
    }
    let start = total - 1 - position + longest;
    let len = k.min(total - start);
    &tokens[start..start + len]
}

/// Counters of speculative decoding since the engine started (vLLM's `SpecDecodingStats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecDecodeStats {
    /// Verification steps of a sequence with a non-empty draft (`vllm:spec_decode_num_drafts`).
    pub num_drafts: u64,
    /// `vllm:spec_decode_num_draft_tokens`.
    pub num_draft_tokens: u64,
    /// `vllm:spec_decode_num_accepted_tokens`.
    pub num_accepted_tokens: u64,
    /// `vllm:spec_decode_num_accepted_tokens_per_pos`, one entry per draft position
    /// (`num_speculative_tokens` long once speculation is configured).
    pub num_accepted_tokens_per_pos: Vec<u64>,
}

impl SpecDecodeStats {
    pub fn new(num_speculative_tokens: usize) -> Self {
        Self {
            num_accepted_tokens_per_pos: vec![0; num_speculative_tokens],
            ..Self::default()
        }
    }

    /// One sequence's verification: `num_draft` proposed, the first `num_accepted` accepted.
    pub fn observe(&mut self, num_draft: usize, num_accepted: usize) {
        if num_draft == 0 {
            return;
        }
        self.num_drafts += 1;
        self.num_draft_tokens += num_draft as u64;
        self.num_accepted_tokens += num_accepted as u64;
        if self.num_accepted_tokens_per_pos.len() < num_draft {
            self.num_accepted_tokens_per_pos.resize(num_draft, 0);
        }
        for c in &mut self.num_accepted_tokens_per_pos[..num_accepted] {
            *c += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_examples() {
        // vLLM's tests/v1/spec_decode/test_ngram.py
        let t = [1, 2, 3, 4, 1, 2, 3, 5, 6];
        assert_eq!(propose_ngram(&t, 2, 2, 1024, 2), &[] as &[u32]);
        let t = [1, 2, 3, 4, 1, 2, 3];
        assert_eq!(propose_ngram(&t, 2, 2, 1024, 2), &[4, 1]);
        assert_eq!(propose_ngram(&t, 2, 2, 1024, 3), &[4, 1, 2]);
        assert_eq!(propose_ngram(&t, 3, 3, 1024, 2), &[4, 1]);
        // the longest match ([1, 2, 3] at 3) wins over an earlier shorter one ([2, 3] at 0)
        let t = [2, 3, 9, 1, 2, 3, 4, 1, 2, 3];
        assert_eq!(propose_ngram(&t, 2, 3, 1024, 2), &[4, 1]);
        // earliest occurrence among equally long matches
        let t = [1, 2, 7, 1, 2, 8, 1, 2];
        assert_eq!(propose_ngram(&t, 2, 2, 1024, 1), &[7]);
        // bounded by max_model_len and by the tokens that exist
        let t = [5, 5, 5];
        assert_eq!(propose_ngram(&t, 1, 1, 4, 3), &[5]);
        assert_eq!(propose_ngram(&t, 2, 2, 1024, 5), &[5]);
        assert_eq!(propose_ngram(&[1], 1, 3, 1024, 3), &[] as &[u32]);
    }

    #[test]
    fn ngram_config_defaults_and_errors() {
        let c = SpeculativeConfig::ngram(3, None, None).unwrap();
        assert_eq!((c.prompt_lookup_min, c.prompt_lookup_max), (5, 5));
        let c = SpeculativeConfig::ngram(3, None, Some(4)).unwrap();
        assert_eq!((c.prompt_lookup_min, c.prompt_lookup_max), (4, 4));
        let c = SpeculativeConfig::ngram(3, Some(2), None).unwrap();
        assert_eq!((c.prompt_lookup_min, c.prompt_lookup_max), (2, 2));
        assert_eq!(
            SpeculativeConfig::ngram(3, Some(4), Some(2)).unwrap_err(),
            "prompt_lookup_min=4 must be <= prompt_lookup_max=2"
        );
        assert!(SpeculativeConfig::ngram(3, Some(0), Some(2)).is_err());
        assert!(SpeculativeConfig::ngram(0, Some(1), Some(2)).is_err());
    }

    #[test]
    fn stats_per_position() {
        let mut s = SpecDecodeStats::new(3);
        s.observe(3, 2);
        s.observe(2, 0);
        s.observe(0, 0);
        assert_eq!(s.num_drafts, 2);
        assert_eq!(s.num_draft_tokens, 5);
        assert_eq!(s.num_accepted_tokens, 2);
        assert_eq!(s.num_accepted_tokens_per_pos, vec![1, 1, 0]);
    }
}
