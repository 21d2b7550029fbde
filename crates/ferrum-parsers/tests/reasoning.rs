//! Reasoning parsers on canned outputs: exact splits, and every chunking of
//! each output streams to the same split.

mod common;

use common::check_reasoning_stream;
use ferrum_parsers::{ReasoningParser, ReasoningParserKind as K};
use serde_json::json;

fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

/// Check the exact non-streaming split, then the streaming invariant.
fn case(p: ReasoningParser, text: &str, reasoning: Option<String>, content: Option<String>) {
    assert_eq!(
        p.extract(text),
        (reasoning, content),
        "{:?} on {text:?}",
        p.kind()
    );
    check_reasoning_stream(&p, text);
}

fn on(kind: K) -> ReasoningParser {
    ReasoningParser::new(kind, true)
}

#[test]
fn names_parse_and_errors_list_valid_names() {
    assert_eq!("qwen3".parse::<K>(), Ok(K::Qwen3));
    assert_eq!("deepseek_r1".parse::<K>(), Ok(K::DeepSeekR1));
    assert_eq!("glm45".parse::<K>(), Ok(K::Glm45));
    let err = "qwen".parse::<K>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown reasoning parser 'qwen'; valid names: qwen3, deepseek_r1, glm45"
    );
    assert_eq!(K::Glm45.to_string(), "glm45");
}

#[test]
fn qwen3_thinking_on() {
    let p = on(K::Qwen3);
    // Qwen3 (2504) generates <think> itself.
    let old = "<think>\nThe user says hi.\n</think>\n\nHello! How can I help?";
    case(
        p,
        old,
        s("\nThe user says hi.\n"),
        s("\n\nHello! How can I help?"),
    );
    // Newer templates put <think> in the prompt: only </think> is generated.
    let new = "The user says hi.\n</think>\n\nHello!";
    case(p, new, s("The user says hi.\n"), s("\n\nHello!"));
    // No </think>: truncated while thinking, all reasoning.
    case(p, "Still thinking about", s("Still thinking about"), None);
    case(p, "<think></think>hello", None, s("hello"));
    case(p, "<think>\nshort\n</think>", s("\nshort\n"), None);
    case(p, "", None, None);
    // Whitespace before a generated <think> is dropped with it.
    case(p, "\n\n<think>abc</think>x", s("abc"), s("x"));
    // Only the first <think> is a tag; tags after </think> are content.
    case(
        p,
        "a<think>b<think>c</think>d<think>e</think>",
        s("ab<think>c"),
        s("d<think>e</think>"),
    );
    case(p, "思考中…</think>答案 🎉", s("思考中…"), s("答案 🎉"));
}

#[test]
fn qwen3_thinking_off_is_all_content() {
    assert!(!K::Qwen3.thinking_enabled(Some(&json!({"enable_thinking": false}))));
    assert!(K::Qwen3.thinking_enabled(Some(&json!({"enable_thinking": true}))));
    assert!(K::Qwen3.thinking_enabled(Some(&json!({"other": 1}))));
    assert!(K::Qwen3.thinking_enabled(None));
    let p = ReasoningParser::new(K::Qwen3, false);
    assert!(!p.thinking_enabled());
    // The template wrote "<think>\n\n</think>\n\n" into the prompt already.
    case(
        p,
        "Hello! How can I help?",
        None,
        s("Hello! How can I help?"),
    );
    case(p, "x</think>y", None, s("x</think>y"));
    assert!(p.is_reasoning_end(""));
}

#[test]
fn qwen3_tool_call_ends_reasoning_only_before_function_tag() {
    let p = on(K::Qwen3);
    // Qwen3.5 / Qwen3-Coder calling a tool from inside the think block.
    let xml = "I need the weather.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>";
    let call = &xml[xml.find("<tool_call>").unwrap()..];
    case(p, xml, s("I need the weather.\n"), s(call));
    case(
        p,
        "<tool_call><function name=\"f\">",
        None,
        s("<tool_call><function name=\"f\">"),
    );
    // A mere mention, or a hermes JSON call, stays reasoning.
    case(
        p,
        "Use <tool_call> tags.</think>ok",
        s("Use <tool_call> tags."),
        s("ok"),
    );
    let hermes = "Call it.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    case(p, hermes, s(hermes), None);
    case(
        p,
        "a<tool_call>\n<functions>",
        s("a<tool_call>\n<functions>"),
        None,
    );
    case(
        p,
        "a<tool_call> <function",
        s("a<tool_call> <function"),
        None,
    );
    // deepseek_r1 and glm45 have no such rule.
    case(on(K::DeepSeekR1), xml, s(xml), None);
}

#[test]
fn deepseek_r1_without_opening_tag() {
    let p = on(K::DeepSeekR1);
    let out = "Okay, 2 + 2 = 4.\n</think>\n\nThe answer is **4**.";
    case(
        p,
        out,
        s("Okay, 2 + 2 = 4.\n"),
        s("\n\nThe answer is **4**."),
    );
    let with_tag = "<think>\nOkay.\n</think>\n\n4";
    case(p, with_tag, s("\nOkay.\n"), s("\n\n4"));
    case(p, "Hmm, let me", s("Hmm, let me"), None);
    // R1's parser ignores chat_template_kwargs.
    assert!(K::DeepSeekR1.thinking_enabled(Some(&json!({"enable_thinking": false}))));
    let forced = ReasoningParser::new(K::DeepSeekR1, false);
    assert!(forced.thinking_enabled());
    case(
        forced,
        out,
        s("Okay, 2 + 2 = 4.\n"),
        s("\n\nThe answer is **4**."),
    );
}

#[test]
fn glm45_thinking_on_and_off() {
    let p = on(K::Glm45);
    let out = "<think>The user wants 2+2.</think>\nThe answer is 4.";
    case(p, out, s("The user wants 2+2."), s("\nThe answer is 4."));
    // GLM-4.7 puts <think> in the prompt.
    case(p, "Easy.</think>4", s("Easy."), s("4"));
    case(p, "\n<think></think>\nHi", None, s("\nHi"));

    let kw = |v: serde_json::Value| K::Glm45.thinking_enabled(Some(&v));
    assert!(K::Glm45.thinking_enabled(None));
    assert!(!kw(json!({"enable_thinking": false})));
    assert!(!kw(json!({"thinking": false})));
    assert!(kw(json!({"thinking": true, "enable_thinking": false})));
    assert!(kw(json!({"enable_thinking": null})));
    assert!(!kw(json!({"enable_thinking": 0})));

    let off = ReasoningParser::new(K::Glm45, false);
    case(off, "Hello.", None, s("Hello."));
    case(off, "<think></think>Hi", None, s("<think></think>Hi"));
}

#[test]
fn reasoning_end_queries() {
    let p = on(K::Qwen3);
    assert!(!p.is_reasoning_end("thinking"));
    assert!(!p.is_reasoning_end("thinking</thi"));
    assert!(p.is_reasoning_end("thinking</think>"));
    assert!(!p.is_reasoning_end("x<tool_call>\n"));
    assert!(p.is_reasoning_end("x<tool_call>\n<function="));

    let mut st = on(K::DeepSeekR1).stream();
    let d = st.push("abc</th");
    assert_eq!((d.reasoning.as_str(), d.content.as_str()), ("abc", ""));
    assert!(!st.reasoning_ended());
    let d = st.push("ink>\n\nok");
    assert_eq!((d.reasoning.as_str(), d.content.as_str()), ("", "\n\nok"));
    assert!(st.reasoning_ended());
    let d = st.finish();
    assert_eq!(d, Default::default());
}

#[test]
fn partial_tags_are_held_back_then_released() {
    let p = on(K::Qwen3);
    let mut st = p.stream();
    assert_eq!(st.push("a <").reasoning, "a ");
    // "<b" cannot start a tag: released.
    assert_eq!(st.push("b").reasoning, "<b");
    assert_eq!(st.push("</think").reasoning, "");
    let d = st.finish();
    // At the end an unfinished tag is plain reasoning text.
    assert_eq!((d.reasoning.as_str(), d.content.as_str()), ("</think", ""));
}
