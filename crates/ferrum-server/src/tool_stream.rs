//! Streams a forced tool call (`tool_choice` "required" or a named function) as OpenAI
//! `tool_calls` deltas while the constrained output arrives.
//!
//! Structured output forces the text into vLLM's shapes: a named tool's arguments object, or
//! for "required" a JSON array of `{"name", "parameters"}` objects. The named case passes the
//! text through as argument fragments. The array is read by a small character-level state
//! machine (depth, in-string, escape, and where we are in the current element) that keeps its
//! state across pushes, so a fragment may end anywhere (inside a key, a string, an escape) and
//! nothing is ever re-parsed.

use serde_json::{Value, json};

use crate::chat_parse::ForcedTool;

/// vLLM's random tool call id.
pub fn tool_call_id() -> String {
    format!("chatcmpl-tool-{}", uuid::Uuid::new_v4().simple())
}

/// One choice's forced tool call stream.
pub struct ForcedStream {
    kind: Kind,
}

enum Kind {
    /// The named function: `true` once its header delta went out.
    Named(String, bool),
    Required(ArrayScanner),
}

impl ForcedStream {
    pub fn new(forced: &ForcedTool) -> Self {
        let kind = match forced {
            ForcedTool::Named(name) => Kind::Named(name.clone(), false),
            ForcedTool::Required => Kind::Required(ArrayScanner::default()),
        };
        Self { kind }
    }

    /// The `tool_calls` delta entries for the next piece of generated text (possibly none).
    pub fn push(&mut self, text: &str) -> Vec<Value> {
        let mut out = Out::default();
        match &mut self.kind {
            // The header (id, type, name) rides on the first push, with whatever text it has:
            // as vLLM, a named call's arguments are the generated text itself.
            Kind::Named(name, started) if !*started => {
                *started = true;
                out.header(0, name.clone());
                out.args(0, text);
            }
            Kind::Named(..) => out.args(0, text),
            Kind::Required(s) => text.chars().for_each(|c| s.step(c, &mut out)),
        }
        out.into_json()
    }

    /// The reason the choice's last chunk reports. As vLLM and our non-streamed reply:
    /// "tool_calls" for "required" once the array is complete and the model stopped; a named
    /// call keeps the engine's reason ("stop", like OpenAI for a forced function). vLLM's
    /// stream says "tool_calls" for "required" even when `max_tokens` cut the array; we keep
    /// "length" there, so streamed and non-streamed replies agree and a cut call is visible.
    pub fn finish_reason(&self, reason: &'static str) -> &'static str {
        match &self.kind {
            Kind::Required(s) if reason == "stop" && s.done && s.calls > 0 => "tool_calls",
            _ => reason,
        }
    }
}

/// The deltas of one push: per call, its header (once) and its argument text, merged so one
/// push gives at most one entry per call.
#[derive(Default)]
struct Out(Vec<Piece>);

struct Piece {
    index: usize,
    name: Option<String>,
    args: String,
}

impl Out {
    fn header(&mut self, index: usize, name: String) {
        self.0.push(Piece {
            index,
            name: Some(name),
            args: String::new(),
        });
    }

    fn args(&mut self, index: usize, text: &str) {
        match self.0.last_mut() {
            Some(p) if p.index == index => p.args.push_str(text),
            _ if text.is_empty() => {}
            _ => self.0.push(Piece {
                index,
                name: None,
                args: text.to_string(),
            }),
        }
    }

    fn into_json(self) -> Vec<Value> {
        self.0
            .into_iter()
            .map(|p| match p.name {
                Some(name) => json!({
                    "index": p.index, "id": tool_call_id(), "type": "function",
                    "function": {"name": name, "arguments": p.args},
                }),
                None => json!({"index": p.index, "function": {"arguments": p.args}}),
            })
            .collect()
    }
}

/// Where the scanner is inside the current array element (an object at depth 2).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Slot {
    /// Expecting a key, `,` or `}`.
    #[default]
    Idle,
    Key,
    /// Expecting `:`.
    AfterKey,
    BeforeValue,
    Value(ValueKind),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ValueKind {
    Str,
    /// An object or array: ends when the depth is back to the element's.
    Container,
    /// A number, `true`, `false` or `null`: ends at the next delimiter.
    Scalar,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Field {
    #[default]
    Other,
    Name,
    Parameters,
}

/// Reads `[{"name": ..., "parameters": ...}, ...]` one character at a time. It trusts the
/// constraint for validity and only tracks what it needs: it never fails, and text it cannot
/// place is ignored.
#[derive(Default)]
struct ArrayScanner {
    depth: usize,
    in_str: bool,
    escaped: bool,
    slot: Slot,
    field: Field,
    /// The current key, raw (quotes and escapes included).
    key: String,
    /// The `name` value, raw.
    name_raw: String,
    /// `parameters` text read before the name was known (keys in the other order).
    pending: String,
    /// Whether the current element's header went out (its index is then `calls - 1`).
    called: bool,
    seen_name: bool,
    seen_params: bool,
    /// Headers sent so far: the next call's index.
    calls: usize,
    /// The closing `]` was read.
    done: bool,
}

impl ArrayScanner {
    fn step(&mut self, c: char, out: &mut Out) {
        if self.done {
            return;
        }
        if self.in_str {
            self.capture(c, out);
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_str = false;
                match self.slot {
                    Slot::Key => self.slot = Slot::AfterKey,
                    Slot::Value(ValueKind::Str) if self.depth == 2 => self.end_value(out),
                    _ => {}
                }
            }
            return;
        }
        let ws = matches!(c, ' ' | '\t' | '\n' | '\r');
        if self.slot == Slot::Value(ValueKind::Scalar) && (ws || matches!(c, ',' | '}' | ']')) {
            self.end_value(out);
        }
        match c {
            '"' => {
                self.in_str = true;
                match self.slot {
                    Slot::Idle if self.depth == 2 => {
                        self.key.clear();
                        self.slot = Slot::Key;
                    }
                    Slot::BeforeValue => self.slot = Slot::Value(ValueKind::Str),
                    _ => {}
                }
                self.capture(c, out);
            }
            '{' | '[' => {
                if self.slot == Slot::BeforeValue {
                    self.slot = Slot::Value(ValueKind::Container);
                }
                self.capture(c, out);
                self.depth += 1;
                if self.depth == 2 && c == '{' {
                    self.begin_element();
                }
            }
            '}' | ']' => {
                let in_value = self.slot == Slot::Value(ValueKind::Container);
                if in_value {
                    self.capture(c, out);
                }
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    2 if in_value => self.end_value(out),
                    // an element without a `name` never became a call (the schema requires one)
                    1 if c == '}' && !in_value => self.slot = Slot::Idle,
                    0 => self.done = true,
                    _ => {}
                }
            }
            ':' if self.slot == Slot::AfterKey => {
                self.field = match serde_json::from_str::<String>(&self.key).as_deref() {
                    Ok("name") if !self.seen_name => Field::Name,
                    Ok("parameters") if !self.seen_params => Field::Parameters,
                    _ => Field::Other,
                };
                self.seen_name |= self.field == Field::Name;
                self.seen_params |= self.field == Field::Parameters;
                self.slot = Slot::BeforeValue;
            }
            ',' if self.depth == 2 && !matches!(self.slot, Slot::Value(_)) => {
                self.slot = Slot::Idle
            }
            _ if ws && self.slot != Slot::Value(ValueKind::Container) => {}
            _ => {
                if self.slot == Slot::BeforeValue {
                    self.slot = Slot::Value(ValueKind::Scalar);
                }
                self.capture(c, out);
            }
        }
    }

    /// Keeps `c` where it belongs: the key being read, or the value of `name` / `parameters`.
    fn capture(&mut self, c: char, out: &mut Out) {
        match (self.slot, self.field) {
            (Slot::Key, _) => self.key.push(c),
            (Slot::Value(_), Field::Name) => self.name_raw.push(c),
            (Slot::Value(_), Field::Parameters) if self.called => {
                out.args(self.calls - 1, c.encode_utf8(&mut [0; 4]))
            }
            (Slot::Value(_), Field::Parameters) => self.pending.push(c),
            _ => {}
        }
    }

    fn begin_element(&mut self) {
        self.slot = Slot::Idle;
        self.field = Field::Other;
        self.name_raw.clear();
        self.pending.clear();
        self.called = false;
        self.seen_name = false;
        self.seen_params = false;
    }

    /// The value of the current key is complete. The header goes out as soon as the name is
    /// (before the parameters, in the usual key order), with any parameters text read before.
    fn end_value(&mut self, out: &mut Out) {
        if self.field == Field::Name && !self.called {
            let name = serde_json::from_str::<String>(&self.name_raw)
                .unwrap_or_else(|_| self.name_raw.clone());
            out.header(self.calls, name);
            out.args(self.calls, &std::mem::take(&mut self.pending));
            self.calls += 1;
            self.called = true;
        }
        self.slot = Slot::Idle;
        self.field = Field::Other;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's view: (id, name, arguments) per call, built from the deltas as OpenAI's
    /// clients do; asserts the shapes on the way (a header once per call, in index order).
    fn assemble(deltas: &[Value]) -> Vec<(String, String, String)> {
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for d in deltas {
            let i = d["index"].as_u64().unwrap() as usize;
            let args = d["function"]["arguments"].as_str().unwrap();
            if let Some(id) = d.get("id") {
                assert_eq!(i, calls.len(), "a new call takes the next index: {d}");
                let id = id.as_str().unwrap();
                let hex = id.strip_prefix("chatcmpl-tool-").unwrap();
                assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
                assert_eq!(d["type"], "function");
                let name = d["function"]["name"].as_str().unwrap();
                calls.push((id.into(), name.into(), args.into()));
            } else {
                assert!(
                    i + 1 == calls.len(),
                    "arguments only for the latest call: {d}"
                );
                assert!(d["function"].get("name").is_none() && !args.is_empty());
                calls[i].2.push_str(args);
            }
        }
        calls
    }

    fn run(forced: &ForcedTool, pieces: &[&str]) -> (Vec<(String, String)>, ForcedStream) {
        let mut s = ForcedStream::new(forced);
        let mut deltas = Vec::new();
        for p in pieces {
            let d = s.push(p);
            let same = d.windows(2).any(|w| w[0]["index"] == w[1]["index"]);
            assert!(!same, "one entry per call and push: {d:?}");
            deltas.extend(d);
        }
        let calls = assemble(&deltas).into_iter().map(|(_, n, a)| (n, a));
        (calls.collect(), s)
    }

    /// Splits at random char boundaries (empty pieces included), from a fixed xorshift seed.
    fn random_split(text: &str, mut seed: u64) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 9) as usize;
            let at = rest.char_indices().nth(n).map_or(rest.len(), |(i, _)| i);
            out.push(&rest[..at]);
            rest = &rest[at..];
        }
        out
    }

    fn every_char(text: &str) -> Vec<&str> {
        text.char_indices()
            .map(|(i, c)| &text[i..i + c.len_utf8()])
            .collect()
    }

    /// The calls the non-streamed reply makes of `text`, arguments parsed.
    fn whole(text: &str) -> Vec<(String, Value)> {
        let v: Vec<Value> = serde_json::from_str(text).unwrap();
        let call = |c: &Value| (c["name"].as_str().unwrap().into(), c["parameters"].clone());
        v.iter().map(call).collect()
    }

    const REQUIRED: &[&str] = &[
        r#"[{"name": "get_weather", "parameters": {"city": "Pa\"ris", "q": "a\\", "n": {"deep": [1, {"x": "}]},\""}], "e": []}}}, {"name":"get_time","parameters":{"zone":"UTC"}}]"#,
        "\n [\n\t{\n  \"name\" : \"f\\u0022\" ,\n  \"parameters\" : {\n   \"s\": \"é✓ 🦀 \\\\\\\"\"\n  }\n }\n]\n",
        r#"[{"parameters": {"a": [true, null, -1.5e3]}, "name": "late"}, {"name": "n\"q", "extra": {"name": "no", "parameters": 1}, "parameters": {}}]"#,
        r#"[{"name":"s","parameters":12.5e3},{"name":"t","parameters":null},{"name":"u","parameters":"str\\\"ing"},{"name":"v","parameters":[{"k":"]"}]}]"#,
    ];

    #[test]
    fn required_gives_the_same_calls_however_the_text_is_split() {
        for text in REQUIRED {
            let expected = whole(text);
            let (reference, s) = run(&ForcedTool::Required, &[text]);
            assert_eq!(s.finish_reason("stop"), "tool_calls");
            let parsed: Vec<(String, Value)> = reference
                .iter()
                .map(|(n, a)| (n.clone(), serde_json::from_str(a).unwrap()))
                .collect();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(run(&ForcedTool::Required, &every_char(text)).0, reference);
            for seed in 1..300 {
                let pieces = random_split(text, seed * 0x9e37_79b9_7f4a_7c15);
                assert_eq!(
                    run(&ForcedTool::Required, &pieces).0,
                    reference,
                    "{pieces:?}"
                );
            }
        }
    }

    #[test]
    fn required_arguments_are_the_parameters_text_as_generated() {
        let text = r#"[{"name": "f", "parameters": { "a" : [1,2] } }]"#;
        let (calls, _) = run(&ForcedTool::Required, &every_char(text));
        assert_eq!(calls, [("f".to_string(), r#"{ "a" : [1,2] }"#.to_string())]);
    }

    #[test]
    fn required_streams_the_header_then_argument_fragments() {
        let mut s = ForcedStream::new(&ForcedTool::Required);
        assert!(s.push("[{\"na").is_empty());
        let d = s.push("me\": \"f\", \"parameters\": {\"x\"");
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0]["function"],
            json!({"name": "f", "arguments": "{\"x\""})
        );
        let d = s.push(": 1}}, {\"name\": \"g\", \"parameters\": {");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], json!({"index": 0, "function": {"arguments": ": 1}"}}));
        assert_eq!(d[1]["index"], 1);
        assert_eq!(d[1]["function"], json!({"name": "g", "arguments": "{"}));
        assert_eq!(s.finish_reason("stop"), "stop", "the array is not complete");
        assert_eq!(
            s.push("}}]"),
            [json!({"index": 1, "function": {"arguments": "}"}})]
        );
        assert!(s.push(" trailing").is_empty());
        assert_eq!(s.finish_reason("stop"), "tool_calls");
        assert_eq!(s.finish_reason("length"), "length");
    }

    #[test]
    fn a_cut_array_keeps_what_was_streamed_and_its_reason() {
        let text = REQUIRED[0];
        let cut = &text[..text.find("get_time").unwrap()];
        let (calls, s) = run(&ForcedTool::Required, &every_char(cut));
        assert_eq!(calls.len(), 1);
        assert_eq!(s.finish_reason("length"), "length");
    }

    #[test]
    fn named_passes_the_text_through_after_a_header() {
        let named = ForcedTool::Named("get_weather".into());
        let text = "{\"city\": \"Pa\\\"ris\", \"n\": {\"a\": [1]}}";
        let mut s = ForcedStream::new(&named);
        let first = s.push("");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["index"], 0);
        assert_eq!(
            first[0]["function"],
            json!({"name": "get_weather", "arguments": ""})
        );
        assert!(s.push("").is_empty());
        assert_eq!(s.finish_reason("stop"), "stop");
        for pieces in [vec![text], every_char(text), random_split(text, 7)] {
            let (calls, _) = run(&named, &pieces);
            assert_eq!(calls, [("get_weather".to_string(), text.to_string())]);
        }
    }
}
