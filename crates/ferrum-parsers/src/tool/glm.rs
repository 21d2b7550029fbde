//! `glm45` / `glm47`: XML-ish calls
//! `<tool_call>NAME\n<arg_key>k</arg_key>\n<arg_value>v</arg_value>\n</tool_call>`
//! (glm47 writes no newlines).
//!
//! vLLM's non-streaming rules, reproduced here:
//! - only closed `<tool_call>…</tool_call>` regions count;
//! - glm45 takes the name up to the region's first `\n` (a region without one
//!   is skipped); glm47 takes it up to the first `<arg_key>`; both strip it;
//! - pairs are `<arg_key>K</arg_key>` + whitespace (glm47: also literal `\n`
//!   escapes) + `<arg_value>V</arg_value>`, found like Python's lazy regex;
//!   the key is stripped; a value whose schema type is `"string"` stays the
//!   raw text, anything else is `json.loads(V.strip())`, else
//!   `ast.literal_eval`, else the stripped text; a repeated key keeps its first
//!   place and last value;
//! - with calls, content is the text before the first `<tool_call>`, `None`
//!   if only whitespace; without calls the whole text is content.

use serde_json::Value;

use super::Event;
use crate::pyjson::{PyVal, dict_insert, dumps, json_loads};
use crate::pylit::literal_eval;
use crate::text::{find_from, partial_overlap, py_isspace, py_strip};

const START: &str = "<tool_call>";
const END: &str = "</tool_call>";
const KEY_START: &str = "<arg_key>";
const KEY_END: &str = "</arg_key>";
const VAL_START: &str = "<arg_value>";
const VAL_END: &str = "</arg_value>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    Glm45,
    Glm47,
}

#[derive(Debug, Clone)]
pub(super) struct GlmStream {
    variant: Variant,
    tools: Vec<Value>,
    text: String,
    /// Bytes of `text` already released as content.
    sent: usize,
    /// Where the first `<tool_call>` starts, once seen.
    first_tag: Option<usize>,
    /// Where to look for the next region.
    scan: usize,
    /// Calls found so far.
    calls: usize,
}

impl GlmStream {
    pub(super) fn new(variant: Variant, tools: &[Value]) -> Self {
        Self {
            variant,
            tools: tools.to_vec(),
            text: String::new(),
            sent: 0,
            first_tag: None,
            scan: 0,
            calls: 0,
        }
    }

    pub(super) fn push(&mut self, delta: &str, out: &mut Vec<Event>) {
        self.text.push_str(delta);
        if self.first_tag.is_none() {
            self.release_prefix(out);
        }
        if self.first_tag.is_some() {
            self.scan_regions(out);
        }
    }

    /// Content before the first `<tool_call>`. A whitespace-only prefix is
    /// held: vLLM drops it when calls follow, keeps it when none do.
    fn release_prefix(&mut self, out: &mut Vec<Event>) {
        let cut = match find_from(&self.text, START, self.sent) {
            Some(p) => {
                self.first_tag = Some(p);
                self.scan = p;
                p
            }
            None => self.text.len() - partial_overlap(&self.text, START),
        };
        let visible = self.sent > 0 || !self.text[..cut].chars().all(py_isspace);
        if visible {
            out.push(Event::Content(self.text[self.sent..cut].to_string()));
            self.sent = cut;
        }
    }

    fn scan_regions(&mut self, out: &mut Vec<Event>) {
        while let Some(s) = find_from(&self.text, START, self.scan) {
            let inner_start = s + START.len();
            let Some(e) = find_from(&self.text, END, inner_start) else {
                return;
            };
            self.scan = e + END.len();
            if let Some((name, args)) = self.parse_region(&self.text[inner_start..e]) {
                self.calls += 1;
                out.push(Event::Call(name, args));
            }
        }
    }

    pub(super) fn finish(&mut self, out: &mut Vec<Event>) {
        if self.calls == 0 {
            out.push(Event::Content(self.text[self.sent..].to_string()));
        }
        self.sent = self.text.len();
    }

    fn parse_region(&self, inner: &str) -> Option<(String, String)> {
        let (name, args) = match self.variant {
            Variant::Glm45 => {
                let nl = inner.find('\n')?;
                (&inner[..nl], &inner[nl + 1..])
            }
            Variant::Glm47 => match inner.find(KEY_START) {
                Some(k) => (&inner[..k], &inner[k..]),
                None => (inner, ""),
            },
        };
        let name = py_strip(name);
        let mut dict = Vec::new();
        for (key, value) in arg_pairs(args, self.variant) {
            let key = py_strip(key);
            let value = if is_string_type(&self.tools, name, key) {
                PyVal::Str(value.to_string())
            } else {
                deserialize(py_strip(value))
            };
            dict_insert(&mut dict, key.to_string(), value);
        }
        Some((name.to_string(), dumps(&PyVal::Dict(dict))))
    }
}

/// vLLM's `_deserialize`: JSON, then a Python literal, then the text itself.
fn deserialize(v: &str) -> PyVal {
    json_loads(v)
        .or_else(|| literal_eval(v))
        .unwrap_or_else(|| PyVal::Str(v.to_string()))
}

/// vLLM's `_is_string_type`: the first tool named `name` decides; its
/// `parameters.properties[key].type` must be exactly `"string"`.
fn is_string_type(tools: &[Value], name: &str, key: &str) -> bool {
    let Some(f) = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
    else {
        return false;
    };
    f.get("parameters")
        .and_then(|p| p.get("properties"))
        .and_then(|p| p.get(key))
        .and_then(|p| p.get("type"))
        .and_then(Value::as_str)
        == Some("string")
}

/// `findall` of `<arg_key>(.*?)</arg_key>SEP*<arg_value>(.*?)</arg_value>`
/// (DOTALL): a key that is not followed by SEP + `<arg_value>` extends lazily
/// to the next `</arg_key>`, exactly as the regex backtracks.
fn arg_pairs(args: &str, variant: Variant) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut pos = 0;
    'next: while let Some(k) = find_from(args, KEY_START, pos) {
        let key_start = k + KEY_START.len();
        let mut search = key_start;
        while let Some(ke) = find_from(args, KEY_END, search) {
            let v = skip_sep(args, ke + KEY_END.len(), variant);
            if args[v..].starts_with(VAL_START) {
                let val_start = v + VAL_START.len();
                // Without a closing tag here there is none after a longer key
                // or a later start either: no more matches.
                let Some(ve) = find_from(args, VAL_END, val_start) else {
                    break 'next;
                };
                out.push((&args[key_start..ke], &args[val_start..ve]));
                pos = ve + VAL_END.len();
                continue 'next;
            }
            search = ke + 1;
        }
        // No `</arg_key>` works for this start, nor for any later one.
        break;
    }
    out
}

/// Skip `\s*` (glm45) or `(?:\\n|\s)*` (glm47: the two characters `\` `n`
/// count too) from byte `i`.
fn skip_sep(s: &str, mut i: usize, variant: Variant) -> usize {
    loop {
        let rest = &s[i..];
        if variant == Variant::Glm47 && rest.starts_with("\\n") {
            i += 2;
        } else if let Some(c) = rest.chars().next().filter(|c| py_isspace(*c)) {
            i += c.len_utf8();
        } else {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_regex_backtracking() {
        let a = "<arg_key>a</arg_key>x<arg_key>b</arg_key> <arg_value>1</arg_value>";
        assert_eq!(
            arg_pairs(a, Variant::Glm45),
            vec![("a</arg_key>x<arg_key>b", "1")]
        );
        let b = "<arg_key>a</arg_key>\\n<arg_value>1</arg_value><arg_key>b</arg_key><arg_value>2";
        assert_eq!(arg_pairs(b, Variant::Glm47), vec![("a", "1")]);
        assert_eq!(arg_pairs(b, Variant::Glm45), vec![]);
    }
}
