//! Reasoning parser first, tool parser on its content: the order vLLM uses
//! for a chat completion, non-streaming and streaming.

mod common;

use common::{calls, chunkings, collect_tool_deltas, shape, weather_tools};
use ferrum_parsers::{
    ExtractedToolCalls, ReasoningParser, ReasoningParserKind as R, ToolParserKind as T,
};
use serde_json::Value;

/// Non-streaming: (reasoning, tool-parser result on the content).
fn full(
    rp: &ReasoningParser,
    tp: T,
    tools: &[Value],
    text: &str,
) -> (Option<String>, ExtractedToolCalls) {
    let (reasoning, content) = rp.extract(text);
    let calls = match content {
        Some(c) => tp.extract(&c, tools),
        None => ExtractedToolCalls::default(),
    };
    (reasoning, calls)
}

/// Streaming: every reasoning-content delta goes straight into the tool
/// stream; both are finished at the end.
fn streamed(
    rp: &ReasoningParser,
    tp: T,
    tools: &[Value],
    chunks: &[&str],
) -> (Option<String>, ExtractedToolCalls) {
    let mut rs = rp.stream();
    let mut ts = tp.stream(tools);
    let mut reasoning = String::new();
    let mut deltas = Vec::new();
    for ch in chunks {
        let d = rs.push(ch);
        reasoning += &d.reasoning;
        deltas.extend(ts.push(&d.content));
    }
    let d = rs.finish();
    reasoning += &d.reasoning;
    deltas.extend(ts.push(&d.content));
    deltas.extend(ts.finish());
    (
        (!reasoning.is_empty()).then_some(reasoning),
        collect_tool_deltas(deltas),
    )
}

fn check(rp: ReasoningParser, tp: T, text: &str) -> (Option<String>, ExtractedToolCalls) {
    let tools = weather_tools();
    let want = full(&rp, tp, &tools, text);
    for chunks in chunkings(text) {
        let got = streamed(&rp, tp, &tools, &chunks);
        assert_eq!(
            (&got.0, shape(&got.1)),
            (&want.0, shape(&want.1)),
            "chunks {chunks:?}"
        );
    }
    want
}

#[test]
fn qwen3_reasoning_then_hermes_call() {
    let text = concat!(
        "The user wants the weather in Paris. I should call get_weather.\n</think>\n\n",
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
    );
    let (reasoning, r) = check(ReasoningParser::new(R::Qwen3, true), T::Hermes, text);
    assert_eq!(
        reasoning.as_deref(),
        Some("The user wants the weather in Paris. I should call get_weather.\n")
    );
    // vLLM returns the "\n\n" between </think> and <tool_call> as content.
    assert_eq!(r.content.as_deref(), Some("\n\n"));
    assert_eq!(calls(&r), [("get_weather", r#"{"city": "Paris"}"#)]);
}

#[test]
fn qwen3_thinking_off_hermes_call() {
    let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\", \"days\": 2}}\n</tool_call>";
    let (reasoning, r) = check(ReasoningParser::new(R::Qwen3, false), T::Hermes, text);
    assert_eq!(reasoning, None);
    assert_eq!(
        (r.content.as_deref(), calls(&r)),
        (
            None,
            vec![("get_weather", r#"{"city": "Rome", "days": 2}"#)]
        )
    );
}

#[test]
fn a_call_inside_unfinished_reasoning_is_not_parsed() {
    // No </think>: everything is reasoning, so no tool parsing happens.
    let text = "Maybe <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>";
    let (reasoning, r) = check(ReasoningParser::new(R::Qwen3, true), T::Hermes, text);
    assert_eq!(reasoning.as_deref(), Some(text));
    assert_eq!(r, ExtractedToolCalls::default());
}

#[test]
fn glm45_reasoning_then_calls() {
    let text = concat!(
        "<think>Two cities, two calls.</think>\n",
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Beijing</arg_value>\n</tool_call>\n",
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Shanghai</arg_value>\n",
        "<arg_key>days</arg_key>\n<arg_value>5</arg_value>\n</tool_call>"
    );
    let (reasoning, r) = check(ReasoningParser::new(R::Glm45, true), T::Glm45, text);
    assert_eq!(reasoning.as_deref(), Some("Two cities, two calls."));
    assert_eq!(r.content, None);
    assert_eq!(
        calls(&r),
        [
            ("get_weather", r#"{"city": "Beijing"}"#),
            ("get_weather", r#"{"city": "Shanghai", "days": 5}"#)
        ]
    );
}

#[test]
fn glm47_reasoning_content_and_call() {
    // GLM-4.7 puts <think> in the prompt, so only </think> is generated.
    let text = "Look it up.</think>Checking now.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Tokyo</arg_value></tool_call>";
    let (reasoning, r) = check(ReasoningParser::new(R::Glm45, true), T::Glm47, text);
    assert_eq!(reasoning.as_deref(), Some("Look it up."));
    assert_eq!(r.content.as_deref(), Some("Checking now."));
    assert_eq!(calls(&r), [("get_weather", r#"{"city": "Tokyo"}"#)]);
}

#[test]
fn deepseek_r1_plain_answer() {
    let text = "2 + 2 = 4, simple.\n</think>\n\nThe answer is 4.";
    let (reasoning, r) = check(ReasoningParser::new(R::DeepSeekR1, true), T::Hermes, text);
    assert_eq!(reasoning.as_deref(), Some("2 + 2 = 4, simple.\n"));
    assert_eq!(
        (r.content.as_deref(), r.calls.len()),
        (Some("\n\nThe answer is 4."), 0)
    );
}
