//! vLLM's `structural_tag` (xgrammar's legacy `structures` + `triggers` form), compiled to a Lark
//! grammar for llguidance (whose Rust crate has no structural-tag helper).
//!
//! Meaning: free text until a trigger appears; from the trigger on, the text must complete one
//! structure whose `begin` starts with that trigger (the rest of `begin`, JSON valid against the
//! structure's schema, then `end`); after `end`, free text again, any number of times. The output
//! may end anywhere outside a tag.
//!
//! The grammar, for triggers `<function=` and `<tool>` (the shape llguidance's docs give under
//! "Tool calling", plus a trigger-free tail):
//!
//! ```text
//! start: tag* TEXT
//! tag: tag_0 | tag_1 | tag_2
//! ANY: /(?s:.*)/
//! TRIGGER: "<function=" | "<tool>"
//! TEXT: ANY & ~(ANY TRIGGER ANY)
//! head_0[lazy]: ANY "<function="
//! head_1[lazy]: ANY "<tool>"
//! tag_0: head_0 "get_weather>" %json {...} "</function>"
//! tag_1: head_0 "get_time>" %json {...} "</function>"
//! tag_2: head_1 %json {...} "</tool>"
//! ```
//!
//! - Text and trigger are one lexeme (`head_k`): llguidance's lexer looks one byte ahead, so a
//!   greedy text lexeme would swallow `<functio` and could not hand it back to a trigger lexeme.
//!   `lazy` ends the lexeme at the first place it matches, and the lexer ends a lexeme as soon as
//!   any lazy lexeme matches, so the earliest trigger in the text is the one that opens a tag.
//! - The trailing `TEXT` excludes every trigger, so a trigger cannot slip through as free text at
//!   the end of the output (where EOS would otherwise be allowed right after it).
//! - Each structure hangs off the shortest trigger its `begin` starts with: while `begin` is
//!   written, that one completes first, so a longer one would never be reached.
//! - Triggers that no structure starts with constrain nothing and are left out.
//! - JSON inside a tag is compact (`", "` and `": "`, no free whitespace), as for `json_schema`.

use serde_json::{Map, Value};

use crate::CompileError;
use crate::spec::compact_schema;

/// One structure: `begin`, JSON valid against `schema`, `end`.
#[derive(Clone, Debug, PartialEq)]
pub struct TagStructure {
    pub begin: String,
    pub schema: Value,
    pub end: String,
}

/// A structural tag: its structures and the triggers that open them.
#[derive(Clone, Debug, PartialEq)]
pub struct StructuralTag {
    pub structures: Vec<TagStructure>,
    pub triggers: Vec<String>,
}

fn err(msg: String) -> CompileError {
    CompileError(msg)
}

impl StructuralTag {
    /// Reads the request's object (`{"type": "structural_tag", "structures": [...],
    /// "triggers": [...]}`); `name` is the field it came from, which every error names (with the
    /// path inside it). Validated as [`StructuralTag::validate`] does.
    pub fn from_json(v: &Value, name: &str) -> Result<Self, CompileError> {
        let o = v.as_object().ok_or_else(|| {
            err(format!(
                "`{name}` must be an object with `structures` and `triggers`, got {v}"
            ))
        })?;
        if o.contains_key("format") {
            return Err(err(format!(
                "`{name}.format` is not supported: xgrammar's newer structural tag form \
                 (`format`) is not implemented; use the `structures`/`triggers` form"
            )));
        }
        match o.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "structural_tag" => {}
            Some(t) => {
                return Err(err(format!(
                    "`{name}.type` must be \"structural_tag\", got {t}"
                )));
            }
        }
        let structures = list(o, name, "structures")?
            .iter()
            .enumerate()
            .map(|(i, s)| structure(s, &format!("{name}.structures[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let triggers = list(o, name, "triggers")?
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                Value::String(s) => Ok(s.clone()),
                _ => Err(err(format!(
                    "`{name}.triggers[{i}]` must be a string, got {t}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tag = Self {
            structures,
            triggers,
        };
        tag.validate(name)?;
        Ok(tag)
    }

    /// Non-empty structures and triggers, no empty trigger (it would fire everywhere), and every
    /// structure's `begin` starting with some trigger.
    pub fn validate(&self, name: &str) -> Result<(), CompileError> {
        if self.structures.is_empty() {
            return Err(err(format!(
                "`{name}.structures` must list at least one structure"
            )));
        }
        if self.triggers.is_empty() {
            return Err(err(format!(
                "`{name}.triggers` must list at least one trigger"
            )));
        }
        if let Some(i) = self.triggers.iter().position(String::is_empty) {
            return Err(err(format!("`{name}.triggers[{i}]` must not be empty")));
        }
        for (i, s) in self.structures.iter().enumerate() {
            if self.trigger_of(s).is_none() {
                return Err(err(format!(
                    "`{name}.structures[{i}]`: its begin {:?} does not start with any of the \
                     triggers {:?}",
                    s.begin, self.triggers
                )));
            }
        }
        Ok(())
    }

    /// The canonical text of the tag (the compilation cache's key).
    pub(crate) fn key(&self) -> String {
        let structures: Vec<Value> = self
            .structures
            .iter()
            .map(|s| serde_json::json!([s.begin, s.schema, s.end]))
            .collect();
        serde_json::json!([structures, self.triggers]).to_string()
    }

    /// The shortest trigger `s.begin` starts with (see the module docs for why the shortest).
    fn trigger_of(&self, s: &TagStructure) -> Option<usize> {
        (0..self.triggers.len())
            .filter(|&t| s.begin.starts_with(&self.triggers[t]))
            .min_by_key(|&t| self.triggers[t].len())
    }

    /// The Lark grammar (shape in the module docs).
    pub(crate) fn to_lark(&self) -> Result<String, CompileError> {
        self.validate("structural_tag")?;
        // triggers some structure hangs off, deduplicated, in order of first use
        let mut used: Vec<&str> = Vec::new();
        let mut tags = Vec::new();
        for (i, s) in self.structures.iter().enumerate() {
            let trig = self.triggers[self.trigger_of(s).expect("validated")].as_str();
            let head = match used.iter().position(|&u| u == trig) {
                Some(h) => h,
                None => {
                    used.push(trig);
                    used.len() - 1
                }
            };
            let schema = serde_json::to_string(&compact_schema(&s.schema)?).unwrap();
            // empty literals are left out: the rest of `begin` may be empty, and so may `end`
            let rest = &s.begin[trig.len()..];
            let mut parts = vec![format!("head_{head}")];
            if !rest.is_empty() {
                parts.push(literal(rest));
            }
            parts.push(format!("%json {schema}"));
            if !s.end.is_empty() {
                parts.push(literal(&s.end));
            }
            tags.push(format!("tag_{i}: {}", parts.join(" ")));
        }

        let alts: Vec<String> = (0..tags.len()).map(|i| format!("tag_{i}")).collect();
        let trig_alts: Vec<String> = used.iter().map(|t| literal(t)).collect();
        let mut g = String::new();
        g += "start: tag* TEXT\n";
        g += &format!("tag: {}\n", alts.join(" | "));
        g += "ANY: /(?s:.*)/\n";
        g += &format!("TRIGGER: {}\n", trig_alts.join(" | "));
        g += "TEXT: ANY & ~(ANY TRIGGER ANY)\n";
        for (h, t) in used.iter().enumerate() {
            g += &format!("head_{h}[lazy]: ANY {}\n", literal(t));
        }
        for t in tags {
            g += &t;
            g.push('\n');
        }
        Ok(g)
    }
}

/// A Lark string literal (Lark reads JSON string syntax).
fn literal(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn list<'a>(
    o: &'a Map<String, Value>,
    name: &str,
    k: &str,
) -> Result<&'a Vec<Value>, CompileError> {
    match o.get(k) {
        Some(Value::Array(a)) => Ok(a),
        None | Some(Value::Null) => Err(err(format!("`{name}` needs `{k}` (a list)"))),
        Some(v) => Err(err(format!("`{name}.{k}` must be a list, got {v}"))),
    }
}

/// One `{"begin": str, "schema": object|bool, "end": str}`.
fn structure(v: &Value, name: &str) -> Result<TagStructure, CompileError> {
    let o = v.as_object().ok_or_else(|| {
        err(format!(
            "`{name}` must be an object with `begin`, `schema` and `end`, got {v}"
        ))
    })?;
    let text = |k: &str| match o.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(err(format!("`{name}` needs `{k}` (a string)"))),
        Some(v) => Err(err(format!("`{name}.{k}` must be a string, got {v}"))),
    };
    let schema = match o.get("schema") {
        Some(s @ (Value::Object(_) | Value::Bool(_))) => s.clone(),
        None | Some(Value::Null) => {
            return Err(err(format!(
                "`{name}` needs `schema` (a JSON schema object)"
            )));
        }
        Some(s) => {
            return Err(err(format!(
                "`{name}.schema` must be a JSON schema (an object or a boolean), got {s}"
            )));
        }
    };
    Ok(TagStructure {
        begin: text("begin")?,
        schema,
        end: text("end")?,
    })
}
