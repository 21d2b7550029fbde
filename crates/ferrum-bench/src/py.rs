//! Python-compatible text: `repr(float)` and `json.dump` output, so numbers printed by the
//! benchmark and the saved result files read exactly as vLLM's (a Python program) would.

use std::fmt::Write;

/// A JSON value that keeps object keys in insertion order (Python dicts do, and vLLM's
/// result files are read by scripts that sometimes rely on the order).
#[derive(Debug, Clone, PartialEq)]
pub enum PyJson {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PyJson>),
    Dict(Vec<(String, PyJson)>),
}

impl PyJson {
    /// `json.dumps(self)` with Python's defaults: `", "` / `": "` separators,
    /// `ensure_ascii=True`, and `NaN` / `Infinity` for non-finite floats.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            PyJson::Null => out.push_str("null"),
            PyJson::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            PyJson::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyJson::Float(f) => out.push_str(&json_float(*f)),
            PyJson::Str(s) => write_str(out, s),
            PyJson::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            PyJson::Dict(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_str(out, k);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Looks a key up in a `Dict` (None for other variants).
    pub fn get(&self, key: &str) -> Option<&PyJson> {
        match self {
            PyJson::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl From<f64> for PyJson {
    fn from(v: f64) -> Self {
        PyJson::Float(v)
    }
}
impl From<usize> for PyJson {
    fn from(v: usize) -> Self {
        PyJson::Int(v as i64)
    }
}
impl From<&str> for PyJson {
    fn from(v: &str) -> Self {
        PyJson::Str(v.to_string())
    }
}
impl From<String> for PyJson {
    fn from(v: String) -> Self {
        PyJson::Str(v)
    }
}
impl<T: Into<PyJson>> From<Option<T>> for PyJson {
    fn from(v: Option<T>) -> Self {
        v.map_or(PyJson::Null, Into::into)
    }
}
impl<T: Into<PyJson> + Clone> From<&[T]> for PyJson {
    fn from(v: &[T]) -> Self {
        PyJson::List(v.iter().cloned().map(Into::into).collect())
    }
}

fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        float_repr(f)
    }
}

fn write_str(out: &mut String, s: &str) {
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
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                // ensure_ascii: everything outside printable ASCII as UTF-16 escapes.
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional for decimal
/// exponents in [-4, 16), scientific (`1e-05`, `1.5e+16`) otherwise, and always with a
/// fractional part or exponent (`10.0`, not `10`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits Python uses.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            let zeros = "0".repeat((-point) as usize);
            format!("{sign}0.{zeros}{digits}")
        } else {
            let point = point as usize;
            if digits.len() <= point {
                let zeros = "0".repeat(point - digits.len());
                format!("{sign}{digits}{zeros}.0")
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.1, "0.1"),
            (10.0, "10.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn dumps_matches_python() {
        let v = PyJson::Dict(vec![
            ("a".into(), PyJson::Int(1)),
            (
                "b".into(),
                PyJson::List(vec![PyJson::Float(1.0), PyJson::Null]),
            ),
            ("c".into(), PyJson::Str("é\"\n😀".into())),
            ("d".into(), PyJson::Float(f64::INFINITY)),
        ]);
        assert_eq!(
            v.dumps(),
            r#"{"a": 1, "b": [1.0, null], "c": "\u00e9\"\n\ud83d\ude00", "d": Infinity}"#
        );
    }
}
