//! A JSON value as a Python program holds it.

use std::fmt;

use crate::dump::{DumpOptions, JsonView, Node, dumps};

/// A JSON value as Python holds it after `json.loads` or builds it as a dict: unlike
/// `serde_json::Value` (whose default map sorts keys, and whose numbers are bounded),
/// dicts keep insertion order and the int type `I` is the user's choice (`i64`, or decimal
/// digits in a `String` for ints of any size).
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue<I> {
    Null,
    Bool(bool),
    /// Written with `I`'s `Display`, which must be Python's `int.__repr__` (decimal digits,
    /// leading `-`).
    Int(I),
    Float(f64),
    Str(String),
    List(Vec<PyValue<I>>),
    /// Insertion-ordered; see [`dict_insert`] for Python's `d[key] = value`.
    Dict(Vec<(String, PyValue<I>)>),
}

/// `d[key] = value` with Python dict semantics: a repeated key keeps its first position and
/// takes the last value.
pub fn dict_insert<V>(d: &mut Vec<(String, V)>, key: String, value: V) {
    match d.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => d.push((key, value)),
    }
}

impl<I> PyValue<I> {
    /// Looks a key up in a `Dict` (None for other variants).
    pub fn get(&self, key: &str) -> Option<&PyValue<I>> {
        match self {
            PyValue::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<I: fmt::Display> PyValue<I> {
    /// `json.dumps(self)` with Python's defaults: `", "` / `": "` separators,
    /// `ensure_ascii=True`, and `NaN` / `Infinity` for non-finite floats.
    pub fn dumps(&self) -> String {
        dumps(self, &DumpOptions::default())
    }
}

impl<I: fmt::Display> JsonView for PyValue<I> {
    fn view(&self) -> Node<'_, Self> {
        match self {
            PyValue::Null => Node::Null,
            PyValue::Bool(b) => Node::Bool(*b),
            PyValue::Int(i) => Node::Int(i),
            PyValue::Float(f) => Node::Float(*f),
            PyValue::Str(s) => Node::Str(s),
            PyValue::List(items) => Node::List(items),
            PyValue::Dict(pairs) => {
                Node::Dict(pairs.iter().map(|(k, v)| (k.as_str(), v)).collect())
            }
        }
    }
}

impl<I> From<f64> for PyValue<I> {
    fn from(v: f64) -> Self {
        PyValue::Float(v)
    }
}
/// A count as a Python int.
impl From<usize> for PyValue<i64> {
    fn from(v: usize) -> Self {
        PyValue::Int(v as i64)
    }
}
impl<I> From<&str> for PyValue<I> {
    fn from(v: &str) -> Self {
        PyValue::Str(v.to_string())
    }
}
impl<I> From<String> for PyValue<I> {
    fn from(v: String) -> Self {
        PyValue::Str(v)
    }
}
/// `None` as `null`.
impl<I, T: Into<PyValue<I>>> From<Option<T>> for PyValue<I> {
    fn from(v: Option<T>) -> Self {
        v.map_or(PyValue::Null, Into::into)
    }
}
impl<I, T: Into<PyValue<I>> + Clone> From<&[T]> for PyValue<I> {
    fn from(v: &[T]) -> Self {
        PyValue::List(v.iter().cloned().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dict_insert_is_python_dict_assignment() {
        let mut d = Vec::new();
        dict_insert(&mut d, "a".into(), PyValue::<i64>::Int(1));
        dict_insert(&mut d, "b".into(), PyValue::Int(2));
        dict_insert(&mut d, "a".into(), PyValue::Int(3));
        let d = PyValue::Dict(d);
        assert_eq!(d.dumps(), r#"{"a": 3, "b": 2}"#);
        assert_eq!(d.get("b"), Some(&PyValue::Int(2)));
        assert_eq!(d.get("c"), None);
        assert_eq!(PyValue::<i64>::Null.get("a"), None);
    }

    #[test]
    fn ints_of_any_size_and_conversions() {
        let big = PyValue::List(vec![
            PyValue::Int("-123456789012345678901234567890".to_string()),
            PyValue::Float(f64::NAN),
        ]);
        assert_eq!(big.dumps(), "[-123456789012345678901234567890, NaN]");
        let v = PyValue::<i64>::Dict(vec![
            ("n".into(), 3usize.into()),
            ("f".into(), PyValue::from(&[0.5, 2.0][..])),
            ("s".into(), Some("é").into()),
            ("none".into(), None::<String>.into()),
        ]);
        assert_eq!(
            v.dumps(),
            r#"{"n": 3, "f": [0.5, 2.0], "s": "\u00e9", "none": null}"#
        );
    }
}
