//! Bad model files give errors that say what is wrong, never panics or out-of-bounds reads.

mod common;
use ferrum_models::{LoadFormat, load};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/qwen2/model")
}

/// A test's folder in the temp dir, removed when the test is done with it.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(tag: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("ferrum-load-errors-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn with_weights(tag: &str, bytes: &[u8]) -> Scratch {
    let d = scratch(tag);
    std::fs::copy(fixture_dir().join("config.json"), d.join("config.json")).unwrap();
    std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    d
}

fn err(path: &Path) -> String {
    match load(path, LoadFormat::Auto, 0) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn truncated_safetensors_are_errors() {
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    for cut in (0..bytes.len())
        .step_by(997)
        .chain([1, 7, 8, 9, bytes.len() - 1])
    {
        let d = with_weights("trunc", &bytes[..cut]);
        let e = err(&d);
        assert!(e.contains("safetensors"), "cut at {cut}: {e}");
    }
}

#[test]
fn bit_flipped_safetensors_never_panic() {
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    let mut x = 99u64;
    for _ in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // flip inside the 8-byte length or the JSON header, where flips change the meaning
        let bit = (x >> 20) as usize % (header_len * 8);
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        let d = with_weights("flip", &b);
        let _ = load(&d, LoadFormat::Auto, 0); // Ok or Err, but returns
    }
}

#[test]
fn unknown_architecture_is_named_with_the_supported_list() {
    let d = scratch("arch");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("config.json")).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let e = err(&d);
    assert!(
        e.contains("MambaForCausalLM") && e.contains("Qwen3ForCausalLM"),
        "{e}"
    );
}

#[test]
fn shape_mismatch_names_the_tensor() {
    let d = scratch("shape");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("config.json")).unwrap()).unwrap();
    cfg["intermediate_size"] = serde_json::json!(96);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        fixture_dir().join("model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    let e = err(&d);
    assert!(
        e.contains("shape mismatch")
            && e.contains("mlp.gate_proj.weight")
            && e.contains("[96, 64]"),
        "{e}"
    );
}

#[test]
fn missing_files_say_what_is_missing() {
    assert!(err(Path::new("/nonexistent/model.gguf")).contains("does not exist"));
    let d = scratch("empty");
    assert!(err(&d).contains("no config.json and no .gguf"));
    std::fs::copy(fixture_dir().join("config.json"), d.join("config.json")).unwrap();
    assert!(err(&d).contains("neither model.safetensors nor model.safetensors.index.json"));
}

#[test]
fn dummy_weights_need_only_the_config() {
    let d = scratch("dummy");
    std::fs::copy(fixture_dir().join("config.json"), d.join("config.json")).unwrap();
    let m = load(&d, LoadFormat::Dummy, 0).unwrap();
    assert_eq!(m.config().num_layers, 2);
    assert_eq!(m.weight_dtype, "dummy (random bf16)");
}

/// A block-FP8 config with `--load-format dummy` keeps its projections in e4m3 with block scales
/// (what the benchmarks of the FP8 models load), and the model runs: the same shapes from the
/// config without `quantization_config` take more memory by the projections' second byte.
#[test]
fn dummy_fp8_config_keeps_its_projections_in_fp8() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fixtures/configs");
    let small = serde_json::json!({
        "num_hidden_layers": 1, "num_experts": 4, "num_experts_per_tok": 2, "hidden_size": 256,
        "intermediate_size": 256, "moe_intermediate_size": 128, "vocab_size": 1024,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64
    });
    let load = |name: &str| {
        let mut opts = ferrum_models::LoadOptions::new(LoadFormat::Dummy, 0);
        opts.hf_overrides = Some(small.clone());
        let dir = configs.join(name);
        let files = ferrum_models::inspect(&dir, &opts).unwrap();
        ferrum_models::load_files(files, &opts, &ferrum_backend::CpuBackend::new()).unwrap()
    };
    let fp8 = load("qwen3-30b-a3b-instruct-2507-fp8");
    let bf16 = load("qwen3-30b-a3b-instruct-2507");
    assert_eq!(
        fp8.weight_dtype,
        "dummy (random fp8 e4m3 projections, 128×128 block scales; bf16 elsewhere)"
    );
    // projections: attention q/k/v/o and 4 experts' gate/up/down, one byte instead of two
    let attn = 256 * (4 * 64) * 2 + 2 * 256 * (2 * 64);
    let experts = 4 * 3 * 256 * 128;
    let saved = bf16.weight_bytes - fp8.weight_bytes;
    assert!(
        saved >= (attn + experts) * 9 / 10 && saved <= attn + experts,
        "{saved} bytes saved, expected about {}",
        attn + experts
    );
    // and it runs: one forward through the FP8 projections gives finite logits
    let lp = common::teacher_forced(&fp8.model, &[1, 2, 3], 3);
    assert!(lp.iter().flatten().all(|l| l.is_finite()) && lp.len() == 3);
}
