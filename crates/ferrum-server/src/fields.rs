//! Request fields with vLLM's `SamplingParams` names, read one by one from JSON so every error
//! names its field. Shared by the server's endpoints and `generate --prompts-file`.

use ferrum_engine::SamplingParams;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

pub fn f32_of(k: &str, v: &Value) -> ApiResult<f32> {
    v.as_f64()
        .map(|x| x as f32)
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be a number, got {v}")))
}

pub fn usize_of(k: &str, v: &Value) -> ApiResult<usize> {
    v.as_u64()
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be a non-negative integer, got {v}")))
}

pub fn i32_of(k: &str, v: &Value) -> ApiResult<i32> {
    v.as_i64()
        .and_then(|x| i32::try_from(x).ok())
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be an integer, got {v}")))
}

pub fn bool_of(k: &str, v: &Value) -> ApiResult<bool> {
    v.as_bool()
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be true or false, got {v}")))
}

pub fn str_of<'a>(k: &str, v: &'a Value) -> ApiResult<&'a str> {
    v.as_str()
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be a string, got {v}")))
}

pub fn ids_of(k: &str, v: &Value) -> ApiResult<Vec<u32>> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect()
        })
        .ok_or_else(|| ApiError::field(k, format!("`{k}` must be a list of token ids, got {v}")))
}

fn opt<T>(v: &Value, f: impl FnOnce(&Value) -> ApiResult<T>) -> ApiResult<Option<T>> {
    if v.is_null() {
        Ok(None)
    } else {
        f(v).map(Some)
    }
}

/// The sampling fields every endpoint takes (vLLM's names). Returns `false` for a key that is
/// not one of them, so the caller can handle its own fields or refuse.
pub fn sampling_field(p: &mut SamplingParams, k: &str, v: &Value) -> ApiResult<bool> {
    match k {
        "max_tokens" | "max_completion_tokens" => p.max_tokens = opt(v, |v| usize_of(k, v))?,
        "min_tokens" => p.min_tokens = usize_of(k, v)?,
        "temperature" => {
            if let Some(t) = opt(v, |v| f32_of(k, v))? {
                p.temperature = t
            }
        }
        "top_p" => {
            if let Some(t) = opt(v, |v| f32_of(k, v))? {
                p.top_p = t
            }
        }
        "top_k" => {
            if let Some(t) = opt(v, |v| i32_of(k, v))? {
                p.top_k = t
            }
        }
        "min_p" => {
            if let Some(t) = opt(v, |v| f32_of(k, v))? {
                p.min_p = t
            }
        }
        "repetition_penalty" => {
            if let Some(t) = opt(v, |v| f32_of(k, v))? {
                p.repetition_penalty = t
            }
        }
        "presence_penalty" => p.presence_penalty = opt(v, |v| f32_of(k, v))?.unwrap_or(0.0),
        "frequency_penalty" => p.frequency_penalty = opt(v, |v| f32_of(k, v))?.unwrap_or(0.0),
        "seed" => {
            p.seed = opt(v, |v| {
                v.as_i64().map(|s| s as u64).ok_or_else(|| {
                    ApiError::field(k, format!("`seed` must be an integer, got {v}"))
                })
            })?
        }
        "n" => p.n = opt(v, |v| usize_of(k, v))?.unwrap_or(1),
        "stop" => {
            p.stop = match v {
                Value::Null => vec![],
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(String::from))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        ApiError::field(
                            k,
                            format!("`stop` must be a string or a list of strings, got {v}"),
                        )
                    })?,
                _ => {
                    return Err(ApiError::field(
                        k,
                        format!("`stop` must be a string or a list of strings, got {v}"),
                    ));
                }
            }
        }
        "stop_token_ids" => p.stop_token_ids = opt(v, |v| ids_of(k, v))?.unwrap_or_default(),
        "include_stop_str_in_output" => p.include_stop_str_in_output = bool_of(k, v)?,
        "ignore_eos" => p.ignore_eos = bool_of(k, v)?,
        "skip_special_tokens" => p.skip_special_tokens = bool_of(k, v)?,
        "spaces_between_special_tokens" => {
            // ferrum's detokenizer decodes the ids as one text, as HF tokenizers do for fast
            // tokenizers (where vLLM also ignores this flag); only `true` means that.
            if !bool_of(k, v)? {
                return Err(ApiError::field(
                    k,
                    "`spaces_between_special_tokens: false` is not supported yet",
                ));
            }
        }
        "logit_bias" => {
            p.logit_bias = match v {
                Value::Null => vec![],
                Value::Object(m) => m
                    .iter()
                    .map(|(id, b)| {
                        let id = id.parse::<u32>().map_err(|_| {
                            ApiError::field(k, format!("`logit_bias` key `{id}` is not a token id"))
                        })?;
                        Ok((id, f32_of(k, b)?))
                    })
                    .collect::<ApiResult<_>>()?,
                _ => {
                    return Err(ApiError::field(
                        k,
                        format!("`logit_bias` must map token ids to biases, got {v}"),
                    ));
                }
            }
        }
        "allowed_token_ids" => p.allowed_token_ids = opt(v, |v| ids_of(k, v))?,
        "prompt_logprobs" => p.prompt_logprobs = opt(v, |v| prompt_logprobs_of(k, v))?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// vLLM takes -1 for "the whole vocabulary"; ferrum caps at `--max-logprobs` like vLLM does
/// for positive values, so -1 is refused by validation with vLLM's message.
fn prompt_logprobs_of(k: &str, v: &Value) -> ApiResult<usize> {
    match v.as_i64() {
        Some(-1) => Ok(usize::MAX),
        _ => usize_of(k, v),
    }
}
