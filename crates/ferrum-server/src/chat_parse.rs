//! Splits a chat choice's generated text into reasoning, content and tool calls as it streams
//! (`--reasoning-parser`, `--tool-call-parser`); the non-streaming reply runs the same code
//! over the whole text, so both always agree.

use ferrum_parsers::{
    ReasoningParser, ReasoningParserKind, ReasoningStream, ToolDelta, ToolParserKind, ToolStream,
};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
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

    /// Streaming `tool_calls` deltas, or `None` when there are none.
    pub fn tool_call_deltas(&self) -> Option<Value> {
        (!self.tool_calls.is_empty()).then(|| Value::Array(self.tool_calls.clone()))
    }

    /// The complete calls of a non-streaming message (deltas merged by index).
    pub fn tool_calls_whole(&self) -> Option<Value> {
        let mut calls: Vec<Value> = Vec::new();
        for d in &self.tool_calls {
            let i = d["index"].as_u64().unwrap_or(0) as usize;
            if d.get("id").is_some() {
                calls.push(json!({"id": d["id"], "type": "function", "function": {"name": d["function"]["name"], "arguments": ""}}));
            }
            if let (Some(c), Some(frag)) = (calls.get_mut(i), d["function"]["arguments"].as_str()) {
                let whole = c["function"]["arguments"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
                    + frag;
                c["function"]["arguments"] = json!(whole);
            }
        }
        (!calls.is_empty()).then_some(Value::Array(calls))
    }
}

/// What a request asks of the parsers, decided once per request.
#[derive(Clone, Debug, Default)]
pub struct ParseSetup {
    reasoning: Option<ReasoningParser>,
    tools: Option<(ToolParserKind, Vec<Value>)>,
    /// `tool_choice: "required"` or a named function: the output is constrained to this JSON
    /// schema (vLLM's) and returned as tool calls.
    pub forced: Option<(ForcedTool, Value)>,
}

/// A tool call the request forces (structured output does the forcing).
#[derive(Clone, Debug, PartialEq)]
pub enum ForcedTool {
    /// The output is a JSON array of `{name, parameters}` objects.
    Required,
    /// The output is the named function's arguments.
    Named(String),
}

impl ForcedTool {
    /// The message's tool calls for `text` (vLLM's), or `None` when `text` is not what the
    /// schema promised (cut by `max_tokens`).
    pub fn tool_calls(&self, text: &str) -> Option<Value> {
        let id = crate::tool_stream::tool_call_id;
        match self {
            ForcedTool::Named(name) => Some(json!([{
                "id": id(),
                "type": "function",
                "function": {"name": name, "arguments": text},
            }])),
            ForcedTool::Required => {
                let calls: Vec<Value> = serde_json::from_str(text).ok()?;
                let mut out = Vec::new();
                for c in calls {
                    let name = c.get("name")?.as_str()?;
                    let params = c.get("parameters")?;
                    out.push(json!({
                        "id": id(),
                        "type": "function",
                        "function": {
                            "name": name,
                            "arguments": serde_json::to_string(params).ok()?,
                        },
                    }));
                }
                Some(Value::Array(out))
            }
        }
    }
}

/// Refuses parser flags ferrum does not know, at start-up (vLLM's rules).
pub fn check_flags(
    enable_auto_tool_choice: bool,
    tool_call_parser: Option<&str>,
    reasoning_parser: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(p) = tool_call_parser {
        p.parse::<ToolParserKind>()
            .map_err(|e| anyhow::anyhow!("--tool-call-parser: {e}"))?;
    }
    if enable_auto_tool_choice && tool_call_parser.is_none() {
        anyhow::bail!("--enable-auto-tool-choice requires --tool-call-parser");
    }
    if let Some(p) = reasoning_parser {
        p.parse::<ReasoningParserKind>()
            .map_err(|e| anyhow::anyhow!("--reasoning-parser: {e}"))?;
    }
    Ok(())
}

impl ParseSetup {
    pub fn from_request(state: &Shared, obj: &Map<String, Value>) -> ApiResult<Self> {
        let mut setup = Self::default();
        if let Some(name) = &state.opts.reasoning_parser {
            let kind: ReasoningParserKind = name
                .parse()
                .map_err(|e| ApiError::internal(format!("{e}")))?;
            let mut kwargs = state
                .opts
                .default_chat_template_kwargs
                .clone()
                .unwrap_or_else(|| json!({}));
            if let Some(Value::Object(m)) = obj.get("chat_template_kwargs") {
                for (k, v) in m {
                    kwargs[k] = v.clone();
                }
            }
            setup.reasoning = Some(ReasoningParser::new(
                kind,
                kind.thinking_enabled(Some(&kwargs)),
            ));
        }
        let tools = match obj.get("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(v) => {
                return Err(ApiError::field(
                    "tools",
                    format!("`tools` must be a list, got {v}"),
                ));
            }
        };
        for (i, t) in tools.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function")
                || t.pointer("/function/name")
                    .and_then(Value::as_str)
                    .is_none()
            {
                return Err(ApiError::field(
                    "tools",
                    format!(
                        "tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                    ),
                ));
            }
        }
        let choice = match obj.get("tool_choice") {
            None | Some(Value::Null) => {
                if tools.is_empty() {
                    "none"
                } else {
                    "auto"
                }
            }
            Some(Value::String(s)) if ["none", "auto", "required"].contains(&s.as_str()) => {
                s.as_str()
            }
            Some(v) if v.get("type").and_then(Value::as_str) == Some("function") => "named",
            Some(v) => {
                return Err(ApiError::field(
                    "tool_choice",
                    format!(
                        "`tool_choice` must be \"none\", \"auto\", \"required\" or a named function, got {v}"
                    ),
                ));
            }
        };
        match choice {
            "none" => {}
            "auto" => {
                let parser = state
                    .opts
                    .tool_call_parser
                    .as_deref()
                    .filter(|_| state.opts.enable_auto_tool_choice);
                let Some(parser) = parser else {
                    return Err(ApiError::field(
                        "tool_choice",
                        "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set",
                    ));
                };
                let kind = parser
                    .parse()
                    .map_err(|e| ApiError::internal(format!("{e}")))?;
                setup.tools = Some((kind, tools));
            }
            _ if tools.is_empty() => {
                return Err(ApiError::field(
                    "tool_choice",
                    "When using `tool_choice`, `tools` must be set.",
                ));
            }
            "required" => {
                let schema = crate::structured::required_tools_schema(&tools)?;
                setup.forced = Some((ForcedTool::Required, schema));
            }
            _ => {
                let name = obj
                    .get("tool_choice")
                    .and_then(|v| v.pointer("/function/name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::field(
                            "tool_choice",
                            "a named `tool_choice` needs `function.name`",
                        )
                    })?;
                let schema = crate::structured::named_tool_schema(&tools, name)?;
                setup.forced = Some((ForcedTool::Named(name.to_string()), schema));
            }
        }
        Ok(setup)
    }

    /// Tool tags must survive detokenization for the parser to see them (vLLM keeps special
    /// tokens whenever a tool parser runs).
    pub fn keeps_special_tokens(&self) -> bool {
        self.tools.is_some()
    }

    pub fn parser(&self) -> ChoiceParser {
        ChoiceParser {
            reasoning: self.reasoning.as_ref().map(ReasoningParser::stream),
            tools: self.tools.as_ref().map(|(k, t)| k.stream(t)),
        }
    }
}

pub struct ChoiceParser {
    reasoning: Option<ReasoningStream>,
    tools: Option<ToolStream>,
}

impl ChoiceParser {
    pub fn push(&mut self, text: &str) -> MessageDelta {
        let (reasoning, content) = match &mut self.reasoning {
            Some(r) => {
                let d = r.push(text);
                (d.reasoning, d.content)
            }
            None => (String::new(), text.to_string()),
        };
        let mut m = MessageDelta {
            reasoning,
            ..Default::default()
        };
        self.route(content, &mut m);
        m
    }

    pub fn finish(&mut self) -> MessageDelta {
        let mut m = MessageDelta::default();
        if let Some(r) = &mut self.reasoning {
            let d = r.finish();
            m.reasoning = d.reasoning;
            self.route(d.content, &mut m);
        }
        if let Some(t) = &mut self.tools {
            for d in t.finish() {
                apply(d, &mut m);
            }
        }
        m
    }

    fn route(&mut self, content: String, m: &mut MessageDelta) {
        match &mut self.tools {
            None => m.content.push_str(&content),
            Some(t) => {
                for d in t.push(&content) {
                    apply(d, m);
                }
            }
        }
    }

    pub fn reasoning_enabled(&self) -> bool {
        self.reasoning.is_some()
    }

    /// `tool_calls` replaces the finish reason once the choice called a tool (vLLM).
    pub fn finish_reason(&self, reason: &'static str) -> &'static str {
        match &self.tools {
            Some(t) if t.calls_started() > 0 => "tool_calls",
            _ => reason,
        }
    }
}

fn apply(d: ToolDelta, m: &mut MessageDelta) {
    match d {
        ToolDelta::Content(c) => m.content.push_str(&c),
        ToolDelta::Start { index, id, name } => m.tool_calls.push(json!({
            "index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}
        })),
        ToolDelta::Arguments { index, fragment } => {
            m.tool_calls.push(json!({"index": index, "function": {"arguments": fragment}}))
        }
    }
}
