//! Python-compatible text: `repr(float)` and `json.dump` output, so numbers printed by the
//! benchmark and the saved result files read exactly as vLLM's (a Python program) would.
//! The value model and the formatting are `ferrum_pyfmt`'s.

pub use ferrum_pyfmt::float_repr;

/// A JSON value that keeps object keys in insertion order (Python dicts do, and vLLM's
/// result files are read by scripts that sometimes rely on the order). `dumps()` is
/// `json.dumps` with Python's defaults (`ensure_ascii=True`, `NaN` / `Infinity`).
pub type PyJson = ferrum_pyfmt::PyValue<i64>;

#[cfg(test)]
mod tests {
    use super::*;

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
