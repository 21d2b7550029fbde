//! A JSON value model that behaves like Python's `json` module.
//!
//! vLLM builds the `arguments` string of a tool call with
//! `json.dumps(value, ensure_ascii=False)` after `json.loads` (hermes) or after
//! assembling a dict (GLM). To return byte-identical `arguments` we need what
//! `serde_json::Value` cannot give: insertion-ordered objects (a Python dict
//! keeps the model's key order; serde_json's default map sorts keys) and
//! integers of any size: `ferrum_pyfmt`'s `PyValue`, which also writes it
//! (Python's separators and float `repr`). What is here is the reading.

pub(crate) use ferrum_pyfmt::dict_insert;
use ferrum_pyfmt::{DumpOptions, PyValue};

/// A parsed value, as Python would hold it after `json.loads` /
/// `ast.literal_eval`; ints as canonical decimal digits (optional leading
/// `-`), any size.
pub(crate) type PyVal = PyValue<String>;

/// Nesting limit; Python raises `RecursionError` on deep input, which vLLM's
/// `except Exception` turns into "not a tool call" just like a syntax error.
const MAX_DEPTH: usize = 512;

/// Python's `json.loads(s)`: `None` when Python would raise.
///
/// Knowingly stricter than Python in one way: the non-standard literals
/// `NaN`, `Infinity` and `-Infinity` are rejected, because echoing them back
/// would put invalid JSON into the `arguments` string.
pub(crate) fn json_loads(s: &str) -> Option<PyVal> {
    let mut p = JsonParser { s, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    (p.i == s.len()).then_some(v)
}

struct JsonParser<'a> {
    s: &'a str,
    i: usize,
}

impl JsonParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    /// JSON whitespace is only these four bytes (Python's `WHITESPACE`).
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        let hit = self.s[self.i..].starts_with(lit);
        if hit {
            self.i += lit.len();
        }
        hit
    }

    fn value(&mut self, depth: usize) -> Option<PyVal> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(PyVal::Str),
            b'-' | b'0'..=b'9' => self.number(),
            _ if self.eat("null") => Some(PyVal::Null),
            _ if self.eat("true") => Some(PyVal::Bool(true)),
            _ if self.eat("false") => Some(PyVal::Bool(false)),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<PyVal> {
        self.i += 1;
        let mut d = Vec::new();
        self.ws();
        if self.eat("}") {
            return Some(PyVal::Dict(d));
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return None;
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(":") {
                return None;
            }
            self.ws();
            let v = self.value(depth + 1)?;
            dict_insert(&mut d, k, v);
            self.ws();
            if self.eat("}") {
                return Some(PyVal::Dict(d));
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<PyVal> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Some(PyVal::List(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat("]") {
                return Some(PyVal::List(items));
            }
            if !self.eat(",") {
                return None;
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`; a fraction or exponent makes
    /// it a Python float, otherwise an int.
    fn number(&mut self) -> Option<PyVal> {
        let start = self.i;
        self.eat("-");
        let int_start = self.i;
        if self.eat("0") {
        } else if self.digits() == 0 {
            return None;
        }
        let int_end = self.i;
        let mut is_float = false;
        let mark = self.i;
        if self.eat(".") {
            if self.digits() == 0 {
                // Python stops before the '.', leaving "extra data": an error.
                self.i = mark;
            } else {
                is_float = true;
            }
        }
        let mark = self.i;
        if self.eat("e") || self.eat("E") {
            if !self.eat("-") {
                self.eat("+");
            }
            if self.digits() == 0 {
                self.i = mark;
            } else {
                is_float = true;
            }
        }
        let lit = &self.s[start..self.i];
        if is_float {
            return lit.parse::<f64>().ok().map(PyVal::Float);
        }
        let digits = &self.s[int_start..int_end];
        // int("-0") == 0 in Python, so the sign of zero is dropped.
        let neg = start != int_start && digits != "0";
        Some(PyVal::Int(format!(
            "{}{digits}",
            if neg { "-" } else { "" }
        )))
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// A string starting at the opening quote. Raw control characters are an
    /// error, as with Python's default `strict=True`. A lone surrogate escape
    /// is rejected (Python would accept it, but the result cannot be UTF-8).
    fn string(&mut self) -> Option<String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.i..];
            let stop = rest.find(|c: char| c == '"' || c == '\\' || c < ' ')?;
            out.push_str(&rest[..stop]);
            self.i += stop;
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => self.i += 1,
                _ => return None,
            }
            let esc = self.peek()?;
            self.i += 1;
            let c = match esc {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return None,
            };
            out.push(c);
        }
    }

    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xd800..0xdc00).contains(&hi) && self.eat("\\u") {
            let lo = self.hex4()?;
            if (0xdc00..0xe000).contains(&lo) {
                return char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00));
            }
            return None;
        }
        char::from_u32(hi)
    }
}

/// `json.dumps(v, ensure_ascii=False)` with Python's default separators.
pub(crate) fn dumps(v: &PyVal) -> String {
    let opts = DumpOptions {
        ensure_ascii: false,
        ..DumpOptions::default()
    };
    ferrum_pyfmt::dumps(v, &opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> String {
        dumps(&json_loads(s).expect("valid"))
    }

    #[test]
    fn python_style_round_trip() {
        assert_eq!(
            rt(r#"{"b":1,"a":[true,null,"x"]}"#),
            r#"{"b": 1, "a": [true, null, "x"]}"#
        );
        assert_eq!(rt(r#"{"a":1,"a":2,"b":3}"#), r#"{"a": 2, "b": 3}"#);
        assert_eq!(rt(r#""\u00e9\/\n\u0001""#), "\"é/\\n\\u0001\"");
        assert_eq!(
            rt("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
        assert_eq!(rt("-0"), "0");
        assert_eq!(rt(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(rt("{}"), "{}");
        assert_eq!(rt(" [ ] "), "[]");
    }

    #[test]
    fn rejects_what_python_rejects() {
        for bad in [
            "", "{", "01", "1.", "[1,]", "{'a': 1}", "\"a\nb\"", "tru", "{} x", "NaN",
        ] {
            assert_eq!(json_loads(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn float_repr_matches_python() {
        // The digits themselves are ferrum_pyfmt's (tested there); these go through json_loads.
        assert_eq!(rt("1e2"), "100.0");
        assert_eq!(rt("2.50"), "2.5");
        assert_eq!(rt("1E16"), "1e+16");
        assert_eq!(rt("0.00001"), "1e-05");
        assert_eq!(rt("-0.0"), "-0.0");
    }
}
