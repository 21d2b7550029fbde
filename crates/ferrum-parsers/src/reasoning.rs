//! Reasoning parsers: split generated text into `reasoning_content` (the
//! `<think>…</think>` part) and `content`, like vLLM's `--reasoning-parser`
//! `qwen3`, `deepseek_r1` and `glm45`.
//!
//! All three share one rule set, implemented once by [`ReasoningStream`];
//! the non-streaming [`ReasoningParser::extract`] feeds the whole text through
//! the same machine, so streamed parts always concatenate to the
//! non-streaming result, whatever the chunking.
//!
//! With thinking on, the text before the first `</think>` is reasoning even
//! when no `<think>` was generated (newer chat templates put `<think>` in the
//! prompt; DeepSeek-R1 does too), and an output without `</think>` is all
//! reasoning (vLLM: "the output was truncated"). A generated `<think>` is
//! removed. Only `qwen3` also ends reasoning at a `<tool_call>` followed by
//! `<function=` (Qwen3.5 / Qwen3-Coder may call a tool from inside the think
//! block); that `<tool_call>` starts the content.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::text::{partial_overlap, py_isspace, py_lstrip};

const THINK_START: &str = "<think>";
const THINK_END: &str = "</think>";
const TOOL_CALL: &str = "<tool_call>";
const FUNCTION_OPEN: &str = "<function";

/// vLLM `--reasoning-parser` names supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasoningParserKind {
    /// `qwen3`: Qwen3 / Qwen3.5 (`enable_thinking`, default on).
    Qwen3,
    /// `deepseek_r1`: DeepSeek-R1 and its distills; always thinking.
    DeepSeekR1,
    /// `glm45`: GLM-4.5/4.6/4.7 (`thinking` / `enable_thinking`, default on).
    Glm45,
}

/// Unknown parser name; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownParser {
    /// What the parser is for ("reasoning" or "tool-call").
    pub what: &'static str,
    /// The name that was asked for.
    pub name: String,
    /// The accepted names.
    pub valid: &'static [&'static str],
}

impl fmt::Display for UnknownParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} parser '{}'; valid names: {}",
            self.what,
            self.name,
            self.valid.join(", ")
        )
    }
}

impl std::error::Error for UnknownParser {}

/// The kind in `all` whose vLLM name is `s`: `FromStr` for every parser-kind enum.
pub(crate) fn kind_by_name<K: Copy>(
    all: &[K],
    name: fn(K) -> &'static str,
    what: &'static str,
    valid: &'static [&'static str],
    s: &str,
) -> Result<K, UnknownParser> {
    all.iter()
        .copied()
        .find(|&k| name(k) == s)
        .ok_or_else(|| UnknownParser {
            what,
            name: s.to_string(),
            valid,
        })
}

impl ReasoningParserKind {
    /// Every kind, in the order of [`Self::NAMES`].
    pub const ALL: [Self; 3] = [Self::Qwen3, Self::DeepSeekR1, Self::Glm45];
    /// The vLLM names, as accepted by `FromStr`.
    pub const NAMES: &'static [&'static str] = &["qwen3", "deepseek_r1", "glm45"];

    /// The vLLM name of this parser.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qwen3 => "qwen3",
            Self::DeepSeekR1 => "deepseek_r1",
            Self::Glm45 => "glm45",
        }
    }

    /// Whether the model is thinking, read from the request's
    /// `chat_template_kwargs` the way vLLM's parser constructor reads it
    /// (Python truthiness; a JSON `null` counts as absent):
    /// - `qwen3`: `enable_thinking`, default true;
    /// - `glm45`: true unless `thinking` or `enable_thinking` is given, then
    ///   `bool(thinking) or bool(enable_thinking)`;
    /// - `deepseek_r1`: always true (the parser ignores the kwargs).
    pub fn thinking_enabled(self, chat_template_kwargs: Option<&Value>) -> bool {
        let get = |k: &str| {
            chat_template_kwargs
                .and_then(|m| m.get(k))
                .filter(|v| !v.is_null())
        };
        match self {
            Self::DeepSeekR1 => true,
            Self::Qwen3 => get("enable_thinking").is_none_or(truthy),
            Self::Glm45 => match (get("thinking"), get("enable_thinking")) {
                (None, None) => true,
                (a, b) => a.is_some_and(truthy) || b.is_some_and(truthy),
            },
        }
    }
}

/// Python's `bool(x)` for a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl fmt::Display for ReasoningParserKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ReasoningParserKind {
    type Err = UnknownParser;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        kind_by_name(&Self::ALL, Self::name, "reasoning", Self::NAMES, s)
    }
}

/// A reasoning parser configured for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasoningParser {
    kind: ReasoningParserKind,
    thinking: bool,
}

impl ReasoningParser {
    /// `thinking_enabled` says whether the prompt left the model thinking;
    /// get it from [`ReasoningParserKind::thinking_enabled`]. When false
    /// (`qwen3` / `glm45` with thinking switched off: the template then wrote
    /// an empty `<think></think>` into the prompt) every generated byte is
    /// content, as vLLM does (its identity parser for `glm45`; for `qwen3` its
    /// streaming path, which sees the prompt already ended reasoning).
    /// `deepseek_r1` ignores the flag, like vLLM.
    pub fn new(kind: ReasoningParserKind, thinking_enabled: bool) -> Self {
        let thinking = thinking_enabled || kind == ReasoningParserKind::DeepSeekR1;
        Self { kind, thinking }
    }

    /// The parser kind.
    pub fn kind(&self) -> ReasoningParserKind {
        self.kind
    }

    /// Whether output is parsed for reasoning at all (false: all content).
    pub fn thinking_enabled(&self) -> bool {
        self.thinking
    }

    /// Non-streaming split into `(reasoning_content, content)`, each `None`
    /// when empty.
    pub fn extract(&self, text: &str) -> (Option<String>, Option<String>) {
        let mut s = self.stream();
        let mut d = s.push(text);
        let tail = s.finish();
        d.reasoning.push_str(&tail.reasoning);
        d.content.push_str(&tail.content);
        let some = |s: String| (!s.is_empty()).then_some(s);
        (some(d.reasoning), some(d.content))
    }

    /// A fresh streaming state for one generation.
    pub fn stream(&self) -> ReasoningStream {
        ReasoningStream {
            reasoning: self.thinking,
            implicit_tool_end: self.kind == ReasoningParserKind::Qwen3,
            think_removed: false,
            leading: true,
            lead_ws: String::new(),
            pending: String::new(),
        }
    }

    /// Whether reasoning has ended in `text` (the output so far), so that a
    /// tool parser may run on what follows. Always true with thinking off.
    pub fn is_reasoning_end(&self, text: &str) -> bool {
        let mut s = self.stream();
        s.push(text);
        s.reasoning_ended()
    }
}

/// What one `push` / `finish` released. Either part may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReasoningDelta {
    /// Text for `delta.reasoning_content`.
    pub reasoning: String,
    /// Text for `delta.content` (feed this to the tool parser).
    pub content: String,
}

/// Streaming reasoning split. Text that might be the start of a tag is held
/// back until the next delta (or `finish`) decides it, so tags split across
/// deltas at any byte are handled.
#[derive(Debug, Clone)]
pub struct ReasoningStream {
    /// Still inside the reasoning part.
    reasoning: bool,
    /// qwen3: `<tool_call>` + `<function` ends reasoning.
    implicit_tool_end: bool,
    /// The first `<think>` has been removed (only that one is a tag).
    think_removed: bool,
    /// Nothing but whitespace seen so far: held in `lead_ws` because a
    /// following `<think>` drops it (vLLM drops the text before `<think>`).
    leading: bool,
    lead_ws: String,
    /// Received but not yet released.
    pending: String,
}

enum Found {
    End,
    Start,
    ToolCall,
}

impl ReasoningStream {
    /// Feed the next piece of generated text.
    pub fn push(&mut self, delta: &str) -> ReasoningDelta {
        self.pending.push_str(delta);
        self.drain(false)
    }

    /// End of generation: release everything held back.
    pub fn finish(&mut self) -> ReasoningDelta {
        self.drain(true)
    }

    /// Whether the reasoning part is over (content has begun).
    pub fn reasoning_ended(&self) -> bool {
        !self.reasoning
    }

    fn drain(&mut self, at_end: bool) -> ReasoningDelta {
        let mut out = ReasoningDelta::default();
        while self.reasoning {
            let Some((pos, found)) = self.next_tag() else {
                let hold = if at_end { 0 } else { self.hold_len() };
                let cut = self.pending.len() - hold;
                let text: String = self.pending.drain(..cut).collect();
                self.emit_reasoning(&text, &mut out);
                if at_end {
                    self.flush_lead(&mut out);
                }
                return out;
            };
            let before: String = self.pending.drain(..pos).collect();
            self.emit_reasoning(&before, &mut out);
            match found {
                Found::End => {
                    self.pending.drain(..THINK_END.len());
                    self.flush_lead(&mut out);
                    self.reasoning = false;
                }
                Found::Start => {
                    self.pending.drain(..THINK_START.len());
                    self.think_removed = true;
                    self.leading = false;
                    self.lead_ws.clear();
                }
                Found::ToolCall => match self.function_follows(at_end) {
                    Some(true) => {
                        // The tag stays: it is the start of the content.
                        self.flush_lead(&mut out);
                        self.reasoning = false;
                    }
                    Some(false) => {
                        let tag: String = self.pending.drain(..TOOL_CALL.len()).collect();
                        self.emit_reasoning(&tag, &mut out);
                    }
                    None => return out,
                },
            }
        }
        out.content.push_str(&self.pending);
        self.pending.clear();
        out
    }

    /// The earliest tag in `pending` that matters in the current state.
    fn next_tag(&self) -> Option<(usize, Found)> {
        let p = &self.pending;
        let mut best = p.find(THINK_END).map(|i| (i, Found::End));
        let mut consider = |cand: Option<usize>, f: Found| {
            if let Some(i) = cand
                && best.as_ref().is_none_or(|(b, _)| i < *b)
            {
                best = Some((i, f));
            }
        };
        if !self.think_removed {
            consider(p.find(THINK_START), Found::Start);
        }
        if self.implicit_tool_end {
            consider(p.find(TOOL_CALL), Found::ToolCall);
        }
        best
    }

    /// Bytes at the end of `pending` that could begin a tag that matters.
    fn hold_len(&self) -> usize {
        let p = &self.pending;
        let mut hold = partial_overlap(p, THINK_END);
        if !self.think_removed {
            hold = hold.max(partial_overlap(p, THINK_START));
        }
        if self.implicit_tool_end {
            hold = hold.max(partial_overlap(p, TOOL_CALL));
        }
        hold
    }

    /// For `pending` starting with `<tool_call>`: does optional whitespace,
    /// `<function`, then whitespace or `=` follow (vLLM's
    /// `re.match(r"<function[\s=]", after.lstrip())`)? `None`: undecided yet.
    fn function_follows(&self, at_end: bool) -> Option<bool> {
        let rest = py_lstrip(&self.pending[TOOL_CALL.len()..]);
        if let Some(after) = rest.strip_prefix(FUNCTION_OPEN) {
            return match after.chars().next() {
                Some(c) => Some(py_isspace(c) || c == '='),
                None if at_end => Some(false),
                None => None,
            };
        }
        if FUNCTION_OPEN.starts_with(rest) && !at_end {
            return None;
        }
        Some(false)
    }

    fn emit_reasoning(&mut self, text: &str, out: &mut ReasoningDelta) {
        if !self.leading {
            out.reasoning.push_str(text);
        } else if text.chars().all(py_isspace) {
            self.lead_ws.push_str(text);
        } else {
            self.flush_lead(out);
            out.reasoning.push_str(text);
        }
    }

    fn flush_lead(&mut self, out: &mut ReasoningDelta) {
        out.reasoning.push_str(&self.lead_ws);
        self.lead_ws.clear();
        self.leading = false;
    }
}
