//! Streaming equals non-streaming on "tag soup": deterministic pseudo-random
//! texts built from tag fragments, partial tags and multi-byte characters,
//! each checked under every chunking of `common::chunkings`.

mod common;

use common::{check_reasoning_stream, check_tool_stream, weather_tools};
use ferrum_parsers::{ReasoningParser, ReasoningParserKind, ToolParserKind};

/// Tiny deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize % n
    }

    fn soup(&mut self, pieces: &[&str], max_len: usize) -> String {
        let n = 1 + self.below(max_len);
        (0..n).map(|_| pieces[self.below(pieces.len())]).collect()
    }
}

#[test]
fn reasoning_soup() {
    let pieces = [
        "<think>",
        "</think>",
        "<tool_call>",
        "<function=f>",
        "<function",
        "</",
        "<",
        "think>",
        " ",
        "\n",
        "a",
        "é",
        "🎉",
        "=",
    ];
    let mut rng = Lcg(1);
    for _ in 0..300 {
        let text = rng.soup(&pieces, 10);
        for kind in ReasoningParserKind::ALL {
            for thinking in [true, false] {
                check_reasoning_stream(&ReasoningParser::new(kind, thinking), &text);
            }
        }
    }
}

#[test]
fn glm_soup() {
    let pieces = [
        "<tool_call>",
        "</tool_call>",
        "<arg_key>",
        "</arg_key>",
        "<arg_value>",
        "</arg_value>",
        "<tool_",
        "</arg",
        "get_weather",
        "city",
        "days",
        "\n",
        " ",
        "\\n",
        "3",
        "True",
        "{'a': 1}",
        "北京",
        "x y",
        "<",
    ];
    let tools = weather_tools();
    let mut rng = Lcg(2);
    for _ in 0..300 {
        let text = rng.soup(&pieces, 16);
        check_tool_stream(ToolParserKind::Glm45, &tools, &text);
        check_tool_stream(ToolParserKind::Glm47, &tools, &text);
    }
}

/// Argument values made of Python/JSON literal fragments: typing must never
/// panic and must always produce JSON arguments.
#[test]
fn glm_value_soup() {
    let pieces = [
        "Tr", "True", "None", "€", "'", "\"", "\\", "0x", "0o", "_", "1", "3", ".", "-", "+", "(",
        ")", "[", "]", "{", "}", ",", ":", "#", "r'", "u'", "\\x4", "\\u00e9", "\\N", " ", "\n",
        "'''", "j", "é", "a",
    ];
    let mut rng = Lcg(4);
    for _ in 0..3000 {
        let value = rng.soup(&pieces, 12);
        let text =
            format!("<tool_call>f\n<arg_key>v</arg_key><arg_value>{value}</arg_value></tool_call>");
        let r = ToolParserKind::Glm45.extract(&text, &[]);
        let args: serde_json::Value =
            serde_json::from_str(&r.calls[0].arguments).expect("JSON arguments");
        assert!(args.get("v").is_some(), "{value:?}");
    }
}

#[test]
fn hermes_soup() {
    let pieces = [
        "<tool_call>",
        "</tool_call>",
        "<tool_",
        "\n",
        " ",
        "text",
        "é",
        "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
        "{\"name\": \"g\", \"arguments\": ",
        "{}",
        "}",
        "[1, 2.50]",
        "\"x\"",
        "<",
    ];
    let mut rng = Lcg(3);
    for _ in 0..400 {
        let text = rng.soup(&pieces, 10);
        check_tool_stream(ToolParserKind::Hermes, &[], &text);
    }
}
