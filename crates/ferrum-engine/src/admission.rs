//! Refusing, before anything is queued, requests that could never complete, with messages
//! a user can act on (vLLM's wording where vLLM has such a check).

use crate::config::EngineConfig;
use crate::request::EngineRequest;

/// Longest sequence (prompt + outputs) the engine lets a request reach: the model's limit,
/// or what the whole cache can hold plus the final sampled token (which needs no K/V slot).
pub fn max_seq_len(cfg: &EngineConfig) -> usize {
    cfg.max_model_len.min(cfg.cache_capacity_tokens() + 1)
}

/// Validates `req` against `cfg` and resolves its `max_tokens`.
pub fn validate_request(cfg: &EngineConfig, req: &EngineRequest) -> Result<usize, String> {
    let prompt_len = req.prompt_token_ids.len();
    if prompt_len == 0 {
        return Err("The decoder prompt cannot be empty".into());
    }
    req.params.validate(cfg.vocab_size, cfg.max_logprobs)?;
    if let Some(&bad) = req
        .prompt_token_ids
        .iter()
        .filter(|&&t| t as usize >= cfg.vocab_size)
        .max()
    {
        return Err(format!("Token id {bad} is out of vocabulary"));
    }
    let max_model_len = cfg.max_model_len;
    if prompt_len > max_model_len {
        return Err(format!(
            "The decoder prompt (length {prompt_len}) is longer than the maximum model length of \
             {max_model_len}. Make sure that `max_model_len` is no smaller than the number of \
             text tokens."
        ));
    }
    if prompt_len == max_model_len {
        return Err(format!(
            "This model's maximum context length is {max_model_len} tokens. However, your \
             request has {prompt_len} input tokens. Please reduce the length of the input \
             messages."
        ));
    }
    if let Some(m) = req.params.max_tokens
        && prompt_len.saturating_add(m) > max_model_len
    {
        return Err(format!(
            "This model's maximum context length is {max_model_len} tokens. However, you \
             requested {} tokens ({prompt_len} in the messages, {m} in the completion). Please \
             reduce the length of the messages or completion.",
            prompt_len.saturating_add(m)
        ));
    }
    let cap = cfg.cache_capacity_tokens();
    if prompt_len > cap {
        return Err(format!(
            "The prompt (length {prompt_len}) does not fit in the KV cache, which holds \
             {cap} tokens ({} blocks of {}). Grow the cache (--kv-cache-memory-bytes, or \
             --gpu-memory-utilization on a GPU) or shorten the prompt.",
            cfg.num_blocks, cfg.block_size
        ));
    }
    // Every token but the last sampled one needs a slot; a sequence that outgrows the whole
    // cache would preempt itself forever.
    if let Some(m) = req.params.max_tokens
        && prompt_len.saturating_add(m) - 1 > cap
    {
        return Err(format!(
            "The request can grow to {} tokens ({prompt_len} in the prompt, {m} in the \
             completion) but the KV cache holds only {cap} tokens ({} blocks of {}). Reduce \
             max_tokens or grow the cache (--kv-cache-memory-bytes, or --gpu-memory-utilization on a GPU).",
            prompt_len.saturating_add(m),
            cfg.num_blocks,
            cfg.block_size
        ));
    }
    if !cfg.enable_chunked_prefill && prompt_len > cfg.max_num_batched_tokens {
        return Err(format!(
            "The prompt (length {prompt_len}) is longer than max_num_batched_tokens ({}) and \
             chunked prefill is disabled, so it can never be scheduled. Enable chunked prefill \
             or increase max_num_batched_tokens.",
            cfg.max_num_batched_tokens
        ));
    }
    Ok(req
        .params
        .max_tokens
        .unwrap_or(max_seq_len(cfg) - prompt_len))
}
