//! The GGUF `llama` (SentencePiece) path against `sentencepiece` itself: a small BPE model
//! trained with Llama's settings by fixtures/make_fixtures.py, stored as GGUF would store it
//! (pieces, scores, token types), must give sentencepiece's ids and decoded text.

mod common;

use common::fixture;
use ferrum_tokenizer::{GgufVocab, Tokenizer};
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn sentencepiece_vocab_matches_sentencepiece() {
    let fx = fixture("spm_tokens.json");
    let id = |k: &str| fx[k].as_u64().map(|i| i as u32);
    let vocab = GgufVocab {
        model: "llama".into(),
        tokens: serde_json::from_value(fx["tokens"].clone()).unwrap(),
        scores: serde_json::from_value(fx["scores"].clone()).unwrap(),
        token_types: serde_json::from_value(fx["token_types"].clone()).unwrap(),
        bos_token_id: id("bos_token_id"),
        eos_token_id: id("eos_token_id"),
        unknown_token_id: id("unknown_token_id"),
        add_space_prefix: fx["add_space_prefix"].as_bool(),
        ..GgufVocab::default()
    };
    let tok = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    assert_eq!(tok.bos_token_id(), Some(1));
    assert_eq!(tok.eos_token_ids(), &[2]);
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        let got = tok.encode(text, false).unwrap();
        if got != want {
            failures.push(format!(
                "{text:?}:\n  sentencepiece {want:?}\n  ours          {got:?}"
            ));
        }
        // llama.cpp's default for SentencePiece vocabularies: bos added.
        let with_bos = tok.encode(text, true).unwrap();
        if with_bos.first() != Some(&1) || with_bos[1..] != got[..] {
            failures.push(format!("{text:?}: bos not added: {with_bos:?}"));
        }
        let decoded = tok.decode(&want, false).unwrap();
        if decoded != case["decoded"].as_str().unwrap() {
            failures.push(format!("decode {text:?}: {decoded:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
