//! `Tokenizer::from_hf_dir` against Python `tokenizers` on the same tokenizer.json files
//! (fixture hf_tokens.json, made by fixtures/make_fixtures.py): ids with and without special
//! tokens, and decoded text with and without skipping special tokens.

mod common;

use common::{fixture, hf};

fn check(model: &str) {
    let tok = hf(model);
    let fx = fixture("hf_tokens.json");
    let cases = fx["models"][model].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let ids_special: Vec<u32> =
            serde_json::from_value(case["ids_add_special"].clone()).unwrap();
        let got = tok.encode(text, false).unwrap();
        if got != ids {
            failures.push(format!("{text:?}: python {ids:?}\n  ours {got:?}"));
        }
        let got = tok.encode(text, true).unwrap();
        if got != ids_special {
            failures.push(format!(
                "{text:?} +special: python {ids_special:?}\n  ours {got:?}"
            ));
        }
        let decoded = tok.decode(&ids_special, false).unwrap();
        if decoded != case["decoded"].as_str().unwrap() {
            failures.push(format!("decode {text:?} gave {decoded:?}"));
        }
        let decoded = tok.decode(&ids_special, true).unwrap();
        if decoded != case["decoded_skip_special"].as_str().unwrap() {
            failures.push(format!("decode(skip) {text:?} gave {decoded:?}"));
        }
    }
    assert!(failures.is_empty(), "{model}:\n{}", failures.join("\n"));
}

#[test]
fn qwen3_matches_python_tokenizers() {
    check("qwen3");
}

#[test]
fn llama31_matches_python_tokenizers() {
    check("llama3.1");
}

#[test]
fn special_tokens_from_config() {
    let q = hf("qwen3");
    assert_eq!(q.bos_token_id(), None);
    assert_eq!(q.eos_token_ids(), &[151645]); // <|im_end|>
    assert_eq!(q.vocab_size(), 151669);
    assert!(q.has_chat_template());
    assert!(q.is_special_id(151644)); // <|im_start|>
    assert!(!q.is_special_id(151667)); // <think> is an added token, not a special one

    let l = hf("llama3.1");
    assert_eq!(l.bos_token_id(), Some(128000));
    assert_eq!(l.eos_token_ids(), &[128009]); // <|eot_id|>
    // The post-processor adds <|begin_of_text|>; it must not be added twice.
    assert_eq!(l.encode("Hi", true).unwrap(), vec![128000, 13347]);
}
