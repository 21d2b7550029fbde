//! `from_hf_dir` reads the side files the way transformers does: tokenizer_config.json's
//! special tokens and add_bos/add_eos flags, generation_config.json's eos list, and a separate
//! chat_template.jinja that wins over tokenizer_config.json's template.

use std::path::PathBuf;

use ferrum_tokenizer::{GgufVocab, Tokenizer};

/// A fresh temporary directory (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ferrum-tok-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tokenizer.json with `<s>`=0, `</s>`=1 as special tokens and no post-processor.
fn tiny_tokenizer_json() -> String {
    let tokens: Vec<String> = ["<s>", "</s>", "a", "b", "ab", "<eot>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let vocab = GgufVocab {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        token_types: vec![3, 3, 1, 1, 1, 3],
        merges: vec!["a b".into()],
        tokens,
        ..GgufVocab::default()
    };
    let tok = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    tok.hf_tokenizer().to_string(false).unwrap()
}

#[test]
fn side_files_are_honoured() {
    let dir = TempDir::new("side-files");
    dir.write("tokenizer.json", &tiny_tokenizer_json());
    dir.write(
        "tokenizer_config.json",
        r#"{"bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>",
            "add_bos_token": true, "add_eos_token": true, "chat_template": "config"}"#,
    );
    dir.write("generation_config.json", r#"{"eos_token_id": [1, 5]}"#);
    dir.write("chat_template.jinja", "{{ bos_token }}jinja{{ eos_token }}");
    let tok = Tokenizer::from_hf_dir(&dir.0).unwrap();
    assert_eq!(tok.bos_token_id(), Some(0));
    assert_eq!(tok.eos_token_ids(), &[1, 5]);
    // No post-processor in tokenizer.json: the config flags add bos and eos.
    assert_eq!(tok.encode("ab", true).unwrap(), vec![0, 4, 1]);
    assert_eq!(tok.encode("ab", false).unwrap(), vec![4]);
    // Special-token text is the token.
    assert_eq!(tok.encode("a<eot>b", false).unwrap(), vec![2, 5, 3]);
    assert_eq!(
        tok.chat_template(),
        Some("{{ bos_token }}jinja{{ eos_token }}")
    );
    let out = tok
        .apply_chat_template(&serde_json::json!([]), false, None)
        .unwrap();
    assert_eq!(out, "<s>jinja</s>");
}

#[test]
fn chat_template_json_and_named_templates() {
    let dir = TempDir::new("named");
    dir.write("tokenizer.json", &tiny_tokenizer_json());
    dir.write(
        "chat_template.json",
        r#"{"chat_template": [{"name": "default", "template": "D"},
                              {"name": "tool_use", "template": "T{{ tools | length }}"}]}"#,
    );
    let tok = Tokenizer::from_hf_dir(&dir.0).unwrap();
    assert_eq!(tok.eos_token_ids(), &[] as &[u32]);
    let msgs = serde_json::json!([]);
    assert_eq!(tok.apply_chat_template(&msgs, true, None).unwrap(), "D");
    let extra = serde_json::json!({"tools": [{}, {}]});
    assert_eq!(
        tok.apply_chat_template(&msgs, true, Some(&extra)).unwrap(),
        "T2"
    );
}

#[test]
fn missing_template_is_an_error() {
    let dir = TempDir::new("no-template");
    dir.write("tokenizer.json", &tiny_tokenizer_json());
    let tok = Tokenizer::from_hf_dir(&dir.0).unwrap();
    assert!(!tok.has_chat_template());
    let err = tok
        .apply_chat_template(&serde_json::json!([]), true, None)
        .unwrap_err();
    assert!(err.to_string().contains("no chat template"), "{err}");
}
