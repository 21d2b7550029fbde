//! The parts of a request body that both generation endpoints share: the body itself, the
//! sampling fields, streaming options, and the fields ferrum refuses rather than ignore.

use axum::body::Bytes;
use ferrum_engine::SamplingParams;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::fields::{bool_of, i32_of, sampling_field};

/// A JSON object body, or a 400 saying what is wrong with it.
pub fn json_object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!(
            "the request body must be a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What every generation request carries besides its prompt.
#[derive(Debug, Clone)]
pub struct Common {
    pub model: Option<String>,
    pub params: SamplingParams,
    pub priority: i32,
    pub stream: bool,
    pub include_usage: bool,
    pub continuous_usage_stats: bool,
    /// Structured output asked for, with the field that asked (compiled by
    /// [`crate::structured::attach`] before submission).
    pub structured: Option<(String, ferrum_structured::ConstraintSpec)>,
}

/// Fields ferrum does not implement yet: refused by name (a 200 with unconstrained output
/// would be worse than an error).
const NOT_YET: &[&str] = &[
    "guided_whitespace_pattern",
    "bad_words",
    "best_of",
    "use_beam_search",
    "length_penalty",
    "truncate_prompt_tokens",
    "suffix",
    "logits_processors",
    "lora_request",
    "kv_transfer_params",
    "vllm_xargs",
    "mm_processor_kwargs",
];

/// Fields accepted and deliberately without effect, with why.
const NO_EFFECT: &[&str] = &[
    // OpenAI's end-user id, for abuse tracking: nothing to do with generation.
    "user",
    // vLLM's request id header override and cache salt: ferrum ids are its own; prefix
    // caching has no per-tenant salt yet (refused below when set).
    "request_id",
    // Output kind for the non-streaming API: ferrum always returns the whole text.
    "return_token_ids",
    "service_tier",
    "store",
    "metadata",
];

/// Reads `key` if it is one of the shared fields; `Ok(false)` means "not mine".
pub fn common_field(c: &mut Common, k: &str, v: &Value) -> ApiResult<bool> {
    if sampling_field(&mut c.params, k, v)? {
        return Ok(true);
    }
    match k {
        "model" => {
            c.model = (!v.is_null())
                .then(|| v.as_str().map(String::from))
                .flatten()
        }
        "stream" => c.stream = !v.is_null() && bool_of(k, v)?,
        "stream_options" => {
            if v.is_null() {
                return Ok(true);
            }
            let o = v.as_object().ok_or_else(|| {
                ApiError::field(k, format!("`stream_options` must be an object, got {v}"))
            })?;
            for (sk, sv) in o {
                match sk.as_str() {
                    "include_usage" => c.include_usage = !sv.is_null() && bool_of(sk, sv)?,
                    "continuous_usage_stats" => {
                        c.continuous_usage_stats = !sv.is_null() && bool_of(sk, sv)?
                    }
                    other => {
                        return Err(ApiError::field(
                            k,
                            format!("unknown `stream_options` field `{other}`"),
                        ));
                    }
                }
            }
        }
        "priority" => c.priority = i32_of(k, v)?,
        "response_format" => crate::structured::response_format(&mut c.structured, v)?,
        _ if crate::structured::guided_field(&mut c.structured, k, v)? => {}
        "cache_salt" if v.is_null() => {}
        "cache_salt" => {
            return Err(ApiError::field(k, "`cache_salt` is not supported yet"));
        }
        _ if NOT_YET.contains(&k) => {
            if v.is_null() || v == &Value::Bool(false) {
                return Ok(true);
            }
            return Err(ApiError::field(k, format!("`{k}` is not supported yet")));
        }
        _ if NO_EFFECT.contains(&k) => {}
        _ => return Ok(false),
    }
    Ok(true)
}

impl Common {
    pub fn new(defaults: &SamplingParams) -> Self {
        Self {
            model: None,
            params: defaults.clone(),
            priority: 0,
            stream: false,
            include_usage: false,
            continuous_usage_stats: false,
            structured: None,
        }
    }

    /// vLLM's cross-field checks.
    pub fn check(&self) -> ApiResult<()> {
        if !self.stream && (self.include_usage || self.continuous_usage_stats) {
            return Err(ApiError::field(
                "stream_options",
                "Stream options can only be defined when `stream=True`.",
            ));
        }
        Ok(())
    }
}

/// vLLM ignores unknown fields with a warning; so does ferrum (clients send extras).
pub fn warn_unknown(endpoint: &str, keys: &[String]) {
    if !keys.is_empty() {
        tracing::warn!(
            "{endpoint}: the following fields were present in the request but ignored: {keys:?}"
        );
    }
}
