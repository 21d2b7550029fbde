//! The boundary between the engine and whatever runs the model: plain borrowed data in,
//! sampled tokens out. The runner in `ferrum-models` implements [`Executor`]; tests use fakes.

use std::ops::Range;

use crate::sampling::SamplingParams;

/// Engine-wide request id. For `n > 1` each child sequence has its own id
/// (the parent's id plus the child index), so a [`StepSeq::req_id`] is unique in a batch.
pub type ReqId = u64;

/// One scheduled step: every sequence that advances, in scheduling order.
#[derive(Debug)]
pub struct StepBatch<'a> {
    pub seqs: Vec<StepSeq<'a>>,
}

/// One sequence's work for this step.
///
/// K/V ordering contract: `num_computed` may count blocks that an EARLIER sequence of this
/// same batch fills in this very step (two requests, or the `n > 1` children of one, sharing a
/// prefix that got cached when the first was scheduled; vLLM relies on the same thing). This is
/// safe when the runner either writes every sequence's new K/V of a layer before that layer's
/// attention reads the cache (the usual batched forward), or runs sequences one by one in batch
/// order.
#[derive(Clone, Copy, Debug)]
pub struct StepSeq<'a> {
    pub req_id: ReqId,
    /// Which of the request's `n` outputs this is (0 for `n == 1`); part of the seeded RNG key.
    pub seq_index: usize,
    /// Every token known so far: prompt, then outputs.
    pub tokens: &'a [u32],
    pub num_prompt_tokens: usize,
    /// Tokens whose K/V are already in the cache (prefix-cache hits included).
    pub num_computed: usize,
    /// Compute `tokens[num_computed .. num_computed + num_new]` this step.
    pub num_new: usize,
    /// Physical block ids in order; exactly `ceil((num_computed + num_new) / block_size)` of them.
    /// Token at position `p` lives in slot `block_table[p / bs] * bs + p % bs`.
    pub block_table: &'a [u32],
    /// This step reaches the end of `tokens`: sample the next token from the last position.
    pub sample: bool,
    pub params: &'a SamplingParams,
    /// `Some(p)`: return prompt logprobs for the positions in [`Self::prompt_logprob_positions`].
    pub prompt_logprobs_from: Option<usize>,
    /// The request's EOS ids (masked while `min_tokens` is unmet unless `ignore_eos`).
    pub eos_token_ids: &'a [u32],
}

impl<'a> StepSeq<'a> {
    /// The tokens to feed this step.
    pub fn new_tokens(&self) -> &'a [u32] {
        &self.tokens[self.num_computed..self.num_computed + self.num_new]
    }

    /// Positions `num_computed .. num_computed + num_new` (RoPE positions of the new tokens).
    pub fn new_positions(&self) -> Range<usize> {
        self.num_computed..self.num_computed + self.num_new
    }

    /// Output tokens generated so far (the index of the token about to be sampled).
    pub fn num_output_tokens(&self) -> usize {
        self.tokens.len() - self.num_prompt_tokens
    }

    /// Positions `j` whose logits give the logprob of prompt token `tokens[j + 1]`, one
    /// [`TokenLogprobs`] per position, in order. Empty unless `prompt_logprobs_from` is set.
    /// The first prompt token has no logprob (vLLM reports `None` for it; the server adds it).
    pub fn prompt_logprob_positions(&self) -> Range<usize> {
        let Some(from) = self.prompt_logprobs_from else {
            return 0..0;
        };
        let start = self.num_computed.max(from);
        let end = (self.num_computed + self.num_new).min(self.num_prompt_tokens.saturating_sub(1));
        start..end.max(start)
    }
}

/// Runs one step. Called on the engine thread; a panic or `Err` fails only this step's
/// sequences (they finish with an error) and the engine goes on.
pub trait Executor: Send {
    /// One output per `batch.seqs` entry, same order.
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>>;
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqStepOutput {
    /// `Some` iff the sequence's `sample` was true.
    pub token: Option<Sampled>,
    /// One entry per position of [`StepSeq::prompt_logprob_positions`].
    pub prompt_logprobs: Vec<TokenLogprobs>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub id: u32,
    /// `Some` iff the request asked for `logprobs`.
    pub logprobs: Option<TokenLogprobs>,
}

/// The logprob of one chosen token plus the `k` most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    pub token_id: u32,
    pub logprob: f32,
    /// 1-based: 1 + the number of tokens with a strictly larger logprob.
    pub rank: usize,
    /// The top entries, most likely first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}
