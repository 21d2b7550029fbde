//! `hermes`: `<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>`,
//! the format Qwen2.5/Qwen3 chat templates ask for.
//!
//! vLLM's non-streaming rules, reproduced here:
//! - no `<tool_call>`: everything is content;
//! - otherwise every `<tool_call>…</tool_call>` region, plus a final unclosed
//!   `<tool_call>…` region running to the end, must hold a JSON object with a
//!   string `"name"` and an `"arguments"` key (any JSON value, re-serialised
//!   with `json.dumps`); content is the text before the first `<tool_call>`
//!   and text between or after calls is dropped;
//! - if any region fails, there are no calls and the whole text is content.

use super::Event;
use crate::pyjson::{PyVal, dumps, json_loads};
use crate::text::{find_from, partial_overlap};

const START: &str = "<tool_call>";
const END: &str = "</tool_call>";

#[derive(Debug, Clone, Default)]
pub(super) struct HermesStream {
    text: String,
    /// Bytes of `text` already released as content.
    sent: usize,
    /// Where the first `<tool_call>` starts, once seen.
    first_tag: Option<usize>,
}

impl HermesStream {
    pub(super) fn push(&mut self, delta: &str, out: &mut Vec<Event>) {
        self.text.push_str(delta);
        if self.first_tag.is_some() {
            return; // calls are decided at finish
        }
        // No tag can start before `sent`: we never release a partial tag.
        let cut = match find_from(&self.text, START, self.sent) {
            Some(p) => {
                self.first_tag = Some(p);
                p
            }
            None => self.text.len() - partial_overlap(&self.text, START),
        };
        out.push(Event::Content(self.text[self.sent..cut].to_string()));
        self.sent = cut;
    }

    pub(super) fn finish(&mut self, out: &mut Vec<Event>) {
        let tail = &self.text[self.sent..];
        match self.first_tag.and_then(|_| parse_calls(tail)) {
            Some(calls) => out.extend(calls.into_iter().map(|(n, a)| Event::Call(n, a))),
            None => out.push(Event::Content(tail.to_string())),
        }
        self.sent = self.text.len();
    }
}

/// Parse every region of `tail` (which starts with `<tool_call>`); `None` if
/// any region is not a valid call.
fn parse_calls(tail: &str) -> Option<Vec<(String, String)>> {
    let mut calls = Vec::new();
    let mut pos = 0;
    while let Some(s) = find_from(tail, START, pos) {
        let body_start = s + START.len();
        let body = match find_from(tail, END, body_start) {
            Some(e) => {
                pos = e + END.len();
                &tail[body_start..e]
            }
            None => {
                pos = tail.len();
                &tail[body_start..]
            }
        };
        calls.push(parse_one(body)?);
    }
    Some(calls)
}

fn parse_one(body: &str) -> Option<(String, String)> {
    let PyVal::Dict(fields) = json_loads(body)? else {
        return None;
    };
    let field = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let PyVal::Str(name) = field("name")? else {
        return None;
    };
    Some((name.clone(), dumps(field("arguments")?)))
}
