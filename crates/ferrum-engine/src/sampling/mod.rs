//! Sampling: parameters (validated like vLLM), the logits processors in vLLM v1's order,
//! logprobs, and the final draw. The runner computes logits; these rules live here so every
//! backend samples the same way.

pub mod constraint;
pub mod logprobs;
pub mod params;
pub mod processors;
pub mod sampler;
pub mod spec;

pub use constraint::{
    Constraint, ConstraintFactory, ConstraintMatcher, MatcherCell, StepMasks, apply_token_mask,
    compute_masks, mask_words,
};
pub use logprobs::{log_softmax, token_logprobs, token_logprobs_from};
pub use params::{SAMPLING_EPS, SamplingParams, py_float};
pub use sampler::{
    draw_uniform, is_plain_argmax, needs_only_filters, needs_processors, sample, sample_masked,
    seeded_uniform,
};
pub use spec::verify;
