//! What a request asks for, and its llguidance grammar.

use llguidance::api::{GrammarWithLexer, TopLevelGrammar};
use serde_json::{Value, json};

use crate::CompileError;
use crate::struct_tag::StructuralTag;

/// A request's structured-output constraint, whichever field it came from.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintSpec {
    /// `response_format: {"type": "json_schema"}`, `structured_outputs.json`, `guided_json`.
    /// `strict` is recorded but changes nothing: the output always follows the schema.
    JsonSchema { schema: Value, strict: bool },
    /// `response_format: {"type": "json_object"}` (`structured_outputs.json_object`): any JSON
    /// object.
    JsonObject,
    /// `structured_outputs.regex`, `guided_regex`.
    Regex(String),
    /// `structured_outputs.choice`, `guided_choice`: exactly one of the strings.
    Choice(Vec<String>),
    /// `structured_outputs.grammar`, `guided_grammar`: a Lark grammar as llguidance takes it.
    Grammar(String),
    /// `response_format: {"type": "structural_tag"}`, `structured_outputs.structural_tag`: free
    /// text, with a tag (begin, JSON, end) wherever a trigger appears.
    StructuralTag(StructuralTag),
}

impl ConstraintSpec {
    /// The kind, as error messages and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JsonSchema { .. } => "json_schema",
            Self::JsonObject => "json_object",
            Self::Regex(_) => "regex",
            Self::Choice(_) => "choice",
            Self::Grammar(_) => "grammar",
            Self::StructuralTag(_) => "structural_tag",
        }
    }

    /// The cache key: the kind and the constraint's text.
    pub(crate) fn cache_key(&self) -> Result<(&'static str, String), CompileError> {
        let text = match self {
            Self::JsonSchema { schema, .. } => serde_json::to_string(schema).unwrap_or_default(),
            Self::JsonObject => String::new(),
            Self::Regex(r) => r.clone(),
            Self::Choice(c) => serde_json::to_string(c).unwrap_or_default(),
            Self::Grammar(g) => g.clone(),
            Self::StructuralTag(t) => t.key(),
        };
        Ok((self.kind(), text))
    }

    /// The llguidance grammar. JSON is generated compactly (`", "` and `": "` separators, no
    /// free whitespace), which keeps a small model from wandering into whitespace.
    pub fn to_grammar(&self) -> Result<TopLevelGrammar, CompileError> {
        Ok(match self {
            Self::JsonSchema { schema, .. } => json_grammar(schema)?,
            Self::JsonObject => json_grammar(&json!({"type": "object"}))?,
            Self::Regex(r) => {
                if r.is_empty() {
                    return Err(CompileError("the regex is empty".into()));
                }
                TopLevelGrammar::from_regex(r)
            }
            Self::Choice(choices) => {
                if choices.is_empty() {
                    return Err(CompileError("choice must list at least one string".into()));
                }
                let alts: Vec<String> = choices
                    .iter()
                    .map(|c| serde_json::to_string(c).unwrap())
                    .collect();
                let mut g = GrammarWithLexer::from_lark(format!("start: {}", alts.join(" | ")));
                g.name = Some("choice".into());
                TopLevelGrammar::from_grammar(g)
            }
            Self::Grammar(g) => {
                if g.trim().is_empty() {
                    return Err(CompileError("the grammar is empty".into()));
                }
                if g.contains("::=") {
                    return Err(CompileError(
                        "unsupported grammar: GBNF/EBNF with `::=` is not supported; \
                         write the grammar in Lark syntax (`rule: ...`) as llguidance takes it"
                            .into(),
                    ));
                }
                TopLevelGrammar::from_lark(g.clone())
            }
            Self::StructuralTag(t) => {
                let mut g = GrammarWithLexer::from_lark(t.to_lark()?);
                g.name = Some("structural_tag".into());
                TopLevelGrammar::from_grammar(g)
            }
        })
    }
}

fn json_grammar(schema: &Value) -> Result<TopLevelGrammar, CompileError> {
    Ok(TopLevelGrammar::from_json_schema(compact_schema(schema)?))
}

/// `schema` as llguidance compiles it: an object (a boolean is wrapped), generating compact JSON
/// unless the schema sets its own `x-guidance` options.
pub(crate) fn compact_schema(schema: &Value) -> Result<Value, CompileError> {
    let mut schema = match schema {
        Value::Object(_) => schema.clone(),
        Value::Bool(_) => json!({"allOf": [schema]}),
        _ => {
            return Err(CompileError(
                "unsupported json_schema: a schema must be a JSON object or a boolean".into(),
            ));
        }
    };
    if schema.get("x-guidance").is_none() {
        schema["x-guidance"] = json!({
            "item_separator": ", ",
            "key_separator": ": ",
            "whitespace_flexible": false,
        });
    }
    Ok(schema)
}
