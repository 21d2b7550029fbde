//! GGUF tokenizers against llama.cpp's own token ids (fixtures written with llama.cpp's tokenizer
//! by scripts/fixtures/llamacpp_reference.py, `parse_special = true`): SmolLM2 (pre `smollm`)
//! and Qwen2.5-0.5B (pre `qwen2`).

mod common;

use common::{fixture, smollm2, smollm2_gguf};
use ferrum_tokenizer::Tokenizer;

#[test]
fn smollm2_ids_equal_llama_cpp() {
    assert_ids_equal_llama_cpp(&smollm2(), "llamacpp_smollm2_tokens.json");
}

#[test]
fn qwen25_ids_equal_llama_cpp() {
    let path = ferrum_gguf::cached_model_path(ferrum_gguf::QWEN25_TEST_MODEL_FILE);
    assert!(
        path.is_file(),
        "{path:?} is missing: run scripts/setup.sh --test-models"
    );
    let tok = Tokenizer::from_gguf(&ferrum_gguf::GgufFile::open(&path).unwrap()).unwrap();
    assert_ids_equal_llama_cpp(&tok, "llamacpp_qwen25_tokens.json");
}

fn assert_ids_equal_llama_cpp(tok: &Tokenizer, fixture_name: &str) {
    let cases = fixture(fixture_name);
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 40, "fixture has only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let add_special = case["add_special"].as_bool().unwrap();
        assert!(case["parse_special"].as_bool().unwrap());
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let got = tok.encode(text, add_special).unwrap();
        if got != want {
            failures.push(format!(
                "{text:?} (add_special={add_special}):\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_special_tokens_from_metadata() {
    let tok = smollm2();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_token_id(), Some(1));
    // eos <|im_end|> first, then llama.cpp's end-of-generation token <|endoftext|>.
    assert_eq!(tok.eos_token_ids(), &[2, 0]);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.id_to_token(504).as_deref(), Some("The"));
    // add_bos_token is false in this file: no bos even with special tokens on.
    assert_eq!(
        tok.encode("Hi", true).unwrap(),
        tok.encode("Hi", false).unwrap()
    );
    assert!(tok.has_chat_template());
    // Control tokens are special: dropped when skipping, kept otherwise.
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\nHi<|im_end|>"
    );
}

#[test]
fn smollm2_round_trips_text() {
    let tok = smollm2();
    for text in ["Hello world", "你好，世界 😀", "  x\n\n\ty  ", "1234567890"] {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn unknown_pre_tokenizer_is_a_clear_error() {
    let file = smollm2_gguf();
    let mut vocab = ferrum_tokenizer::GgufVocab::from_gguf(&file).unwrap();
    vocab.pre = Some("no-such-pre".into());
    let err = format!("{:#}", Tokenizer::from_gguf_vocab(&vocab).unwrap_err());
    assert!(err.contains("\"no-such-pre\""), "{err}");
    assert!(err.contains("smollm"), "{err}");
}
