//! Chat templates rendered by minijinja against Python jinja2 set up as transformers does
//! (fixture chat_templates.json, made by fixtures/make_fixtures.py): byte-identical output for
//! Qwen3 (incl. tools, tool calls, tool responses, thinking), Llama-3, SmolLM2 (from GGUF), and
//! a template written to exercise the Jinja features real templates use.

mod common;

use common::{fixture, hf, smollm2};
use ferrum_tokenizer::{GgufVocab, Tokenizer};

fn check(tok: &Tokenizer, key: &str) {
    let fx = fixture("chat_templates.json");
    let model = &fx[key];
    assert_eq!(
        tok.chat_template(),
        model["template"].as_str(),
        "{key}: fixture made from another template; rerun make_fixtures.py"
    );
    let cases = model["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let extra = (!case["extra"].is_null()).then_some(&case["extra"]);
        let got = tok.apply_chat_template(
            &case["messages"],
            case["add_generation_prompt"].as_bool().unwrap(),
            extra,
        );
        if let Some(err) = case["error"].as_str() {
            // jinja2 raised (raise_exception): we must fail too, with the same message.
            let got = format!("{:#}", got.unwrap_err());
            assert!(got.contains(err), "{key} case {}: {got}", case["name"]);
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{key} {}: {e:#}", case["name"]));
        let want = case["expected"].as_str().unwrap();
        assert_eq!(got, want, "{key} case {}", case["name"]);
    }
}

/// A tokenizer whose only purpose is to carry `template` (bos `<s>`, eos `</s>`).
fn with_template(template: &str) -> Tokenizer {
    let vocab = GgufVocab {
        model: "gpt2".into(),
        pre: Some("gpt-2".into()),
        tokens: vec!["<s>".into(), "</s>".into(), "a".into()],
        token_types: vec![3, 3, 1],
        bos_token_id: Some(0),
        eos_token_id: Some(1),
        chat_templates: vec![("default".into(), template.into())],
        ..GgufVocab::default()
    };
    Tokenizer::from_gguf_vocab(&vocab).unwrap()
}

#[test]
fn template_features_match_jinja2() {
    let fx = fixture("chat_templates.json");
    let template = fx["features"]["template"].as_str().unwrap();
    check(&with_template(template), "features");
}

#[test]
fn qwen3_template_matches_jinja2() {
    check(&hf("qwen3"), "qwen3");
}

#[test]
fn llama31_template_matches_jinja2() {
    check(&hf("llama3.1"), "llama3.1");
}

#[test]
fn smollm2_gguf_template_matches_jinja2() {
    check(&smollm2(), "smollm2_gguf");
}

#[test]
fn qwen3_tool_fixture_really_has_tools() {
    // Guard against a fixture that silently stopped exercising the tool path.
    let fx = fixture("chat_templates.json");
    let tools_case = fx["qwen3"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tools/agp=True")
        .unwrap();
    let want = tools_case["expected"].as_str().unwrap();
    assert!(want.contains("<tools>\n{\"type\": \"function\""));
    assert!(
        want.contains("\"arguments\": {\"city\": \"Zürich\", \"days\": 2, \"threshold\": 1.0}")
    );
    assert!(want.contains("<tool_response>"));
}
