//! Helpers shared by the integration tests: streaming a text under many
//! chunkings and checking it agrees with the non-streaming parsers.
#![allow(dead_code)] // each test binary uses a different subset

use ferrum_parsers::{
    ExtractedToolCalls, ReasoningParser, ToolCall, ToolDelta, ToolParserKind, ToolStream,
};
use serde_json::Value;

/// Every way of cutting `text` we test: unsplit, cut once at every char
/// boundary, one char per chunk, and a few pseudo-random multi-cuts.
pub fn chunkings(text: &str) -> Vec<Vec<&str>> {
    let bounds: Vec<usize> = (0..=text.len())
        .filter(|&i| text.is_char_boundary(i))
        .collect();
    let mut out = vec![vec![text]];
    for &i in &bounds {
        out.push(vec![&text[..i], &text[i..]]);
    }
    out.push(text.split_inclusive(|_| true).collect());
    let mut seed = 0x2545_f491_u64;
    for _ in 0..50 {
        let mut cuts = vec![0, text.len()];
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            cuts.push(bounds[(seed >> 33) as usize % bounds.len()]);
        }
        cuts.sort();
        out.push(cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect());
    }
    out
}

/// Stream `chunks` through a reasoning parser; returns (reasoning, content).
pub fn stream_reasoning(p: &ReasoningParser, chunks: &[&str]) -> (String, String) {
    let mut s = p.stream();
    let (mut r, mut c) = (String::new(), String::new());
    for ch in chunks {
        let d = s.push(ch);
        r += &d.reasoning;
        c += &d.content;
    }
    let d = s.finish();
    (r + &d.reasoning, c + &d.content)
}

/// Assert every chunking of `text` streams to `extract`'s result.
pub fn check_reasoning_stream(p: &ReasoningParser, text: &str) {
    let (r, c) = p.extract(text);
    let want = (r.unwrap_or_default(), c.unwrap_or_default());
    for chunks in chunkings(text) {
        assert_eq!(stream_reasoning(p, &chunks), want, "chunks {chunks:?}");
    }
}

/// Collect streamed tool deltas into the non-streaming shape, checking the
/// protocol on the way (ids, indices in order, Start before Arguments).
pub fn collect_tool_deltas(deltas: Vec<ToolDelta>) -> ExtractedToolCalls {
    let mut content = String::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for d in deltas {
        match d {
            ToolDelta::Content(c) => {
                assert!(!c.is_empty(), "empty content delta");
                content += &c;
            }
            ToolDelta::Start { index, id, name } => {
                assert_eq!(index, calls.len());
                assert_valid_id(&id);
                calls.push(ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                });
            }
            ToolDelta::Arguments { index, fragment } => calls[index].arguments += &fragment,
        }
    }
    ExtractedToolCalls {
        content: (!content.is_empty()).then_some(content),
        calls,
    }
}

pub fn stream_tools(kind: ToolParserKind, tools: &[Value], chunks: &[&str]) -> ExtractedToolCalls {
    let mut s = ToolStream::new(kind, tools);
    let mut all = Vec::new();
    for ch in chunks {
        all.extend(s.push(ch));
    }
    all.extend(s.finish());
    let got = collect_tool_deltas(all);
    assert_eq!(s.calls_started(), got.calls.len());
    got
}

/// Names and arguments as JSON values (ids are random).
pub fn shape(x: &ExtractedToolCalls) -> (Option<String>, Vec<(String, Value)>) {
    let calls = x
        .calls
        .iter()
        .map(|c| {
            let v = serde_json::from_str(&c.arguments)
                .unwrap_or_else(|e| panic!("arguments {:?} not JSON: {e}", c.arguments));
            (c.name.clone(), v)
        })
        .collect();
    (x.content.clone(), calls)
}

/// Assert every chunking of `text` streams to `extract`'s content and calls
/// (same names, arguments equal as JSON values and as text).
pub fn check_tool_stream(kind: ToolParserKind, tools: &[Value], text: &str) -> ExtractedToolCalls {
    let want = kind.extract(text, tools);
    for c in &want.calls {
        assert_valid_id(&c.id);
    }
    for chunks in chunkings(text) {
        let got = stream_tools(kind, tools, &chunks);
        assert_eq!(shape(&got), shape(&want), "chunks {chunks:?}");
        let args = |x: &ExtractedToolCalls| {
            x.calls
                .iter()
                .map(|c| c.arguments.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(args(&got), args(&want), "chunks {chunks:?}");
    }
    want
}

pub fn assert_valid_id(id: &str) {
    let hex = id
        .strip_prefix("chatcmpl-tool-")
        .unwrap_or_else(|| panic!("bad id {id}"));
    assert_eq!(hex.len(), 32, "{id}");
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{id}"
    );
}

/// `(name, arguments)` pairs of a result, for exact assertions.
pub fn calls(x: &ExtractedToolCalls) -> Vec<(&str, &str)> {
    x.calls
        .iter()
        .map(|c| (c.name.as_str(), c.arguments.as_str()))
        .collect()
}

/// The OpenAI `tools` entries used by the GLM/hermes tests.
pub fn weather_tools() -> Vec<Value> {
    vec![
        serde_json::json!({"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            }, "required": ["city"]}
        }}),
        serde_json::json!({"type": "function", "function": {
            "name": "set_config",
            "parameters": {"type": "object", "properties": {
                "name": {"type": "string"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "enabled": {"type": "boolean"},
                "options": {"type": "object"},
                "tags": {"type": "array"},
                "code": {"type": "string"}
            }}
        }}),
    ]
}
