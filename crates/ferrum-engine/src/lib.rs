//! ferrum-engine: the engine loop, scheduler, paged KV-cache block pool with prefix caching,
//! and sampling rules. It knows nothing about models or devices: a runner implements
//! [`Executor`] and the engine drives it one step at a time (`schedule -> execute -> update`)
//! on its own thread ([`Engine::start_with`], which also builds the runner there), or
//! synchronously through [`EngineCore`]. The step contract is in [`executor`].
//!
//! Semantics follow vLLM v1 (`scheduler.py`, `kv_cache_manager.py`, `block_pool.py`,
//! `sampler.py`). Where this crate deliberately differs:
//! - No null block: all `num_blocks` blocks are usable; block ids start at 0.
//! - A block hash covers only (parent hash, token ids) — no LoRA / multimodal extra keys yet.
//!   The index keeps one block per hash (vLLM keeps duplicates).
//! - Blocks published in a step that then fails, or whose owner is preempted after being
//!   scheduled in that step, are withdrawn from the prefix index (vLLM leaves them cached
//!   although their K/V were never written).
//! - Prefix-cache queries/hits are counted once per sequence, when first admitted; vLLM
//!   re-counts a request each time it is considered while blocked at the head of the queue.
//! - Requests that can never finish are refused up front: also those whose prompt + max_tokens
//!   outgrow the whole KV cache (vLLM checks max_model_len against the cache at startup), and
//!   without chunked prefill, prompts longer than `max_num_batched_tokens`. If
//!   `max_model_len` exceeds the cache, requests without `max_tokens` stop at the cache size.
//! - Without chunked prefill, a preempted sequence that has grown past
//!   `max_num_batched_tokens` is recomputed in chunks (vLLM would never reschedule it).
//! - `n > 1` children are independent sequences (as in vLLM v1) that share the prompt's full
//!   blocks through the prefix cache; with prefix caching off they do not share.
//! - Only child 0 computes prompt logprobs; they arrive once, in its first message.
//! - Seeded sampling uses a ChaCha20 stream keyed by (seed, child index, output index), so a
//!   seeded request reproduces across batches and preemptions, though not torch's numbers.
//! - A request whose stream is dropped is aborted at the next step boundary, wherever it is.
//! - N-gram speculation ([`spec`]): a draft never reaches past what `max_tokens` leaves, and
//!   when the cache cannot hold a sequence's draft the draft is dropped before anyone is
//!   preempted for it. The blocks of rejected drafts are freed at once (vLLM keeps them
//!   allocated for the request's later tokens).

pub mod admission;
pub mod block_pool;
pub mod config;
pub mod engine;
pub mod engine_core;
pub mod executor;
pub mod kv_cache;
pub mod request;
pub mod sampling;
pub mod scheduler;
pub mod spec;

pub use block_pool::{BlockHash, BlockPool};
pub use config::{EngineConfig, SchedulingPolicy};
pub use engine::{Engine, EngineError, EngineHandle, RequestStream, StepInfo, StepObserver};
pub use engine_core::{EngineCore, EngineStats, StepReport};
pub use executor::{
    Executor, ExecutorFactory, ExecutorInit, FatalError, ReqId, Sampled, SeqStepOutput, StepBatch,
    StepSeq, TokenLogprobs,
};
pub use kv_cache::KvCacheManager;
pub use request::{
    EngineRequest, FinishReason, OutputReceiver, OutputSender, RequestOutput, SeqTimes,
    output_channel,
};
pub use sampling::{SamplingParams, log_softmax, sample, sample_masked, token_logprobs};
pub use scheduler::{RunnerUpdates, ScheduledSeq, Scheduler, SchedulerOutput};
pub use spec::{SpecDecodeStats, SpeculativeConfig};
