//! A subset of Python's `ast.literal_eval`.
//!
//! vLLM's GLM tool parsers type a non-string argument value with
//! `json.loads`, then `ast.literal_eval`, then fall back to the raw text. GLM
//! models do write Python literals (`True`, `None`, `{'a': 1}`), so this
//! covers the literals whose result `json.dumps` can serialise: strings,
//! numbers, booleans, `None`, lists, tuples and dicts. Anything else (sets,
//! bytes, complex numbers, `\N{...}` escapes) returns `None`, so the
//! caller keeps the text as a string — where vLLM would raise from
//! `json.dumps` for sets/bytes/complex and turn the whole output into content.

use ferrum_pyfmt::json_float;

use crate::pyjson::{PyVal, dict_insert};

const MAX_DEPTH: usize = 256;

/// `ast.literal_eval(s)` for the supported subset; `None` if Python would
/// raise or produce a value outside the subset.
pub(crate) fn literal_eval(s: &str) -> Option<PyVal> {
    // literal_eval strips leading spaces and tabs before parsing.
    let s = s.trim_start_matches([' ', '\t']);
    let mut p = Lit { s, i: 0, depth: 0 };
    p.skip_blank_lines();
    let first = p.expr()?;
    // `1, 2` at top level is a tuple, as in Python.
    let v = if p.eat(",") {
        let mut items = vec![first];
        loop {
            p.skip_ws();
            if p.rest().is_empty() || p.rest().starts_with(['\n', '\r']) {
                break;
            }
            items.push(p.expr()?);
            if !p.eat(",") {
                break;
            }
        }
        PyVal::List(items)
    } else {
        first
    };
    p.skip_blank_lines();
    (p.i == s.len()).then_some(v)
}

struct Lit<'a> {
    s: &'a str,
    i: usize,
    /// Bracket nesting: inside brackets Python allows newlines between tokens.
    depth: usize,
}

impl Lit<'_> {
    fn rest(&self) -> &str {
        &self.s[self.i..]
    }

    fn skip_ws(&mut self) {
        loop {
            let r = self.rest();
            let n = r.len()
                - r.trim_start_matches(|c| {
                    matches!(c, ' ' | '\t' | '\x0c') || (self.depth > 0 && matches!(c, '\n' | '\r'))
                })
                .len();
            self.i += n;
            let r = self.rest();
            // A backslash-newline joins lines anywhere; a comment runs to the
            // end of its line.
            let step = if r.starts_with("\\\n") {
                2
            } else if r.starts_with('#') {
                r.find('\n').unwrap_or(r.len())
            } else {
                0
            };
            self.i += step;
            if n == 0 && step == 0 {
                return;
            }
        }
    }

    /// Blank and comment-only lines before or after the expression.
    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_ws();
            if !self.rest().starts_with(['\n', '\r']) {
                return;
            }
            self.i += 1;
        }
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        let hit = self.rest().starts_with(tok);
        if hit {
            self.i += tok.len();
        }
        hit
    }

    fn expr(&mut self) -> Option<PyVal> {
        self.skip_ws();
        // A sign is only allowed directly on a number literal (not `--1`,
        // not `-True`), as in `_convert_signed_num`.
        let neg = if self.eat("-") {
            Some(true)
        } else if self.eat("+") {
            Some(false)
        } else {
            None
        };
        if let Some(neg) = neg {
            // Parentheses vanish in the AST: `-(1)` is still a signed number.
            let mut parens = 0;
            while self.eat("(") {
                parens += 1;
                self.enter()?;
            }
            self.skip_ws();
            let num = self.number()?;
            for _ in 0..parens {
                if !self.eat(")") {
                    return None;
                }
                self.depth -= 1;
            }
            return match num {
                PyVal::Int(d) if neg && d != "0" => Some(PyVal::Int(format!("-{d}"))),
                PyVal::Float(f) if neg => Some(PyVal::Float(-f)),
                v => Some(v),
            };
        }
        let c = self.rest().chars().next()?;
        match c {
            '[' => self.list(),
            '(' => self.paren(),
            '{' => self.dict(),
            '0'..='9' | '.' => self.number(),
            _ => {
                if let Some(v) = self.keyword() {
                    return Some(v);
                }
                self.strings()
            }
        }
    }

    fn keyword(&mut self) -> Option<PyVal> {
        for (kw, v) in [
            ("True", PyVal::Bool(true)),
            ("False", PyVal::Bool(false)),
            ("None", PyVal::Null),
        ] {
            let Some(after) = self.rest().strip_prefix(kw) else {
                continue;
            };
            // `Truex` is a name, not the keyword.
            if !after.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                self.i += kw.len();
                return Some(v);
            }
        }
        None
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// `[...]`. Tuples become lists too, as `json.dumps` writes them.
    fn list(&mut self) -> Option<PyVal> {
        self.i += 1;
        self.enter()?;
        let items = self.rest_items("]", Vec::new())?;
        self.depth -= 1;
        Some(PyVal::List(items))
    }

    /// Comma-separated items up to `close` (the opener already consumed),
    /// trailing comma allowed.
    fn rest_items(&mut self, close: &str, mut items: Vec<PyVal>) -> Option<Vec<PyVal>> {
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.expr()?);
            if !self.eat(",") {
                return self.eat(close).then_some(items);
            }
        }
    }

    /// `(x)` is just `x`; `()` and `(x,)` are tuples.
    fn paren(&mut self) -> Option<PyVal> {
        self.i += 1;
        self.enter()?;
        let v = if self.eat(")") {
            PyVal::List(Vec::new())
        } else {
            let first = self.expr()?;
            if self.eat(")") {
                first
            } else if self.eat(",") {
                PyVal::List(self.rest_items(")", vec![first])?)
            } else {
                return None;
            }
        };
        self.depth -= 1;
        Some(v)
    }

    fn dict(&mut self) -> Option<PyVal> {
        self.i += 1;
        self.enter()?;
        let mut d = Vec::new();
        loop {
            if self.eat("}") {
                break;
            }
            let k = dict_key(self.expr()?)?;
            if !self.eat(":") {
                // `{1, 2}` is a set: not JSON-serialisable.
                return None;
            }
            let v = self.expr()?;
            dict_insert(&mut d, k, v);
            if !self.eat(",") {
                if !self.eat("}") {
                    return None;
                }
                break;
            }
        }
        self.depth -= 1;
        Some(PyVal::Dict(d))
    }

    fn number(&mut self) -> Option<PyVal> {
        let r = self.rest();
        let len = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(r.len());
        // Extend over an exponent sign: "1e-5".
        let mut end = len;
        let lower = r[..end].to_ascii_lowercase();
        if (lower.ends_with('e') && !lower.starts_with("0x")) && r[end..].starts_with(['+', '-']) {
            let more = r[end + 1..]
                .find(|c: char| !(c.is_ascii_digit() || c == '_'))
                .unwrap_or(r.len() - end - 1);
            end += 1 + more;
        }
        let lit = &r[..end];
        let v = parse_number(lit)?;
        self.i += end;
        Some(v)
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> Option<PyVal> {
        let mut out = self.string()?;
        loop {
            let save = self.i;
            self.skip_ws();
            match self.string() {
                Some(more) => out.push_str(&more),
                None => {
                    self.i = save;
                    return Some(PyVal::Str(out));
                }
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let src = self.s; // copy the &str so `r` does not borrow self
        let r = &src[self.i..];
        let q = r.find(['\'', '"'])?;
        let prefix = r[..q].to_ascii_lowercase();
        let raw = match prefix.as_str() {
            "" | "u" => false,
            "r" => true,
            _ => return None, // b'', f'' and friends
        };
        let quote = &r[q..q + 1];
        let triple = quote.repeat(3);
        let delim = if r[q..].starts_with(&triple) {
            triple.as_str()
        } else {
            quote
        };
        let body_start = q + delim.len();
        let mut j = body_start;
        loop {
            if j >= r.len() {
                return None;
            }
            if r[j..].starts_with(delim) {
                break;
            }
            // Step by whole chars so every index stays a char boundary.
            let c = r[j..].chars().next()?;
            match c {
                '\\' => j += 1 + r[j + 1..].chars().next()?.len_utf8(),
                '\n' if delim.len() == 1 => return None,
                _ => j += c.len_utf8(),
            }
        }
        let body = r.get(body_start..j)?;
        self.i += j + delim.len();
        if raw {
            Some(body.to_string())
        } else {
            unescape(body)
        }
    }
}

/// Keys as `json.dumps` converts them: str as-is, numbers by `str`/`repr`,
/// `True`/`False`/`None` as `true`/`false`/`null`.
fn dict_key(v: PyVal) -> Option<String> {
    Some(match v {
        PyVal::Str(s) | PyVal::Int(s) => s,
        PyVal::Float(f) => json_float(f),
        PyVal::Bool(b) => b.to_string(),
        PyVal::Null => "null".into(),
        PyVal::List(_) | PyVal::Dict(_) => return None,
    })
}

/// Python numeric literal (no sign): ints in any base with `_` separators,
/// floats; imaginary literals are rejected.
fn parse_number(lit: &str) -> Option<PyVal> {
    let lower = lit.to_ascii_lowercase();
    if !lower.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let prefixed = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(pre, radix)| Some((lower.strip_prefix(pre)?, radix)));
    // `_` may only sit between two digits (or right after a base prefix).
    let b = lower.as_bytes();
    for (k, _) in lower.match_indices('_') {
        let prev_ok = k > 0
            && (b[k - 1].is_ascii_hexdigit() && (prefixed.is_some() || b[k - 1].is_ascii_digit())
                || (prefixed.is_some() && k == 2));
        let next_ok = b.get(k + 1).is_some_and(|n| {
            if prefixed.is_some() {
                n.is_ascii_hexdigit()
            } else {
                n.is_ascii_digit()
            }
        });
        if !prev_ok || !next_ok {
            return None;
        }
    }
    if let Some((digits, radix)) = prefixed {
        let n = u128::from_str_radix(&digits.replace('_', ""), radix).ok()?;
        return Some(PyVal::Int(n.to_string()));
    }
    let plain = lower.replace('_', "");
    if plain.bytes().all(|b| b.is_ascii_digit()) {
        // "007" is a syntax error; "000" is fine.
        if plain.len() > 1 && plain.starts_with('0') && plain.bytes().any(|b| b != b'0') {
            return None;
        }
        let t = plain.trim_start_matches('0');
        return Some(PyVal::Int(if t.is_empty() { "0".into() } else { t.into() }));
    }
    let ok_chars = plain
        .bytes()
        .all(|b| b.is_ascii_digit() || b"e.+-".contains(&b));
    if !ok_chars || !plain.contains(|c: char| c.is_ascii_digit()) || plain.starts_with('e') {
        return None;
    }
    plain.parse::<f64>().ok().map(PyVal::Float)
}

/// Escapes of a non-raw Python string. Unknown escapes keep the backslash.
fn unescape(body: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            '\n' => Some(None),
            '\\' => Some(Some('\\')),
            '\'' => Some(Some('\'')),
            '"' => Some(Some('"')),
            'a' => Some(Some('\u{7}')),
            'b' => Some(Some('\u{8}')),
            'f' => Some(Some('\u{c}')),
            'n' => Some(Some('\n')),
            'r' => Some(Some('\r')),
            't' => Some(Some('\t')),
            'v' => Some(Some('\u{b}')),
            _ => None,
        };
        if let Some(ch) = simple {
            out.extend(ch);
            continue;
        }
        let (count, radix) = match e {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (3, 8),
            'N' => return None,
            _ => {
                out.push('\\');
                out.push(e);
                continue;
            }
        };
        let mut digits = String::new();
        if radix == 8 {
            digits.push(e);
        }
        while digits.len() < count {
            match chars.peek() {
                Some(&d) if d.is_digit(radix) => {
                    digits.push(d);
                    chars.next();
                }
                _ if radix == 8 => break,
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&digits, radix).ok()?)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyjson::dumps;

    fn ev(s: &str) -> Option<String> {
        literal_eval(s).map(|v| dumps(&v))
    }

    #[test]
    fn python_literals() {
        assert_eq!(ev("True").as_deref(), Some("true"));
        assert_eq!(ev("None").as_deref(), Some("null"));
        assert_eq!(
            ev("{'a': 1, 'b': [True, None]}").as_deref(),
            Some(r#"{"a": 1, "b": [true, null]}"#)
        );
        assert_eq!(ev("(1, 2,)").as_deref(), Some("[1, 2]"));
        assert_eq!(ev("(1)").as_deref(), Some("1"));
        assert_eq!(ev("()").as_deref(), Some("[]"));
        assert_eq!(ev("[1, 2,]").as_deref(), Some("[1, 2]"));
        assert_eq!(ev("'it\\'s' \"x\"").as_deref(), Some("\"it'sx\""));
        assert_eq!(ev("-1_000").as_deref(), Some("-1000"));
        assert_eq!(ev("0x1F").as_deref(), Some("31"));
        assert_eq!(ev("1e-5").as_deref(), Some("1e-05"));
        assert_eq!(ev(".5").as_deref(), Some("0.5"));
        assert_eq!(ev("3,").as_deref(), Some("[3]"));
        assert_eq!(ev("#c\n9 # d").as_deref(), Some("9"));
        assert_eq!(ev("-(1)").as_deref(), Some("-1"));
        assert_eq!(
            ev("{1: 'a', 2.5: 'b', None: 'c'}").as_deref(),
            Some(r#"{"1": "a", "2.5": "b", "null": "c"}"#)
        );
        assert_eq!(ev("r'a\\d'").as_deref(), Some(r#""a\\d""#));
        assert_eq!(ev("'''a\nb'''").as_deref(), Some(r#""a\nb""#));
        assert_eq!(ev("[\n 1,\n 2\n]").as_deref(), Some("[1, 2]"));
    }

    #[test]
    fn not_literals() {
        for bad in [
            "-", "+", "1e_9", "1_", "0x_", "abc", "Truex", "Tr€", "Tru", "'€", "€", "--1", "-True",
            "{1, 2}", "b'x'", "1j", "1 + 2", "007", "'a", "[1", "1\n2", "x = 1",
        ] {
            assert_eq!(ev(bad), None, "{bad:?}");
        }
    }
}
