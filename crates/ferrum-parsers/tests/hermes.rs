//! `hermes` tool parser on canned Qwen-style outputs: exact results, and
//! every chunking streams to the same content and calls.

mod common;

use common::{calls, check_tool_stream, weather_tools};
use ferrum_parsers::{ToolDelta, ToolParserKind as K};

/// Qwen3's chat template asks for exactly this shape.
fn call(name: &str, args: &str) -> String {
    format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": {args}}}\n</tool_call>")
}

#[test]
fn names_parse() {
    assert_eq!("hermes".parse::<K>(), Ok(K::Hermes));
    assert_eq!("glm47".parse::<K>(), Ok(K::Glm47));
    let err = "qwen3_coder".parse::<K>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown tool-call parser 'qwen3_coder'; valid names: hermes, glm45, glm47"
    );
}

#[test]
fn plain_content() {
    let t = weather_tools();
    for text in [
        "The capital of France is Paris.",
        "a < b, <tool",
        "",
        "x <tool_call",
    ] {
        let r = check_tool_stream(K::Hermes, &t, text);
        assert_eq!(r.content.as_deref(), (!text.is_empty()).then_some(text));
        assert!(r.calls.is_empty());
    }
}

#[test]
fn one_call() {
    let text = call("get_weather", r#"{"city": "Paris", "unit": "celsius"}"#);
    let r = check_tool_stream(K::Hermes, &weather_tools(), &text);
    assert_eq!(r.content, None);
    assert_eq!(
        calls(&r),
        [("get_weather", r#"{"city": "Paris", "unit": "celsius"}"#)]
    );
}

#[test]
fn two_calls_with_content_before() {
    let text = format!(
        "Let me check both cities.\n{}\n{}",
        call("get_weather", r#"{"city": "Paris"}"#),
        call("get_weather", r#"{"city": "London", "days": 3}"#)
    );
    let r = check_tool_stream(K::Hermes, &weather_tools(), &text);
    assert_eq!(r.content.as_deref(), Some("Let me check both cities.\n"));
    assert_eq!(
        calls(&r),
        [
            ("get_weather", r#"{"city": "Paris"}"#),
            ("get_weather", r#"{"city": "London", "days": 3}"#)
        ]
    );
}

#[test]
fn arguments_are_reserialised_like_python_json_dumps() {
    // Compact JSON in, Python's separators out; key order kept; floats by repr.
    let text = r#"<tool_call>{"name":"f","arguments":{"b":1,"a":2.50,"c":"\u00e9\n","d":[1e2,null]}}</tool_call>"#;
    let r = check_tool_stream(K::Hermes, &[], text);
    assert_eq!(
        calls(&r),
        [("f", r#"{"b": 1, "a": 2.5, "c": "é\n", "d": [100.0, null]}"#)]
    );
    // A string "arguments" is dumped as a JSON string, like vLLM.
    let text = call("f", r#""{\"x\": 1}""#);
    let r = check_tool_stream(K::Hermes, &[], &text);
    assert_eq!(calls(&r), [("f", r#""{\"x\": 1}""#)]);
    // A name missing from `tools` still parses.
    let r = check_tool_stream(K::Hermes, &weather_tools(), &call("nope", "{}"));
    assert_eq!(calls(&r), [("nope", "{}")]);
}

#[test]
fn malformed_json_makes_everything_content() {
    let t = weather_tools();
    let bad = "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}\n</tool_call>";
    let r = check_tool_stream(K::Hermes, &t, bad);
    assert_eq!(r.content.as_deref(), Some(bad));
    assert!(r.calls.is_empty());
    // One bad call spoils the good one before it (vLLM's all-or-nothing).
    let mixed = format!(
        "{}\n<tool_call>\n{{\"name\": \"x\"}}\n</tool_call>",
        call("get_weather", "{}")
    );
    let r = check_tool_stream(K::Hermes, &t, &mixed);
    assert_eq!(r.content.as_deref(), Some(mixed.as_str()));
    assert!(r.calls.is_empty());
    for text in [
        "<tool_call></tool_call>",
        "<tool_call>[1]</tool_call>",
        "<tool_call>{\"name\": 1, \"arguments\": {}}</tool_call>",
    ] {
        let r = check_tool_stream(K::Hermes, &t, text);
        assert_eq!((r.content.as_deref(), r.calls.len()), (Some(text), 0));
    }
}

#[test]
fn unclosed_call_parses_if_json_complete() {
    let t = weather_tools();
    let r = check_tool_stream(
        K::Hermes,
        &t,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n",
    );
    assert_eq!(calls(&r), [("get_weather", r#"{"city": "Oslo"}"#)]);
    let cut = "Sure.<tool_call>\n{\"name\": \"get_weather\", \"argu";
    let r = check_tool_stream(K::Hermes, &t, cut);
    assert_eq!((r.content.as_deref(), r.calls.len()), (Some(cut), 0));
}

#[test]
fn text_between_and_after_calls_is_dropped() {
    let text = format!("{}\nand then\n{}\nDone.", call("a", "{}"), call("b", "[]"));
    let r = check_tool_stream(K::Hermes, &[], &text);
    assert_eq!(r.content, None);
    assert_eq!(calls(&r), [("a", "{}"), ("b", "[]")]);
}

#[test]
fn unicode_everywhere() {
    let text = format!(
        "天气如何？☀️\n{}",
        call("天气", r#"{"城市": "北京", "emoji": "🌧"}"#)
    );
    let r = check_tool_stream(K::Hermes, &[], &text);
    assert_eq!(r.content.as_deref(), Some("天气如何？☀️\n"));
    assert_eq!(calls(&r), [("天气", r#"{"城市": "北京", "emoji": "🌧"}"#)]);
}

#[test]
fn content_streams_before_calls_which_come_at_finish() {
    let mut s = K::Hermes.stream(&[]);
    assert_eq!(
        s.push("Let me check.<tool_"),
        [ToolDelta::Content("Let me check.".into())]
    );
    assert_eq!(
        s.push("call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"),
        []
    );
    let end = s.finish();
    assert!(
        matches!(&end[..], [ToolDelta::Start { index: 0, name, .. }, ToolDelta::Arguments { index: 0, fragment }]
        if name == "f" && fragment == "{}")
    );
}
