//! `json.dumps` of any JSON-like tree.

use std::fmt::{self, Write};

use crate::float::json_float;

/// `json.dumps`' formatting options, meaning what they mean in Python. `Default` is Python's
/// default: `json.dumps(x)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpOptions {
    /// Escape everything outside printable ASCII (DEL included) as `\uXXXX` UTF-16 units.
    pub ensure_ascii: bool,
    /// `None`: one line. `Some(s)`: newline + `s` repeated per level (Python's `indent=n` is
    /// `n` spaces; `indent=0` still breaks lines).
    pub indent: Option<String>,
    /// (item separator, key separator); `None` is Python's default, which depends on
    /// `indent`: `(", ", ": ")` on one line, `(",", ": ")` indented.
    pub separators: Option<(String, String)>,
    /// Dict keys sorted (by code point, as Python compares `str`).
    pub sort_keys: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            ensure_ascii: true,
            indent: None,
            separators: None,
            sort_keys: false,
        }
    }
}

/// One node of a JSON-like tree, as [`dumps`] sees it.
pub enum Node<'a, V> {
    Null,
    Bool(bool),
    /// An int, written with its `Display` (decimal digits, `-` sign: Python's `int.__repr__`).
    Int(&'a dyn fmt::Display),
    Float(f64),
    Str(&'a str),
    List(&'a [V]),
    /// Entries in the dict's own order (`sort_keys` reorders them).
    Dict(Vec<(&'a str, &'a V)>),
}

/// A tree [`dumps`] can write.
pub trait JsonView: Sized {
    fn view(&self) -> Node<'_, Self>;
}

impl JsonView for serde_json::Value {
    fn view(&self) -> Node<'_, Self> {
        use serde_json::Value;
        match self {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) if n.is_i64() || n.is_u64() => Node::Int(n),
            Value::Number(n) => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Node::Str(s),
            Value::Array(items) => Node::List(items),
            Value::Object(map) => Node::Dict(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        }
    }
}

/// Python's `json.dumps(v, ensure_ascii=..., indent=..., separators=..., sort_keys=...)`.
pub fn dumps<V: JsonView>(v: &V, opts: &DumpOptions) -> String {
    let (item_sep, key_sep) = match &opts.separators {
        Some((i, k)) => (i.as_str(), k.as_str()),
        None if opts.indent.is_some() => (",", ": "),
        None => (", ", ": "),
    };
    let w = Writer {
        opts,
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    w.value(v, 0, &mut out);
    out
}

struct Writer<'a> {
    opts: &'a DumpOptions,
    item_sep: &'a str,
    key_sep: &'a str,
}

impl Writer<'_> {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(ind) = &self.opts.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    fn value<V: JsonView>(&self, v: &V, level: usize, out: &mut String) {
        match v.view() {
            Node::Null => out.push_str("null"),
            Node::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Node::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Node::Float(f) => out.push_str(&json_float(f)),
            Node::Str(s) => write_str(s, self.opts.ensure_ascii, out),
            Node::List([]) => out.push_str("[]"),
            Node::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.value(item, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            Node::Dict(entries) if entries.is_empty() => out.push_str("{}"),
            Node::Dict(mut entries) => {
                if self.opts.sort_keys {
                    // Stable, like Python's sort; UTF-8 byte order is code point order.
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(level + 1, out);
                    write_str(k, self.opts.ensure_ascii, out);
                    out.push_str(self.key_sep);
                    self.value(item, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
        }
    }
}

/// A JSON string literal as Python writes it: `"`, `\` and control characters escaped (short
/// forms where JSON has them, else `\u00xx`); with `ensure_ascii`, everything above `~` too,
/// as UTF-16 units. No HTML escaping.
fn write_str(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && c > '~' => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An insertion-ordered tree, independent of serde_json's map order.
    enum T {
        I(i64),
        F(f64),
        S(&'static str),
        L(Vec<T>),
        D(Vec<(&'static str, T)>),
    }

    impl JsonView for T {
        fn view(&self) -> Node<'_, Self> {
            match self {
                T::I(i) => Node::Int(i),
                T::F(f) => Node::Float(*f),
                T::S(s) => Node::Str(s),
                T::L(items) => Node::List(items),
                T::D(pairs) => Node::Dict(pairs.iter().map(|(k, v)| (*k, v)).collect()),
            }
        }
    }

    fn unicode() -> DumpOptions {
        DumpOptions {
            ensure_ascii: false,
            ..DumpOptions::default()
        }
    }

    #[test]
    fn default_options_are_python_json_dumps() {
        let v = T::D(vec![
            ("a", T::I(1)),
            ("b", T::L(vec![T::F(1.0), T::F(f64::INFINITY)])),
            ("c", T::S("é\"\n😀\u{7f}")),
        ]);
        assert_eq!(
            dumps(&v, &DumpOptions::default()),
            r#"{"a": 1, "b": [1.0, Infinity], "c": "\u00e9\"\n\ud83d\ude00\u007f"}"#
        );
    }

    #[test]
    fn unicode_kept_and_only_json_escapes() {
        let v = T::D(vec![
            (
                "b",
                T::L(vec![T::I(-3), T::S("x<y>&'\"\n\u{1}\u{8}\u{c}\t\r\\/")]),
            ),
            ("a", T::D(vec![])),
            ("c", T::L(vec![])),
            ("é", T::S("😀\u{7f}")),
        ]);
        assert_eq!(
            dumps(&v, &unicode()),
            "{\"b\": [-3, \"x<y>&'\\\"\\n\\u0001\\b\\f\\t\\r\\\\/\"], \"a\": {}, \"c\": [], \"é\": \"😀\u{7f}\"}"
        );
    }

    #[test]
    fn indent_separators_and_sort_keys() {
        let v = T::D(vec![
            (
                "b",
                T::L(vec![
                    T::I(1),
                    T::D(vec![("y", T::I(2)), ("x", T::L(vec![]))]),
                ]),
            ),
            ("a", T::D(vec![])),
        ]);
        let indented = DumpOptions {
            indent: Some("  ".into()),
            ..unicode()
        };
        assert_eq!(
            dumps(&v, &indented),
            "{\n  \"b\": [\n    1,\n    {\n      \"y\": 2,\n      \"x\": []\n    }\n  ],\n  \"a\": {}\n}"
        );
        let zero = DumpOptions {
            indent: Some(String::new()),
            ..unicode()
        };
        assert_eq!(dumps(&T::L(vec![T::I(1), T::I(2)]), &zero), "[\n1,\n2\n]");
        let sorted_compact = DumpOptions {
            separators: Some((",".into(), ":".into())),
            sort_keys: true,
            ..unicode()
        };
        assert_eq!(
            dumps(&v, &sorted_compact),
            r#"{"a":{},"b":[1,{"x":[],"y":2}]}"#
        );
    }

    #[test]
    fn serde_json_values() {
        // Keys already sorted: the same text with or without serde_json's `preserve_order`.
        let v = json!({"a": [1, 2.0, -3, 18446744073709551615u64, 1e-5], "b": null, "c": true, "d": "é"});
        assert_eq!(
            dumps(&v, &unicode()),
            r#"{"a": [1, 2.0, -3, 18446744073709551615, 1e-05], "b": null, "c": true, "d": "é"}"#
        );
        assert_eq!(
            dumps(&json!("é😀"), &DumpOptions::default()),
            r#""\u00e9\ud83d\ude00""#
        );
    }
}
