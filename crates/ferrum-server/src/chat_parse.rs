//! Splits a chat choice's generated text into reasoning, content and tool calls, as it
//! streams; the non-streaming reply runs the same code over the whole text.

use serde_json::{Map, Value};

use crate::error::ApiResult;
use crate::state::Shared;

/// One step's worth of a chat message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MessageDelta {
    pub reasoning: String,
    pub content: String,
    /// OpenAI `tool_calls` delta entries (`index`, `id`, `type`, `function`).
    pub tool_calls: Vec<Value>,
}

impl MessageDelta {
    pub fn append(&mut self, o: MessageDelta) {
        self.reasoning.push_str(&o.reasoning);
        self.content.push_str(&o.content);
        self.tool_calls.extend(o.tool_calls);
    }
}

/// What a request asks of the parsers, decided once per request.
#[derive(Clone, Debug, Default)]
pub struct ParseSetup {}

impl ParseSetup {
    pub fn from_request(_state: &Shared, _obj: &Map<String, Value>) -> ApiResult<Self> {
        Ok(Self {})
    }

    pub fn parser(&self) -> ChoiceParser {
        ChoiceParser {}
    }
}

pub struct ChoiceParser {}

impl ChoiceParser {
    pub fn push(&mut self, text: &str) -> MessageDelta {
        MessageDelta {
            content: text.to_string(),
            ..Default::default()
        }
    }

    pub fn finish(&mut self) -> MessageDelta {
        MessageDelta::default()
    }

    pub fn reasoning_enabled(&self) -> bool {
        false
    }

    /// `tool_calls` replaces `stop` when the choice called a tool.
    pub fn finish_reason(&self, reason: &'static str) -> &'static str {
        reason
    }
}

/// Refuses parser flags ferrum does not know, at start-up.
pub fn check_flags(
    _enable_auto_tool_choice: bool,
    tool_call_parser: Option<&str>,
    reasoning_parser: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(p) = tool_call_parser {
        anyhow::bail!("--tool-call-parser {p}: not supported yet");
    }
    if let Some(p) = reasoning_parser {
        anyhow::bail!("--reasoning-parser {p}: not supported yet");
    }
    Ok(())
}
