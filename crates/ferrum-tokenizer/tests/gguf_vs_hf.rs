//! The GGUF path against the HF path: a GGUF-style vocabulary (tokens, merges, token types,
//! `tokenizer.ggml.pre`) made from a real tokenizer.json must tokenize exactly like that
//! tokenizer.json does, on every text of the HF fixture (which itself is checked against
//! Python `tokenizers` in hf_vs_python.rs).

mod common;

use common::{fixture, gguf_vocab_from_hf, hf, hf_dir};
use ferrum_tokenizer::Tokenizer;

fn check(model: &str, pre: &str) {
    let from_hf = hf(model);
    let vocab = gguf_vocab_from_hf(&hf_dir(model), pre);
    let from_gguf = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    let fx = fixture("hf_tokens.json");
    let texts = fx["texts"].as_array().unwrap();
    assert!(texts.len() >= 40);
    let mut failures = Vec::new();
    for text in texts {
        let text = text.as_str().unwrap();
        for add_special in [false, true] {
            let want = from_hf.encode(text, add_special).unwrap();
            let got = from_gguf.encode(text, add_special).unwrap();
            if got != want {
                failures.push(format!(
                    "{text:?} (add_special={add_special}):\n  hf   {want:?}\n  gguf {got:?}"
                ));
            }
            for skip in [false, true] {
                let a = from_hf.decode(&want, skip).unwrap();
                let b = from_gguf.decode(&want, skip).unwrap();
                if a != b {
                    failures.push(format!("decode {text:?} skip={skip}: {a:?} vs {b:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{model}/{pre}:\n{}",
        failures.join("\n")
    );
    assert_eq!(from_gguf.vocab_size(), from_hf.vocab_size());
    assert_eq!(from_gguf.bos_token_id(), from_hf.bos_token_id());
    assert_eq!(from_gguf.eos_token_ids()[0], from_hf.eos_token_ids()[0]);
}

#[test]
fn qwen2_pre_tokenizer_matches_qwen3_tokenizer_json() {
    check("qwen3", "qwen2");
}

#[test]
fn llama_bpe_pre_tokenizer_matches_llama31_tokenizer_json() {
    check("llama3.1", "llama-bpe");
}
