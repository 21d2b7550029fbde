//! One request as a JSON object (a `--prompts-file` line): the prompt and any per-request
//! sampling field, with vLLM's `SamplingParams` names (read by the server's own field rules).
//! Unknown fields are errors, not ignored.

use anyhow::{Context, Result, bail};
use ferrum_engine::SamplingParams;
use ferrum_server::fields::{i32_of, ids_of, sampling_field, str_of};
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

const FIELDS: &str = "prompt, prompt_token_ids, priority, and the sampling fields max_tokens, min_tokens, \
    temperature, top_p, top_k, min_p, repetition_penalty, presence_penalty, frequency_penalty, seed, n, stop, \
    stop_token_ids, include_stop_str_in_output, ignore_eos, logit_bias, allowed_token_ids, logprobs, \
    prompt_logprobs, skip_special_tokens";

/// Fields of `obj` over `defaults`.
pub fn parse(obj: &Map<String, Value>, defaults: &SamplingParams) -> Result<JsonRequest> {
    let mut params = defaults.clone();
    let mut prompt = None;
    let mut priority = 0;
    for (k, v) in obj {
        match k.as_str() {
            "prompt" => prompt = Some(Prompt::Text(str_of(k, v)?.to_string())),
            "prompt_token_ids" => prompt = Some(Prompt::Ids(ids_of(k, v)?)),
            "priority" => priority = i32_of(k, v)?,
            // The completions API's integer `logprobs`.
            "logprobs" => {
                params.logprobs = (!v.is_null())
                    .then(|| ferrum_server::fields::usize_of(k, v))
                    .transpose()?
            }
            _ if sampling_field(&mut params, k, v)? => {}
            other => bail!("unknown field `{other}`; supported: {FIELDS}"),
        }
    }
    let prompt = prompt.context("a request needs `prompt` (text) or `prompt_token_ids`")?;
    Ok(JsonRequest {
        prompt,
        params,
        priority,
    })
}
