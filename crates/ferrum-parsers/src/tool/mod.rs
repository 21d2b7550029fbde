//! Tool-call parsers: find the tool calls a model wrote into its (content)
//! text, like vLLM's `--tool-call-parser` `hermes`, `glm45` and `glm47`.
//!
//! Each parser is one streaming machine ([`ToolStream`]); the non-streaming
//! [`ToolParserKind::extract`] runs the whole text through it. A call is only
//! emitted once vLLM's non-streaming rules make it final, so streamed content
//! and calls always equal the non-streaming result, whatever the chunking:
//! - `glm45`/`glm47`: each call when its `</tool_call>` arrives (arguments in
//!   one fragment);
//! - `hermes`: all calls at [`ToolStream::finish`], because vLLM turns the
//!   *whole* output into content when any one call holds malformed JSON, which
//!   is only known at the end.
//!
//! Content is streamed as it arrives up to the first `<tool_call>` (minus a
//! possible partial tag). Text after the first `<tool_call>` is dropped when
//! calls were found and released as content by `finish` when none were.
//!
//! The server must decode with special tokens kept: `<tool_call>`,
//! `<arg_key>`, … are special tokens for some models (vLLM sets
//! `skip_special_tokens=False` for these parsers).

mod glm;
mod hermes;

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::reasoning::UnknownParser;

/// vLLM `--tool-call-parser` names supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolParserKind {
    /// `hermes`: `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`
    /// (Qwen2.5, Qwen3, Hermes).
    Hermes,
    /// `glm45`: `<tool_call>NAME\n<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n…</tool_call>`.
    Glm45,
    /// `glm47`: like `glm45` without the newlines
    /// (`<tool_call>NAME<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`).
    Glm47,
}

impl ToolParserKind {
    /// Every kind, in the order of [`Self::NAMES`].
    pub const ALL: [Self; 3] = [Self::Hermes, Self::Glm45, Self::Glm47];
    /// The vLLM names, as accepted by `FromStr`.
    pub const NAMES: &'static [&'static str] = &["hermes", "glm45", "glm47"];

    /// The vLLM name of this parser.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Glm45 => "glm45",
            Self::Glm47 => "glm47",
        }
    }

    /// Non-streaming extraction from `text` (the content part, after any
    /// reasoning parser). `tools` are the request's OpenAI `tools` entries
    /// (`{"type": "function", "function": {"name", "parameters"}}`); GLM uses
    /// them to keep `"type": "string"` argument values as raw strings.
    pub fn extract(self, text: &str, tools: &[Value]) -> ExtractedToolCalls {
        let mut s = self.stream(tools);
        let mut deltas = s.push(text);
        deltas.extend(s.finish());
        let mut content = String::new();
        let mut calls: Vec<ToolCall> = Vec::new();
        for d in deltas {
            match d {
                ToolDelta::Content(c) => content.push_str(&c),
                ToolDelta::Start { id, name, .. } => calls.push(ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                }),
                ToolDelta::Arguments { index, fragment } => {
                    calls[index].arguments.push_str(&fragment)
                }
            }
        }
        ExtractedToolCalls {
            content: (!content.is_empty()).then_some(content),
            calls,
        }
    }

    /// A fresh streaming state for one generation.
    pub fn stream(self, tools: &[Value]) -> ToolStream {
        ToolStream::new(self, tools)
    }
}

impl fmt::Display for ToolParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ToolParserKind {
    type Err = UnknownParser;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::reasoning::kind_by_name(&Self::ALL, Self::name, "tool-call", Self::NAMES, s)
    }
}

/// One parsed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// `chatcmpl-tool-<32 hex>`, as vLLM's `make_tool_call_id`.
    pub id: String,
    /// Function name as written by the model (not checked against `tools`).
    pub name: String,
    /// JSON text, formatted as Python's `json.dumps(ensure_ascii=False)`.
    pub arguments: String,
}

/// Result of non-streaming extraction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtractedToolCalls {
    /// Message content (`None` when empty).
    pub content: Option<String>,
    /// The calls, in output order; empty when none were found.
    pub calls: Vec<ToolCall>,
}

/// One streaming event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolDelta {
    /// Text for `delta.content`.
    Content(String),
    /// A new call: `delta.tool_calls[{index, id, type: "function",
    /// function: {name}}]`.
    Start {
        /// Position of the call in this response (0, 1, …).
        index: usize,
        /// Tool-call id.
        id: String,
        /// Function name.
        name: String,
    },
    /// More of a call's `function.arguments` JSON text.
    Arguments {
        /// Which call.
        index: usize,
        /// Text to append.
        fragment: String,
    },
}

/// A new vLLM-style tool-call id: `chatcmpl-tool-` + 32 lowercase hex digits.
pub fn make_tool_call_id() -> String {
    format!("chatcmpl-tool-{}", uuid::Uuid::new_v4().simple())
}

/// Streaming tool-call extraction for one generation.
#[derive(Debug, Clone)]
pub struct ToolStream {
    inner: Inner,
    calls: usize,
}

#[derive(Debug, Clone)]
enum Inner {
    Hermes(hermes::HermesStream),
    Glm(glm::GlmStream),
}

impl ToolStream {
    /// Same as [`ToolParserKind::stream`].
    pub fn new(kind: ToolParserKind, tools: &[Value]) -> Self {
        let inner = match kind {
            ToolParserKind::Hermes => Inner::Hermes(hermes::HermesStream::default()),
            ToolParserKind::Glm45 => Inner::Glm(glm::GlmStream::new(glm::Variant::Glm45, tools)),
            ToolParserKind::Glm47 => Inner::Glm(glm::GlmStream::new(glm::Variant::Glm47, tools)),
        };
        Self { inner, calls: 0 }
    }

    /// Feed the next piece of content text.
    pub fn push(&mut self, delta: &str) -> Vec<ToolDelta> {
        let mut out = Vec::new();
        match &mut self.inner {
            Inner::Hermes(h) => h.push(delta, &mut out),
            Inner::Glm(g) => g.push(delta, &mut out),
        }
        self.number(out)
    }

    /// End of generation: release held-back text and any pending calls. An
    /// unclosed final `<tool_call>` is handled as vLLM's non-streaming parser
    /// does: hermes still parses it (a call if its JSON is complete, else the
    /// whole output is content); GLM ignores it (so it stays content when no
    /// other call was found).
    pub fn finish(&mut self) -> Vec<ToolDelta> {
        let mut out = Vec::new();
        match &mut self.inner {
            Inner::Hermes(h) => h.finish(&mut out),
            Inner::Glm(g) => g.finish(&mut out),
        }
        self.number(out)
    }

    /// How many calls have been started so far (for `finish_reason`).
    pub fn calls_started(&self) -> usize {
        self.calls
    }

    /// Parsers report calls as `(name, arguments)`; give them indices and ids.
    fn number(&mut self, raw: Vec<Event>) -> Vec<ToolDelta> {
        let mut out = Vec::new();
        for ev in raw {
            match ev {
                Event::Content(c) if c.is_empty() => {}
                Event::Content(c) => out.push(ToolDelta::Content(c)),
                Event::Call(name, arguments) => {
                    let index = self.calls;
                    self.calls += 1;
                    out.push(ToolDelta::Start {
                        index,
                        id: make_tool_call_id(),
                        name,
                    });
                    out.push(ToolDelta::Arguments {
                        index,
                        fragment: arguments,
                    });
                }
            }
        }
        out
    }
}

/// What the format-specific machines report.
#[derive(Debug)]
enum Event {
    Content(String),
    Call(String, String),
}
