//! Random-weight Qwen2 (f32, QKV bias, tied embeddings), Qwen3 (bf16, QK-norm) and Llama-3.1
//! (f32, llama3 rope scaling) models built by transformers from the real configs (widths shrunk),
//! saved as safetensors, with transformers' teacher-forced top-20 log-probabilities
//! (tests/fixtures/hf/*, made by ../shared/tools/hf_reference.py on an H200, transformers 5.17).

mod common;
use common::*;
use ferrum_models::{LoadFormat, load};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// Returns (max |Δ|, mean |Δ|, top-1 agreement) over every position's top-20.
fn check(name: &str) -> (f64, f64, f64) {
    let model = load(&fixture(name).join("model"), LoadFormat::Auto, 0).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture(name).join("reference.json")).unwrap())
            .unwrap();
    let (mut max, mut sum, mut n, mut agree, mut total) = (0f64, 0f64, 0usize, 0usize, 0usize);
    for p in reference["prompts"].as_array().unwrap() {
        let ours = teacher_forced(&model.model, &ids(&p["ids"]), 1000);
        for (pos, r) in ours.iter().zip(p["positions"].as_array().unwrap()) {
            let (d, top1, _) = compare(pos, r, 20);
            max = d.iter().cloned().fold(max, f64::max);
            sum += d.iter().sum::<f64>();
            n += d.len();
            agree += top1 as usize;
            total += 1;
        }
    }
    let stats = (max, sum / n as f64, agree as f64 / total as f64);
    eprintln!(
        "{name}: max |Δ logprob| {:.2e}, mean {:.2e}, top-1 agreement {:.3}",
        stats.0, stats.1, stats.2
    );
    stats
}

#[test]
fn qwen2_f32_matches_transformers() {
    let (max, mean, agree) = check("qwen2");
    assert!(
        max < 1e-4 && mean < 1e-5 && agree == 1.0,
        "{max} {mean} {agree}"
    );
}

#[test]
fn llama31_f32_matches_transformers() {
    let (max, mean, agree) = check("llama");
    assert!(
        max < 1e-4 && mean < 1e-5 && agree == 1.0,
        "{max} {mean} {agree}"
    );
}

#[test]
fn qwen3_bf16_matches_transformers_within_bf16_tolerance() {
    // transformers computes in bf16 (8-bit mantissa activations); we compute in f32 from the same
    // bf16 weights, so the gap is bf16 rounding, not a formula difference.
    let (max, mean, agree) = check("qwen3");
    assert!(
        max < 0.1 && mean < 0.02 && agree >= 0.95,
        "{max} {mean} {agree}"
    );
}

/// The same weights split over two shards with an index give bit-identical logits.
#[test]
fn sharded_safetensors_load_identically() {
    let dir = std::env::temp_dir().join(format!("ferrum-shard-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("qwen2").join("model");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut map = serde_json::Map::new();
    for (i, part) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(&file)).unwrap();
        for n in part {
            map.insert(n.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let prompt = [5u32, 17, 300, 42, 7, 511, 0, 99];
    let a = teacher_forced(
        &load(&src, LoadFormat::Auto, 0).unwrap().model,
        &prompt,
        100,
    );
    let b = teacher_forced(
        &load(&dir, LoadFormat::Auto, 0).unwrap().model,
        &prompt,
        100,
    );
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(a, b);
}

/// Prefill in chunks of 5 gives bit-identical distributions to one prefill (batch invariance).
#[test]
fn chunked_prefill_is_bit_identical() {
    let model = load(&fixture("llama").join("model"), LoadFormat::Auto, 0).unwrap();
    let prompt: Vec<u32> = (0..40).map(|i| (i * 37 % 512) as u32).collect();
    assert_eq!(
        teacher_forced(&model.model, &prompt, 1000),
        teacher_forced(&model.model, &prompt, 5)
    );
}
