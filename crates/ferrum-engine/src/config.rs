//! Engine configuration: the knobs vLLM exposes as `--block-size`, `--max-num-seqs`,
//! `--max-num-batched-tokens`, `--enable-chunked-prefill`, `--enable-prefix-caching`,
//! `--scheduling-policy` and `--max-logprobs`, plus what the runner measured
//! (`num_blocks`, `vocab_size`) and what the model allows (`max_model_len`).

/// Order in which waiting requests are admitted (and victims chosen for preemption).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedulingPolicy {
    /// First come, first served (by arrival).
    #[default]
    Fcfs,
    /// Lower `priority` value first, then arrival; preemption picks the highest value, latest arrival.
    Priority,
}

impl SchedulingPolicy {
    /// vLLM's flag values: `fcfs` and `priority`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fcfs" => Some(Self::Fcfs),
            "priority" => Some(Self::Priority),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Tokens per KV-cache block (vLLM default 16).
    pub block_size: usize,
    /// Physical blocks in the cache. Every block is usable: block 0 is NOT reserved as a
    /// null block (vLLM reserves it for sliding-window padding, which we do not need here).
    /// [`crate::Engine::start_with`] ignores the value given and sets it to what the runner
    /// allocated ([`crate::ExecutorInit::num_blocks`]); the handle's config shows the result.
    pub num_blocks: usize,
    /// Cap on running sequences (vLLM default 256). With `n > 1` each child counts.
    pub max_num_seqs: usize,
    /// Token budget of one step, shared by decodes (1 token each, more after a step that
    /// accepted several) and prefill chunks.
    pub max_num_batched_tokens: usize,
    /// Longest sequence (prompt + outputs) a request may reach.
    pub max_model_len: usize,
    pub enable_chunked_prefill: bool,
    pub enable_prefix_caching: bool,
    pub scheduling_policy: SchedulingPolicy,
    /// Largest `logprobs` / `prompt_logprobs` a request may ask for (vLLM default 20).
    pub max_logprobs: usize,
    pub vocab_size: usize,
    /// `--speculative-config` (n-gram drafts); `None`: no speculation.
    pub speculative: Option<crate::spec::SpeculativeConfig>,
}

impl EngineConfig {
    /// vLLM's defaults for everything but the three values only the caller knows.
    /// `max_num_batched_tokens` is 8192 (vLLM's online-serving default with chunked prefill);
    /// callers that turn chunked prefill off should use [`Self::default_max_num_batched_tokens`].
    pub fn new(num_blocks: usize, max_model_len: usize, vocab_size: usize) -> Self {
        Self {
            block_size: 16,
            num_blocks,
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            max_model_len,
            enable_chunked_prefill: true,
            enable_prefix_caching: true,
            scheduling_policy: SchedulingPolicy::Fcfs,
            max_logprobs: 20,
            vocab_size,
            speculative: None,
        }
    }

    /// What vLLM picks when `--max-num-batched-tokens` is not given: 8192 with chunked prefill,
    /// otherwise `max(max_model_len, 2048)` so that any prompt fits one step.
    pub fn default_max_num_batched_tokens(chunked_prefill: bool, max_model_len: usize) -> usize {
        if chunked_prefill {
            8192
        } else {
            max_model_len.max(2048)
        }
    }

    /// Tokens the whole cache can hold.
    pub fn cache_capacity_tokens(&self) -> usize {
        self.num_blocks * self.block_size
    }

    /// Panics on a configuration no request could run under; called by the scheduler's constructor.
    pub(crate) fn assert_sane(&self) {
        if let Err(e) = self.check() {
            panic!("{e}");
        }
    }

    /// Refuses a configuration no request could run under.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.check_except_num_blocks()?;
        if self.num_blocks == 0 {
            return Err("num_blocks must be positive".into());
        }
        Ok(())
    }

    /// [`Self::check`] for everything the caller decides (the runner decides `num_blocks`).
    pub(crate) fn check_except_num_blocks(&self) -> Result<(), String> {
        for (value, name) in [
            (self.block_size, "block_size"),
            (self.max_num_seqs, "max_num_seqs"),
            (self.max_num_batched_tokens, "max_num_batched_tokens"),
            (self.max_model_len, "max_model_len"),
            (self.vocab_size, "vocab_size"),
        ] {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        Ok(())
    }
}
