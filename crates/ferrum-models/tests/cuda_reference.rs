//! The transformers fixtures of `hf_reference.rs` (Llama-3.1 f32, Qwen2 f32 with QKV bias, Qwen3
//! bf16 with QK-norm) and of `moe_reference.rs` (Qwen3-MoE, GLM-4.5 MoE with sigmoid
//! group-limited routing and shared experts, a block-FP8 Qwen3-MoE checkpoint) on the CUDA
//! backend, which computes in bf16: teacher-forced
//! log-probabilities against transformers, max and mean |Δ| and top-1 agreement reported and
//! bounded. The bounds are those of a bf16 forward (transformers' own bf16 run of the Qwen3
//! fixture is the yardstick: the CPU's f32 forward is within 0.1 max / 0.02 mean of it).
//!
//! Needs a GPU, so `#[ignore]`d in the plain test run (which lists it as ignored);
//! `scripts/gpu-check.sh` runs it on the GPU machine with `--ignored`, and `scripts/cuda-emu.sh`
//! (in CI) on the CPU through the CUDA emulator (`tools/cuda-emu`).

mod common;
use common::*;
use ferrum_backend::KvDtype;
use ferrum_backend::cuda::{CudaBackend, Half};

fn gpu() -> CudaBackend {
    CudaBackend::new(0, Half::Bf16).expect("a CUDA device for the CUDA backend")
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh runs it"]
fn models_on_cuda_match_transformers_within_bf16_tolerance() {
    let mut be = gpu();
    let device = ferrum_backend::Backend::device_name(&be);
    for name in [
        "llama",
        "qwen2",
        "qwen3",
        "qwen3_moe",
        "glm4_moe",
        "qwen3_moe_fp8",
    ] {
        let dir = hf_fixture(name);
        let (max, mean, agree) = check_reference_on(
            &mut be,
            KvDtype::BF16,
            &format!("{name} on {device}"),
            &dir.join("model"),
            &dir.join("reference.json"),
        );
        // in bf16 a router near a tie may pick another expert for a token, which moves that
        // position further; the FP8 fixture routes top-2 of 8, so more of its positions sit near
        // a tie (the CUDA emulator's bf16 runs, tools/cuda-emu: Qwen3-MoE max 0.26 / mean 0.008,
        // its FP8 twin 0.81 / 0.033, GLM 0.07 / 0.007; dense ≤ 0.043 / 0.008)
        let (max_bound, mean_bound) = match name {
            "qwen3_moe_fp8" => (1.0, 0.05),
            "qwen3_moe" | "glm4_moe" => (0.5, 0.03),
            _ => (0.25, 0.03),
        };
        assert!(
            max < max_bound && mean < mean_bound && agree >= 0.9,
            "{name}: max {max} mean {mean} top-1 {agree}"
        );
    }
    // a model made on the GPU machine by hf_reference.py (scripts/gpu-check.sh: Llama-3.1-8B's
    // real widths and vocabulary, 4 layers, bf16, std 0.1 so the argmax means something). At
    // these widths a bf16 forward is far from the exact one (logits of std ≈ 6 amplify every
    // rounding), so the oracle is transformers in f32 over the same bf16 weights
    // (`reference_f32.json`), and the yardstick is transformers' own bf16 forward against it:
    // ours must be about as close.
    if let Some(dir) = std::env::var_os("FERRUM_GPU_MODEL").map(std::path::PathBuf::from) {
        let (bf16_ref, f32_ref) = (dir.join("reference.json"), dir.join("reference_f32.json"));
        let label = |what: &str| format!("{} on {device} {what}", dir.display());
        check_reference_on(
            &mut be,
            KvDtype::BF16,
            &label("vs transformers bf16"),
            &dir.join("model"),
            &bf16_ref,
        );
        let (max, mean, agree) = check_reference_on(
            &mut be,
            KvDtype::BF16,
            &label("vs transformers f32"),
            &dir.join("model"),
            &f32_ref,
        );
        let (_, hf_mean, hf_agree) =
            compare_references("transformers bf16 vs f32", &bf16_ref, &f32_ref);
        assert!(
            mean < (2.0 * hf_mean).max(0.02) && agree >= hf_agree - 0.05,
            "max {max} mean {mean} top-1 {agree} (transformers bf16: mean {hf_mean}, top-1 {hf_agree})"
        );
    }
}
