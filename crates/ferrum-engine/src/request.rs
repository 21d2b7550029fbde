//! Requests as callers submit them, what they get back, and the engine's per-sequence state.

use std::sync::Arc;
use std::time::Instant;

use crate::block_pool::BlockHash;
use crate::executor::{ReqId, TokenLogprobs};
use crate::kv_cache::extend_block_hashes;
use crate::sampling::SamplingParams;

/// A tokenized request.
#[derive(Clone, Debug)]
pub struct EngineRequest {
    pub prompt_token_ids: Vec<u32>,
    pub params: SamplingParams,
    /// Lower runs first under [`crate::SchedulingPolicy::Priority`] (vLLM's convention).
    pub priority: i32,
    /// Every id that ends generation as EOS (tokenizer EOS plus generation_config extras).
    pub eos_token_ids: Vec<u32>,
    /// When the request reached the system (the server sets it on arrival, before
    /// tokenizing); `None` means "when the engine handle receives it".
    pub arrival_time: Option<Instant>,
}

impl EngineRequest {
    pub fn new(prompt_token_ids: Vec<u32>, params: SamplingParams) -> Self {
        Self {
            prompt_token_ids,
            params,
            priority: 0,
            eos_token_ids: Vec::new(),
            arrival_time: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// EOS or one of `stop_token_ids` (stop strings are the output side's business).
    Stop,
    /// `max_tokens` or the model's length reached.
    Length,
    /// Aborted by the caller, by shutdown, or because its step failed (then `error` is set).
    Abort,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Abort => "abort",
        }
    }
}

/// One message on a request's stream: the tokens one of its sequences produced in a step.
/// Prefill-only steps send nothing; the last message of each sequence has `finish_reason`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestOutput {
    /// Which of the `n` sequences.
    pub seq_index: usize,
    pub new_token_ids: Vec<u32>,
    /// One entry per new token when the request asked for `logprobs`.
    pub logprobs: Vec<TokenLogprobs>,
    /// Prompt logprobs for prompt tokens 1.. (token 0 has none), all in the first message of
    /// sequence 0 when `prompt_logprobs` was asked for.
    pub prompt_logprobs: Vec<TokenLogprobs>,
    pub finish_reason: Option<FinishReason>,
    /// The stop_token_id that stopped it (vLLM's `stop_reason`); `None` for EOS.
    pub stop_reason: Option<u32>,
    /// Prompt tokens served from the prefix cache when first scheduled.
    pub num_cached_tokens: usize,
    pub error: Option<String>,
    /// On a sequence's final message: when it arrived, was scheduled, produced tokens, ended.
    pub times: Option<SeqTimes>,
}

/// The engine-side timeline of one sequence, the source of vLLM's latency histograms
/// (queue = first_scheduled - arrival, prefill = first_token - first_scheduled,
/// decode = last_token - first_token, inference = last_token - first_scheduled).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeqTimes {
    pub arrival: Instant,
    /// The first admission (a preempted sequence keeps it: vLLM's `scheduled_ts`).
    pub first_scheduled: Option<Instant>,
    pub last_preempted: Option<Instant>,
    pub first_token: Option<Instant>,
    pub last_token: Option<Instant>,
    pub finished: Option<Instant>,
}

impl SeqTimes {
    pub fn new(arrival: Instant) -> Self {
        Self {
            arrival,
            first_scheduled: None,
            last_preempted: None,
            first_token: None,
            last_token: None,
            finished: None,
        }
    }
    pub fn scheduled(&mut self, t: Instant) {
        self.first_scheduled.get_or_insert(t);
    }
    pub fn preempted(&mut self, t: Instant) {
        self.last_preempted = Some(t);
    }
    pub fn token(&mut self, t: Instant) {
        self.first_token.get_or_insert(t);
        self.last_token = Some(t);
    }
    pub fn finished(&mut self, t: Instant) {
        self.finished.get_or_insert(t);
    }
}

/// The sending half of a request's stream: unbounded and non-blocking, so the engine thread
/// never waits on a slow client (tokio's, so async receivers need no extra thread).
pub type OutputSender = tokio::sync::mpsc::UnboundedSender<RequestOutput>;
pub type OutputReceiver = tokio::sync::mpsc::UnboundedReceiver<RequestOutput>;

/// A new request stream's two ends.
pub fn output_channel() -> (OutputSender, OutputReceiver) {
    tokio::sync::mpsc::unbounded_channel()
}

/// Engine-side state of one sequence (one of a request's `n`).
#[derive(Debug)]
pub struct Seq {
    pub id: ReqId,
    /// The id the caller knows (the stream's); equals `id` for child 0.
    pub parent: ReqId,
    pub seq_index: usize,
    pub tokens: Vec<u32>,
    pub num_prompt_tokens: usize,
    /// K/V in cache. Set to the prefix-hit count when admitted, advanced after each step.
    pub num_computed: usize,
    pub params: Arc<SamplingParams>,
    pub eos_token_ids: Arc<[u32]>,
    pub priority: i32,
    /// Admission order, for FCFS and priority ties.
    pub arrival: u64,
    /// Resolved limit on output tokens.
    pub max_tokens: usize,
    pub block_hashes: Vec<BlockHash>,
    pub num_cached_tokens: Option<usize>,
    pub num_preemptions: u32,
    /// Next prompt position whose logprobs are still owed (`None`: not asked for).
    pub prompt_logprobs_next: Option<usize>,
    pub pending_prompt_logprobs: Vec<TokenLogprobs>,
    /// This sequence's key in the waiting queue while it waits.
    pub wait_key: Option<crate::scheduler::WaitKey>,
    pub times: SeqTimes,
    pub tx: OutputSender,
    /// Speculative decoding: the draft scheduled with this step (fed after the new tokens);
    /// empty between steps.
    pub draft: Vec<u32>,
    /// Structured output: this sequence's grammar state, advanced with every appended token
    /// (it survives preemption: the tokens it has seen stay in `tokens`).
    pub matcher: Option<crate::sampling::MatcherCell>,
}

impl Seq {
    /// The `n` sequences of a request; all of them send to `tx`. Only child 0 computes prompt
    /// logprobs (they are the same for every child), which also lets the others use the
    /// prefix cache (a prompt-logprobs sequence must compute every prompt position).
    pub fn group(
        id: ReqId,
        req: EngineRequest,
        max_tokens: usize,
        arrival: u64,
        tx: OutputSender,
    ) -> Vec<Seq> {
        let n = req.params.n.max(1);
        let times = SeqTimes::new(req.arrival_time.unwrap_or_else(Instant::now));
        let params = Arc::new(req.params);
        let eos: Arc<[u32]> = req.eos_token_ids.into();
        (0..n)
            .map(|i| Seq {
                id: id + i as u64,
                parent: id,
                seq_index: i,
                tokens: req.prompt_token_ids.clone(),
                num_prompt_tokens: req.prompt_token_ids.len(),
                num_computed: 0,
                params: params.clone(),
                eos_token_ids: eos.clone(),
                priority: req.priority,
                arrival,
                max_tokens,
                block_hashes: Vec::new(),
                num_cached_tokens: None,
                num_preemptions: 0,
                prompt_logprobs_next: (i == 0 && params.prompt_logprobs.is_some()).then_some(0),
                pending_prompt_logprobs: Vec::new(),
                wait_key: None,
                times,
                tx: tx.clone(),
                draft: Vec::new(),
                matcher: params.constraint.as_ref().map(|c| c.new_matcher()),
            })
            .collect()
    }

    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn num_output_tokens(&self) -> usize {
        self.tokens.len() - self.num_prompt_tokens
    }

    pub fn output_tokens(&self) -> &[u32] {
        &self.tokens[self.num_prompt_tokens..]
    }

    /// While prompt logprobs are owed the prefix cache is not read: every position needs logits.
    pub fn skips_prefix_cache(&self) -> bool {
        self.prompt_logprobs_from().is_some()
    }

    /// What the executor is told: `Some(p)` while prompt positions are still owed.
    pub fn prompt_logprobs_from(&self) -> Option<usize> {
        self.prompt_logprobs_next
            .filter(|&p| p + 1 < self.num_prompt_tokens)
    }

    pub fn update_block_hashes(&mut self, block_size: usize) {
        extend_block_hashes(&mut self.block_hashes, &self.tokens, block_size);
    }

    /// vLLM's `check_stop` after appending a token: stop tokens count only once `min_tokens`
    /// outputs exist; a stop on the last allowed token reports `Stop`, not `Length`.
    pub fn check_stop(&self, max_seq_len: usize) -> Option<(FinishReason, Option<u32>)> {
        let p = &self.params;
        let last = *self.tokens.last()?;
        if self.num_output_tokens() >= p.min_tokens {
            if !p.ignore_eos && self.eos_token_ids.contains(&last) {
                return Some((FinishReason::Stop, None));
            }
            if p.stop_token_ids.contains(&last) {
                return Some((FinishReason::Stop, Some(last)));
            }
        }
        if self.num_output_tokens() >= self.max_tokens || self.num_tokens() >= max_seq_len {
            return Some((FinishReason::Length, None));
        }
        None
    }

    /// The final message of an aborted or failed sequence.
    pub fn abort_output(&self, error: Option<String>) -> RequestOutput {
        RequestOutput {
            seq_index: self.seq_index,
            finish_reason: Some(FinishReason::Abort),
            num_cached_tokens: self.num_cached_tokens.unwrap_or(0),
            error,
            times: Some(self.times),
            ..Default::default()
        }
    }
}
