//! ferrum-engine: the engine loop, scheduler, paged KV-cache block pool with prefix caching,
//! and sampling rules. It knows nothing about models or devices: a runner implements
//! [`Executor`] and the engine drives it one step at a time (`schedule -> execute -> update`)
//! on its own thread.

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

pub use block_pool::{BlockHash, BlockPool};
pub use config::{EngineConfig, SchedulingPolicy};
pub use engine::{Engine, EngineError, EngineHandle, RequestStream};
pub use engine_core::{EngineCore, EngineStats, StepReport};
pub use executor::{Executor, ReqId, Sampled, SeqStepOutput, StepBatch, StepSeq, TokenLogprobs};
pub use kv_cache::KvCacheManager;
pub use request::{EngineRequest, FinishReason, RequestOutput};
pub use sampling::{SamplingParams, log_softmax, sample, token_logprobs};
pub use scheduler::{ScheduledSeq, Scheduler, SchedulerOutput};
