//! Real GGUF models against llama.cpp: teacher-forced next-token log-probabilities over prompts
//! plus llama.cpp's own greedy continuations (tests/fixtures/llamacpp_*_logprobs.json, made by
//! scripts/fixtures/llamacpp_reference.py): the default SmolLM2-135M-Instruct (llama, Q4_1 +
//! Q8_0) and Qwen2.5-0.5B-Instruct (qwen2 with QKV bias, Q4_K_M: Q4_K/Q5_0/Q6_K/Q8_0 mixed).
//! The same comparisons on the GPU: `cuda_gguf.rs`.
//!
//! We run f32 over dequantized weights; llama.cpp rounds activations to 8 bits for its quantized
//! dot products and stores K/V in f16, so distributions differ by a few hundredths of a nat and
//! only near-ties may flip.

mod common;
use common::llamacpp::{greedy_vs_llamacpp, model_path, teacher_forced_vs_llamacpp};
use ferrum_backend::{CpuBackend, KvDtype};
use ferrum_models::{LoadFormat, LoadedModel, load};

fn model(file: &str) -> LoadedModel {
    load(&model_path(file), LoadFormat::Auto, 0).unwrap()
}

/// Teacher-forced: (mean, max) |Δ logprob|, with ≥ 99 % top-1 agreement where llama.cpp is
/// decisive.
fn teacher_forced(m: &LoadedModel, name: &str) -> (f64, f64) {
    let (mean, max, rate) =
        teacher_forced_vs_llamacpp(&mut CpuBackend::new(), KvDtype::F32, &m.model, name);
    assert!(rate >= 0.99, "top-1 agreement {rate} < 0.99");
    (mean, max)
}

/// Greedy: every token equal to llama.cpp's up to its first near-tie; returns how many.
fn greedy(m: &LoadedModel, name: &str) -> usize {
    let (same, total) = greedy_vs_llamacpp(&mut CpuBackend::new(), KvDtype::F32, &m.model, name);
    assert_eq!(
        same, total,
        "{name}: greedy differs from llama.cpp's before a near-tie"
    );
    total
}

#[test]
fn smollm2_teacher_forced_logprobs_match_llamacpp() {
    let (mean, max) = teacher_forced(&model(ferrum_gguf::DEFAULT_MODEL_FILE), "smollm2");
    assert!(mean < 0.2 && max < 2.0, "mean {mean} max {max}");
}

#[test]
fn smollm2_greedy_matches_llamacpp_until_first_near_tie() {
    // a check over too few tokens proves nothing: the fixture has 36 decisive ones
    let total = greedy(&model(ferrum_gguf::DEFAULT_MODEL_FILE), "smollm2");
    assert!(total >= 30, "only {total} comparable greedy tokens");
}

#[test]
fn qwen25_matches_llamacpp() {
    let m = model(ferrum_gguf::QWEN25_TEST_MODEL_FILE);
    let (mean, max) = teacher_forced(&m, "qwen25");
    assert!(mean < 0.2 && max < 2.0, "mean {mean} max {max}");
    let total = greedy(&m, "qwen25");
    assert!(total >= 10, "only {total} comparable greedy tokens");
}
