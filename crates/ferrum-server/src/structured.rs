//! Structured output on the server side: the request fields that ask for it (OpenAI's
//! `response_format`, vLLM's `structured_outputs` and the older `guided_*` fields, forced tool
//! calls) become a [`ConstraintSpec`], compiled off the runtime (tokio's blocking pool, with a
//! time limit and a cache) and attached to the request's sampling parameters. A schema or
//! grammar that cannot be compiled is a 400 naming what is unsupported.
//!
//! `structural_tag` (in `response_format` or `structured_outputs`) is vLLM's legacy form,
//! `structures` + `triggers`; xgrammar's newer `format` form is a 400.

use std::sync::{Arc, Mutex};

use ferrum_engine::SamplingParams;
use ferrum_structured::{ConstraintSpec, StructuralTag, StructuredOutputs};
use ferrum_tokenizer::Tokenizer;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Records `spec` from field `k`; a second kind of constraint is refused as vLLM does.
pub fn set(
    slot: &mut Option<(String, ConstraintSpec)>,
    k: &str,
    spec: ConstraintSpec,
) -> ApiResult<()> {
    if let Some((prev, _)) = slot {
        return Err(ApiError::field(
            k,
            format!(
                "You can only use one kind of structured outputs constraint: `{prev}` and `{k}` are both set"
            ),
        ));
    }
    *slot = Some((k.to_string(), spec));
    Ok(())
}

/// A JSON schema given as an object (or boolean) or as a string holding JSON.
fn schema_of(k: &str, v: &Value) -> ApiResult<Value> {
    match v {
        Value::Object(_) | Value::Bool(_) => Ok(v.clone()),
        Value::String(s) => serde_json::from_str(s)
            .map_err(|e| ApiError::field(k, format!("`{k}` is not valid JSON: {e}"))),
        _ => Err(ApiError::field(
            k,
            format!("`{k}` must be a JSON schema (an object or a JSON string), got {v}"),
        )),
    }
}

fn string_of(k: &str, v: &Value) -> ApiResult<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be a string, got {v}")))
}

fn choices_of(k: &str, v: &Value) -> ApiResult<Vec<String>> {
    let a = v
        .as_array()
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be a list of strings, got {v}")))?;
    let c: Option<Vec<String>> = a.iter().map(|s| s.as_str().map(str::to_string)).collect();
    match c {
        Some(c) if !c.is_empty() => Ok(c),
        _ => Err(ApiError::field(
            k,
            format!("`{k}` must be a non-empty list of strings, got {v}"),
        )),
    }
}

/// `response_format`: `text` (nothing), `json_object`, `json_schema`.
pub fn response_format(slot: &mut Option<(String, ConstraintSpec)>, v: &Value) -> ApiResult<()> {
    let k = "response_format";
    if v.is_null() {
        return Ok(());
    }
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some("json_object") => set(slot, k, ConstraintSpec::JsonObject),
        Some("json_schema") => {
            let js = v
                .get("json_schema")
                .filter(|j| j.is_object())
                .ok_or_else(|| {
                    ApiError::field(
                        k,
                        "`response_format` of type `json_schema` needs a `json_schema` object",
                    )
                })?;
            let schema = match js.get("schema").or_else(|| js.get("json_schema")) {
                Some(s) if !s.is_null() => schema_of(k, s)?,
                // OpenAI's default: any JSON object
                _ => json!({"type": "object"}),
            };
            let strict = js.get("strict").and_then(Value::as_bool).unwrap_or(false);
            set(slot, k, ConstraintSpec::JsonSchema { schema, strict })
        }
        Some("structural_tag") => {
            let tag = StructuralTag::from_json(v, k).map_err(|e| ApiError::field(k, e.0))?;
            set(slot, k, ConstraintSpec::StructuralTag(tag))
        }
        Some(t) => Err(ApiError::field(
            k,
            format!(
                "`response_format` of type `{t}` is not supported: use text, json_object, json_schema or structural_tag"
            ),
        )),
        None => Err(ApiError::field(k, "`response_format` needs a `type`")),
    }
}

/// The older `guided_*` fields; `Ok(false)`: not one of them.
pub fn guided_field(
    slot: &mut Option<(String, ConstraintSpec)>,
    k: &str,
    v: &Value,
) -> ApiResult<bool> {
    if v.is_null() {
        return Ok(matches!(
            k,
            "guided_json"
                | "guided_regex"
                | "guided_choice"
                | "guided_grammar"
                | "guided_decoding_backend"
                | "structured_outputs"
        ));
    }
    match k {
        "guided_json" => set(
            slot,
            k,
            ConstraintSpec::JsonSchema {
                schema: schema_of(k, v)?,
                strict: false,
            },
        )?,
        "guided_regex" => set(slot, k, ConstraintSpec::Regex(string_of(k, v)?))?,
        "guided_choice" => set(slot, k, ConstraintSpec::Choice(choices_of(k, v)?))?,
        "guided_grammar" => set(slot, k, ConstraintSpec::Grammar(string_of(k, v)?))?,
        // vLLM's backend choice: ferrum has one (llguidance, vLLM's `guidance`)
        "guided_decoding_backend" => {}
        "structured_outputs" => structured_outputs(slot, v)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// vLLM's `structured_outputs` object (`StructuredOutputsParams`).
fn structured_outputs(slot: &mut Option<(String, ConstraintSpec)>, v: &Value) -> ApiResult<()> {
    let k = "structured_outputs";
    let o: &Map<String, Value> = v
        .as_object()
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be an object, got {v}")))?;
    let close = match o.get("disable_additional_properties") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::field(
                k,
                format!(
                    "`structured_outputs.disable_additional_properties` must be a boolean, got {other}"
                ),
            ));
        }
    };
    for (sk, sv) in o {
        let name = format!("structured_outputs.{sk}");
        if sv.is_null() {
            continue;
        }
        match sk.as_str() {
            "json" => {
                let mut schema = schema_of(&name, sv)?;
                if close {
                    close_objects(&mut schema);
                }
                set(
                    slot,
                    &name,
                    ConstraintSpec::JsonSchema {
                        schema,
                        strict: false,
                    },
                )?
            }
            "regex" => set(slot, &name, ConstraintSpec::Regex(string_of(&name, sv)?))?,
            "choice" => set(slot, &name, ConstraintSpec::Choice(choices_of(&name, sv)?))?,
            "grammar" => set(slot, &name, ConstraintSpec::Grammar(string_of(&name, sv)?))?,
            "json_object" => {
                if sv.as_bool() == Some(true) {
                    set(slot, &name, ConstraintSpec::JsonObject)?
                }
            }
            // malformed tags name `structured_outputs` as the param (as the other refusals of
            // this object do), the message gives the full path
            "structural_tag" => set(
                slot,
                &name,
                ConstraintSpec::StructuralTag(structural_tag_of(&name, sv)?),
            )?,
            "whitespace_pattern" => {
                return Err(ApiError::field(
                    k,
                    "`structured_outputs.whitespace_pattern` is not supported",
                ));
            }
            // read above, for `json`
            "disable_additional_properties" => {}
            // options without effect here: one backend, JSON always compact, no fallback
            "disable_fallback"
            | "disable_any_whitespace"
            | "_backend"
            | "backend"
            | "_backend_was_auto" => {}
            other => {
                return Err(ApiError::field(
                    k,
                    format!("unknown `structured_outputs` field `{other}`"),
                ));
            }
        }
    }
    Ok(())
}

/// `structured_outputs.structural_tag`: vLLM takes a string holding the tag's JSON; an object is
/// taken too.
fn structural_tag_of(name: &str, v: &Value) -> ApiResult<StructuralTag> {
    let k = "structured_outputs";
    let parsed;
    let v = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| ApiError::field(k, format!("`{name}` is not valid JSON: {e}")))?;
            &parsed
        }
        _ => v,
    };
    StructuralTag::from_json(v, name).map_err(|e| ApiError::field(k, e.0))
}

/// vLLM's `disable_additional_properties`: every object schema that does not say otherwise
/// gets `"additionalProperties": false`, at any depth, so only the listed properties appear.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("type").and_then(Value::as_str) == Some("object")
                && !m.contains_key("additionalProperties")
            {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            m.values_mut().for_each(close_objects);
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The compiler for the served tokenizer, built once on first use (on the blocking pool).
async fn compiler(state: &AppState) -> ApiResult<Arc<StructuredOutputs>> {
    type Slot = Mutex<Option<(Arc<Tokenizer>, Arc<StructuredOutputs>)>>;
    static SLOT: Slot = Mutex::new(None);
    if let Some((t, c)) = SLOT.lock().unwrap().as_ref()
        && Arc::ptr_eq(t, &state.tokenizer)
    {
        return Ok(c.clone());
    }
    let tok = state.tokenizer.clone();
    let built = tokio::task::spawn_blocking(move || {
        let vocab = tok.vocab_size();
        StructuredOutputs::new(&tok, vocab).map(|c| (tok, Arc::new(c)))
    })
    .await
    .map_err(|e| ApiError::internal(format!("structured output set-up failed: {e}")))?
    .map_err(|e| {
        ApiError::internal(format!(
            "structured output is unavailable for this tokenizer: {e:#}"
        ))
    })?;
    let c = built.1.clone();
    *SLOT.lock().unwrap() = Some(built);
    Ok(c)
}

/// Compiles the request's constraint (off the runtime) and attaches it to `params`.
pub async fn attach(
    state: &AppState,
    params: &mut SamplingParams,
    spec: Option<(String, ConstraintSpec)>,
) -> ApiResult<()> {
    let Some((field, spec)) = spec else {
        return Ok(());
    };
    let c = compiler(state).await?;
    let constraint = c
        .compile(spec)
        .await
        .map_err(|e| ApiError::field(&field, format!("`{field}`: {}", e.0)))?;
    params.constraint = Some(constraint);
    Ok(())
}

/// vLLM's schema for `tool_choice: "required"`: a non-empty array of `{name, parameters}`
/// objects, one alternative per tool (`$defs` of the tools' parameters merged at the top).
pub fn required_tools_schema(tools: &[Value]) -> ApiResult<Value> {
    let mut defs = Map::new();
    let alts: Vec<Value> = tools
        .iter()
        .map(|t| {
            let f = &t["function"];
            let mut params = f
                .get("parameters")
                .filter(|p| !p.is_null())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            if let Some(Value::Object(d)) = params.as_object_mut().and_then(|p| p.remove("$defs")) {
                defs.extend(d);
            }
            json!({
                "properties": {
                    "name": {"type": "string", "enum": [f["name"]]},
                    "parameters": params,
                },
                "required": ["name", "parameters"],
            })
        })
        .collect();
    let mut schema = json!({
        "type": "array",
        "minItems": 1,
        "items": {"type": "object", "anyOf": alts},
    });
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs);
    }
    Ok(schema)
}

/// The named tool's parameters schema (`{"type": "object"}`-ish default when it has none).
pub fn named_tool_schema(tools: &[Value], name: &str) -> ApiResult<Value> {
    let t = tools
        .iter()
        .find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| {
            ApiError::field(
                "tool_choice",
                format!("Tool '{name}' has not been passed in `tools`."),
            )
        })?;
    Ok(t.pointer("/function/parameters")
        .filter(|p| !p.is_null())
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}})))
}

#[cfg(test)]
mod tests {
    use super::close_objects;
    use serde_json::json;

    #[test]
    fn close_objects_sets_false_where_unsaid_at_any_depth() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"x": {"type": "integer"}}},
                "b": {"type": "object", "additionalProperties": true},
                "c": {"type": "array", "items": [{"type": "object"}]}
            }
        });
        close_objects(&mut s);
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
        assert_eq!(s["properties"]["b"]["additionalProperties"], true);
        assert_eq!(
            s["properties"]["c"]["items"][0]["additionalProperties"],
            false
        );
        assert!(s["properties"]["c"].get("additionalProperties").is_none());
    }
}
