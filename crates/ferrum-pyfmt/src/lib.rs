//! Text exactly as Python writes it: `repr(float)` and `json.dumps(...)` with its options.
//!
//! ferrum echoes text that vLLM and transformers produce with Python's `json` module: chat
//! templates paste `tojson` output into prompts, tool-call `arguments` are
//! `json.dumps(..., ensure_ascii=False)`, and `bench serve` saves `json.dump` result files.
//! This crate is the one writer for all of them, byte for byte: Python's separators, no HTML
//! escaping, dict order kept, `ensure_ascii` as UTF-16 escapes, and floats as `repr`
//! (`1.0`, `1e-05`, `1.5e+20`).
//!
//! - [`float_repr`] / [`json_float`]: a float as `repr` / as `json.dumps` spells it.
//! - [`dumps`] with [`DumpOptions`]: any tree that implements [`JsonView`]
//!   (`serde_json::Value` and [`PyValue`] do).
//! - [`PyValue`]: a JSON value as Python holds it (dicts in insertion order), for values
//!   built or parsed in Rust and written back as Python would.

mod dump;
mod float;
mod value;

pub use dump::{DumpOptions, JsonView, Node, dumps};
pub use float::{float_repr, json_float};
pub use value::{PyValue, dict_insert};
