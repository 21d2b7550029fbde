//! The boundary between the engine and whatever runs the model: plain borrowed data in,
//! sampled tokens out. The runner in `ferrum-models` implements [`Executor`]; tests use fakes.
//!
//! The step contract, as seen by a runner:
//! - The engine builds the runner on its own thread ([`crate::Engine::start_with`] calls an
//!   [`ExecutorFactory`]) and only ever calls it from that thread, so the runner need not be
//!   `Send` (a device context may belong to one thread). The runner sizes the KV cache: the
//!   factory returns the number of blocks.
//! - Each [`StepBatch`] first tells the runner which sequences it must forget
//!   ([`StepBatch::finished_seqs`], [`StepBatch::aborted_seqs`], [`StepBatch::preempted_seqs`])
//!   and which ones it sees for the first time ([`StepBatch::new_seqs`]); apply them in that
//!   order, at the start of `execute`, before anything can fail: they are delivered once.
//! - Per scheduled sequence it returns the tokens it accepted ([`SeqStepOutput::tokens`]).
//! - `Err` fails that step's sequences only; an error whose chain holds a [`FatalError`]
//!   (a sticky device error) stops the engine.

use std::ops::Range;

use crate::sampling::SamplingParams;

/// Engine-wide request id. For `n > 1` each child sequence has its own id
/// (the parent's id plus the child index), so a [`StepSeq::req_id`] is unique in a batch.
pub type ReqId = u64;

/// One scheduled step: every sequence that advances, in scheduling order, plus the changes to
/// the set of sequences the runner keeps state for (K/V slots aside, which the engine manages
/// through block tables: e.g. penalty counts, a speculative draft's own cache).
///
/// The four id lists report what happened since the previous executed step (like vLLM's
/// `finished_req_ids`): a sequence that ends or is preempted between steps, or in a step that
/// schedules nothing, is reported on the next step that runs, so a runner may hold state for
/// an ended sequence until then (and for good once the engine stops). Every id in `new_seqs`
/// is later reported exactly once in `finished_seqs`, `aborted_seqs` or `preempted_seqs`
/// (unless the engine stops first); ids in those three lists were always in an earlier
/// step's `new_seqs`. One step may name an id both as released and as new (preempted, then
/// re-admitted before the next step ran): apply the releases first.
#[derive(Debug, Default)]
pub struct StepBatch<'a> {
    pub seqs: Vec<StepSeq<'a>>,
    /// Sequences scheduled for the first time, or again after a preemption: the runner holds
    /// no state for them. Each is in `seqs`, in scheduling order.
    pub new_seqs: Vec<ReqId>,
    /// Sequences that finished normally (EOS, a stop token id, `max_tokens`, the length limit).
    pub finished_seqs: Vec<ReqId>,
    /// Sequences ended otherwise: aborted by the caller (a stop string found by the output
    /// side, a client gone), failed with their step, or cut by shutdown.
    pub aborted_seqs: Vec<ReqId>,
    /// Sequences evicted by recompute preemption: drop their state; they come back later in
    /// `new_seqs` (with `num_computed` from the prefix cache, possibly 0).
    pub preempted_seqs: Vec<ReqId>,
    /// Structured output: the grammar state of `seqs[i]` at `matchers[i]` (`None` when that
    /// sequence is unconstrained); empty when no sequence of the step is. A runner computes
    /// the token mask of each constrained sequence that samples (`fill_mask`), ideally while
    /// the forward runs, and samples under it. The engine advances the matchers afterwards.
    pub matchers: Vec<Option<&'a crate::sampling::MatcherCell>>,
}

impl<'a> StepBatch<'a> {
    /// The grammar state of `seqs[i]`, if it is constrained.
    pub fn matcher(&self, i: usize) -> Option<&'a crate::sampling::MatcherCell> {
        self.matchers.get(i).copied().flatten()
    }
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
    /// Speculative decoding: draft tokens proposed to follow `tokens` (empty without). Only
    /// when `sample` is set. The runner feeds them after the new tokens, at positions
    /// `num_computed + num_new ..` (the block table covers them), computes logits at the last
    /// new token and at every draft position, and verifies them
    /// ([`crate::sampling::verify`]): the output is the accepted drafts plus one token. The
    /// engine counts the accepted drafts' K/V as computed and drops the rest.
    pub draft: &'a [u32],
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

    /// Tokens fed this step: the new tokens, then the draft.
    pub fn num_fed(&self) -> usize {
        self.num_new + self.draft.len()
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

/// Runs one step. Built and called on the engine thread only (hence no `Send` bound; see
/// [`ExecutorFactory`]). A panic or a plain `Err` fails only this step's sequences (they
/// finish with an error) and the engine goes on; an `Err` whose chain holds a [`FatalError`]
/// stops the engine for good (see [`FatalError`]).
pub trait Executor {
    /// One output per `batch.seqs` entry, same order.
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>>;
}

/// Builds the executor on the engine thread (see [`crate::Engine::start_with`]).
pub type ExecutorFactory = Box<dyn FnOnce() -> anyhow::Result<ExecutorInit> + Send>;

/// What an [`ExecutorFactory`] returns: the runner, and how many KV-cache blocks it
/// allocated (the engine's block count; `EngineConfig::num_blocks` is overwritten with it).
pub struct ExecutorInit {
    pub executor: Box<dyn Executor>,
    pub num_blocks: usize,
}

/// An executor error after which no step can succeed (a sticky device error, a lost device).
/// Return it from [`Executor::execute`] (`Err(FatalError(msg).into())`, or anywhere in an
/// error's chain): the engine then stops as if its own code had panicked: every request in
/// flight, and every later one, fails with the reason, and `EngineHandle::death` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatalError(pub String);

impl std::fmt::Display for FatalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FatalError {}

impl FatalError {
    /// Whether `e` (or anything in its chain of causes) is a [`FatalError`].
    pub fn is_fatal(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<FatalError>())
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqStepOutput {
    /// The tokens this step accepted for the sequence, in order: empty iff its `sample` was
    /// false, otherwise at least one (one for plain decoding; speculative decoding may accept
    /// several). The engine appends them one by one, checking stop conditions after each, and
    /// drops the rest once the sequence finishes. Only the tokens already in
    /// [`StepSeq::tokens`] have K/V after this step: the accepted ones are fed (and their K/V
    /// written) in the sequence's next step, which schedules all of them. With a draft
    /// ([`StepSeq::draft`]) the tokens are the accepted drafts plus one more (checked): the
    /// accepted drafts' K/V, written this step, count as computed; the last token is fed next.
    pub tokens: Vec<Sampled>,
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
