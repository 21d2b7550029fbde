//! Tool-call and reasoning parsers of model output, behaving like vLLM's
//! `--reasoning-parser` (`qwen3`, `deepseek_r1`, `glm45`) and
//! `--tool-call-parser` (`hermes`, `glm45`, `glm47`).
//!
//! A chat completion runs the reasoning parser first and the tool parser on
//! its content only:
//!
//! ```
//! use ferrum_parsers::{ReasoningParser, ReasoningParserKind, ToolParserKind};
//!
//! let out = "Need the weather.\n</think>\n\n<tool_call>\n\
//!            {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
//! let kind: ReasoningParserKind = "qwen3".parse().unwrap();
//! let rp = ReasoningParser::new(kind, kind.thinking_enabled(None));
//! let (reasoning, content) = rp.extract(out);
//! assert_eq!(reasoning.as_deref(), Some("Need the weather.\n"));
//!
//! let tools = [serde_json::json!({"type": "function", "function": {"name": "get_weather"}})];
//! let calls = ToolParserKind::Hermes.extract(content.as_deref().unwrap_or(""), &tools);
//! assert_eq!(calls.content.as_deref(), Some("\n\n"));
//! assert_eq!(calls.calls[0].name, "get_weather");
//! assert_eq!(calls.calls[0].arguments, r#"{"city": "Paris"}"#);
//! ```
//!
//! Streaming: push each decoded delta into a [`ReasoningStream`], pass the
//! `content` part of what it returns into a [`ToolStream`], and call both
//! `finish` methods (reasoning first, feeding its content on) at the end.
//! The concatenated streamed parts always equal the non-streaming result.

mod pyjson;
mod pylit;
mod reasoning;
mod text;
mod tool;

pub use reasoning::{
    ReasoningDelta, ReasoningParser, ReasoningParserKind, ReasoningStream, UnknownParser,
};
pub use tool::{
    ExtractedToolCalls, ToolCall, ToolDelta, ToolParserKind, ToolStream, make_tool_call_id,
};
