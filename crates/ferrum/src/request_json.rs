//! One request as a JSON object (a `--prompts-file` line): the prompt and any per-request
//! sampling field, with vLLM's `SamplingParams` names. Unknown fields are errors, not ignored.

use anyhow::{Context, Result, anyhow, bail};
use ferrum_engine::SamplingParams;
use serde_json::{Map, Value};

pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

pub struct JsonRequest {
    pub prompt: Prompt,
    pub params: SamplingParams,
    pub priority: i32,
}

const FIELDS: &str = "prompt, prompt_token_ids, max_tokens, min_tokens, temperature, top_p, top_k, min_p, \
    repetition_penalty, presence_penalty, frequency_penalty, seed, n, stop, stop_token_ids, \
    include_stop_str_in_output, ignore_eos, logit_bias, logprobs, prompt_logprobs, skip_special_tokens, priority";

fn f32_of(k: &str, v: &Value) -> Result<f32> {
    v.as_f64()
        .map(|x| x as f32)
        .with_context(|| format!("`{k}` must be a number, got {v}"))
}
fn usize_of(k: &str, v: &Value) -> Result<usize> {
    v.as_u64()
        .map(|x| x as usize)
        .with_context(|| format!("`{k}` must be a non-negative integer, got {v}"))
}
fn bool_of(k: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .with_context(|| format!("`{k}` must be true or false, got {v}"))
}
fn ids_of(k: &str, v: &Value) -> Result<Vec<u32>> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|x| {
                    x.as_u64()
                        .filter(|&x| x <= u32::MAX as u64)
                        .map(|x| x as u32)
                })
                .collect()
        })
        .with_context(|| format!("`{k}` must be a list of token ids, got {v}"))
}

/// Fields of `obj` over `defaults`.
pub fn parse(obj: &Map<String, Value>, defaults: &SamplingParams) -> Result<JsonRequest> {
    let mut p = defaults.clone();
    let mut prompt = None;
    let mut priority = 0;
    for (k, v) in obj {
        match k.as_str() {
            "prompt" => {
                prompt = Some(Prompt::Text(
                    v.as_str()
                        .with_context(|| format!("`prompt` must be a string, got {v}"))?
                        .into(),
                ))
            }
            "prompt_token_ids" => prompt = Some(Prompt::Ids(ids_of(k, v)?)),
            "max_tokens" => {
                p.max_tokens = if v.is_null() {
                    None
                } else {
                    Some(usize_of(k, v)?)
                }
            }
            "min_tokens" => p.min_tokens = usize_of(k, v)?,
            "temperature" => p.temperature = f32_of(k, v)?,
            "top_p" => p.top_p = f32_of(k, v)?,
            "top_k" => {
                p.top_k = v
                    .as_i64()
                    .with_context(|| format!("`top_k` must be an integer, got {v}"))?
                    as i32
            }
            "min_p" => p.min_p = f32_of(k, v)?,
            "repetition_penalty" => p.repetition_penalty = f32_of(k, v)?,
            "presence_penalty" => p.presence_penalty = f32_of(k, v)?,
            "frequency_penalty" => p.frequency_penalty = f32_of(k, v)?,
            "seed" => {
                p.seed = if v.is_null() {
                    None
                } else {
                    Some(v.as_u64().with_context(|| {
                        format!("`seed` must be a non-negative integer, got {v}")
                    })?)
                }
            }
            "n" => p.n = usize_of(k, v)?,
            "stop" => {
                p.stop = match v {
                    Value::Null => vec![],
                    Value::String(s) => vec![s.clone()],
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(String::from))
                        .collect::<Option<_>>()
                        .with_context(|| {
                            format!("`stop` must be a string or a list of strings, got {v}")
                        })?,
                    _ => bail!("`stop` must be a string or a list of strings, got {v}"),
                }
            }
            "stop_token_ids" => p.stop_token_ids = ids_of(k, v)?,
            "include_stop_str_in_output" => p.include_stop_str_in_output = bool_of(k, v)?,
            "ignore_eos" => p.ignore_eos = bool_of(k, v)?,
            "skip_special_tokens" => p.skip_special_tokens = bool_of(k, v)?,
            "logit_bias" => {
                let m = v.as_object().with_context(|| {
                    format!("`logit_bias` must map token ids to biases, got {v}")
                })?;
                p.logit_bias = m
                    .iter()
                    .map(|(id, b)| {
                        Ok((
                            id.parse::<u32>().map_err(|_| {
                                anyhow!("`logit_bias` key `{id}` is not a token id")
                            })?,
                            f32_of("logit_bias", b)?,
                        ))
                    })
                    .collect::<Result<_>>()?;
            }
            "logprobs" => {
                p.logprobs = if v.is_null() {
                    None
                } else {
                    Some(usize_of(k, v)?)
                }
            }
            "prompt_logprobs" => {
                p.prompt_logprobs = if v.is_null() {
                    None
                } else {
                    Some(usize_of(k, v)?)
                }
            }
            "priority" => {
                priority = v
                    .as_i64()
                    .with_context(|| format!("`priority` must be an integer, got {v}"))?
                    as i32
            }
            other => bail!("unknown field `{other}`; supported: {FIELDS}"),
        }
    }
    let prompt = prompt.context("a request needs `prompt` (text) or `prompt_token_ids`")?;
    Ok(JsonRequest {
        prompt,
        params: p,
        priority,
    })
}
