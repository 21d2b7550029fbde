//! Sampling: parameters (validated like vLLM), the logits processors in vLLM v1's order,
//! logprobs, and the final draw. The runner computes logits; these rules live here so every
//! backend samples the same way.

pub mod logprobs;
pub mod params;
pub mod processors;
pub mod sampler;

pub use logprobs::{log_softmax, token_logprobs, token_logprobs_from};
pub use params::{SAMPLING_EPS, SamplingParams, py_float};
pub use sampler::{sample, seeded_uniform};
