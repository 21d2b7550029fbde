//! Random-weight Qwen2 (f32, QKV bias, tied embeddings), Qwen3 (bf16, QK-norm) and Llama-3.1
//! (f32, llama3 rope scaling) models built by transformers from the real configs (widths shrunk),
//! saved as safetensors, with transformers' teacher-forced top-20 log-probabilities
//! (tests/fixtures/hf/*, made by ../shared/tools/hf_reference.py on an H200, transformers 5.17).

mod common;
use common::*;
use ferrum_models::{LoadFormat, load};

fn check(name: &str) -> (f64, f64, f64) {
    let dir = hf_fixture(name);
    check_reference(name, &dir.join("model"), &dir.join("reference.json"))
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
    let src = hf_fixture("qwen2").join("model");
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
    let model = load(&hf_fixture("llama").join("model"), LoadFormat::Auto, 0).unwrap();
    let prompt: Vec<u32> = (0..40).map(|i| (i * 37 % 512) as u32).collect();
    assert_eq!(
        teacher_forced(&model.model, &prompt, 1000),
        teacher_forced(&model.model, &prompt, 5)
    );
}
