//! Shared helpers for the integration tests: where the test inputs live, and a GGUF-style
//! vocabulary made from a HF `tokenizer.json` the way llama.cpp's `convert_hf_to_gguf.py` does.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use ferrum_tokenizer::{
    GgufVocab, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNUSED, TOKEN_TYPE_USER_DEFINED,
    Tokenizer,
};
use serde_json::Value;

pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The real HF tokenizer folders (qwen3/, llama3.1/) that `scripts/setup.sh --test-models` fetches
/// into the cache (too big to commit). Missing inputs fail the test: a skipped oracle proves nothing.
pub fn hf_dir(model: &str) -> PathBuf {
    let dir = ferrum_gguf::cached_tokenizer_dir(model);
    assert!(
        dir.join("tokenizer.json").is_file(),
        "{}/tokenizer.json is missing: run scripts/setup.sh --test-models",
        dir.display()
    );
    dir
}

pub fn hf(model: &str) -> Tokenizer {
    Tokenizer::from_hf_dir(&hf_dir(model)).unwrap()
}

/// The default model's GGUF; fails (never skips) when it is missing.
pub fn smollm2_gguf() -> ferrum_gguf::GgufFile {
    let path = ferrum_gguf::default_model_path();
    assert!(
        path.is_file(),
        "default model {path:?} is missing: run scripts/setup.sh"
    );
    ferrum_gguf::GgufFile::open(&path).unwrap()
}

pub fn smollm2() -> Tokenizer {
    Tokenizer::from_gguf(&smollm2_gguf()).unwrap()
}

/// What `convert_hf_to_gguf.py` would store for a byte-level BPE `tokenizer.json`: tokens by id
/// (holes become `[PAD<i>]`, unused), added tokens as control when special or when they look
/// special (`<|...|>`), else user-defined; merges as "left right".
pub fn gguf_vocab_from_hf(dir: &Path, pre: &str) -> GgufVocab {
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let tj = read("tokenizer.json");
    let config = read("tokenizer_config.json");
    let mut pairs: Vec<(u32, String, i32)> = tj["model"]["vocab"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, id)| (id.as_u64().unwrap() as u32, t.clone(), TOKEN_TYPE_NORMAL))
        .collect();
    for added in tj["added_tokens"].as_array().unwrap() {
        let id = added["id"].as_u64().unwrap() as u32;
        let text = added["content"].as_str().unwrap().to_string();
        let looks_special = text.starts_with("<|") && text.ends_with("|>");
        let ty = if added["special"].as_bool().unwrap() || looks_special {
            TOKEN_TYPE_CONTROL
        } else {
            TOKEN_TYPE_USER_DEFINED
        };
        pairs.retain(|p| p.0 != id);
        pairs.push((id, text, ty));
    }
    let n = pairs.iter().map(|p| p.0).max().unwrap() as usize + 1;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut token_types = vec![TOKEN_TYPE_UNUSED; n];
    for (id, text, ty) in pairs {
        tokens[id as usize] = text;
        token_types[id as usize] = ty;
    }
    let merges = tj["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            Value::String(s) => s.clone(),
            Value::Array(p) => format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap()),
            _ => panic!("bad merge {m}"),
        })
        .collect();
    let id_of = |key: &str| {
        let text = config[key].as_str()?;
        tokens.iter().position(|t| t == text).map(|i| i as u32)
    };
    GgufVocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        bos_token_id: id_of("bos_token"),
        eos_token_id: id_of("eos_token"),
        add_bos_token: config["add_bos_token"].as_bool(),
        add_eos_token: config["add_eos_token"].as_bool(),
        chat_templates: config["chat_template"]
            .as_str()
            .map(|t| vec![("default".to_string(), t.to_string())])
            .unwrap_or_default(),
        tokens,
        token_types,
        merges,
        ..GgufVocab::default()
    }
}

/// A small deterministic PRNG (xorshift64*), so the tests need no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
