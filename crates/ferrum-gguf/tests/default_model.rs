//! The real default model (SmolLM2-135M-Instruct Q4_1) against facts and sample values that
//! gguf-py read from the same file (tests/fixtures/model_samples.json, by make_fixtures.py).
//! The model is part of the project's setup, so a missing file fails the test rather than
//! skipping it.

mod common;

use common::*;
use ferrum_gguf::{GgmlType, GgufFile, default_model_path};

fn open_default_model() -> GgufFile {
    let path = default_model_path();
    assert!(
        path.exists(),
        "default model not found at {}: run scripts/setup.sh to fetch it \
         (or set FERRUM_CACHE to the directory holding models/)",
        path.display()
    );
    GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn samples() -> serde_json::Value {
    let bytes = std::fs::read(fixture_dir().join("model_samples.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn default_model_header_matches_gguf_py() {
    let f = open_default_model();
    let s = samples();
    assert_eq!(f.version, 3);
    assert_eq!(f.architecture(), Some("llama"));
    assert_eq!(f.tensors.len(), 272);
    assert_eq!(f.get_u64("llama.block_count"), Some(30));
    assert_eq!(f.metadata.len() as u64, s["kv_count"].as_u64().unwrap());
    assert_eq!(f.tensors.len() as u64, s["tensor_count"].as_u64().unwrap());
    assert_eq!(f.data_offset(), s["data_offset"].as_u64().unwrap());
    assert_eq!(f.alignment(), 32, "no general.alignment: the default");
    let eps = f.get("llama.attention.layer_norm_rms_epsilon").unwrap();
    assert_eq!(
        eps,
        &ferrum_gguf::Value::F32(f32::from_bits(
            s["rms_eps_f32_bits"].as_u64().unwrap() as u32
        ))
    );

    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len() as u64, s["tokens_len"].as_u64().unwrap());
    for (i, want) in s["tokens_sample"].as_object().unwrap() {
        assert_eq!(
            tokens[i.parse::<usize>().unwrap()],
            want.as_str().unwrap(),
            "token {i}"
        );
    }
    let len = |k: &str| f.get_array(k).unwrap().len() as u64;
    assert_eq!(
        len("tokenizer.ggml.token_type"),
        s["token_type_len"].as_u64().unwrap()
    );
    assert_eq!(
        len("tokenizer.ggml.merges"),
        s["merges_len"].as_u64().unwrap()
    );
    let template = f.get_str("tokenizer.chat_template").unwrap();
    assert_eq!(
        template.len() as u64,
        s["chat_template_len"].as_u64().unwrap()
    );

    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(embd.dims, [576, 49152]);
}

#[test]
fn default_model_dequantization_matches_gguf_py_samples() {
    let f = open_default_model();
    let s = samples();
    let mut types = Vec::new();
    for t in s["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let info = f
            .tensor(name)
            .unwrap_or_else(|| panic!("tensor {name} missing"));
        assert_eq!(info.ggml_type.name(), t["type"].as_str().unwrap(), "{name}");
        let dims: Vec<u64> = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(info.dims, dims, "{name}");
        assert_eq!(info.offset, t["offset"].as_u64().unwrap(), "{name}");
        let values = f.dequantize(info).unwrap();
        assert_eq!(values.len() as u64, info.n_elements());
        let positions = t["positions"].as_array().unwrap();
        let bits = t["bits"].as_array().unwrap();
        assert!(positions.len() >= 100, "{name}: enough samples");
        let got: Vec<f32> = positions
            .iter()
            .map(|p| values[p.as_u64().unwrap() as usize])
            .collect();
        let want: Vec<f32> = bits
            .iter()
            .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
            .collect();
        assert_same_f32(name, &got, &want);
        types.push(info.ggml_type);
    }
    assert!(
        types.contains(&GgmlType::Q4_1) && types.contains(&GgmlType::Q8_0),
        "{types:?}"
    );
}

#[test]
fn every_default_model_tensor_is_readable() {
    let f = open_default_model();
    for t in &f.tensors {
        let bytes = f.tensor_bytes(t).unwrap();
        assert_eq!(bytes.len() as u64, t.n_bytes().unwrap(), "{}", t.name);
        assert!(t.ggml_type.can_dequantize(), "{}: {}", t.name, t.ggml_type);
    }
}
