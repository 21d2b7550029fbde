//! Refusals with exact messages: sampling-parameter validation (vLLM's wording) and requests
//! that could never complete under the engine's configuration.

use ferrum_engine::admission::validate_request;
use ferrum_engine::{EngineConfig, EngineRequest, SamplingParams};

fn params_err(f: impl FnOnce(&mut SamplingParams)) -> String {
    let mut p = SamplingParams::default();
    f(&mut p);
    p.validate(1000, 20).unwrap_err()
}

#[test]
fn sampling_param_messages_match_vllm() {
    assert_eq!(params_err(|p| p.n = 0), "n must be at least 1, got 0.");
    assert_eq!(
        params_err(|p| p.n = 16385),
        "n must be at most 16384, got 16385."
    );
    assert_eq!(
        params_err(|p| p.presence_penalty = 2.5),
        "presence_penalty must be in [-2, 2], got 2.5."
    );
    assert_eq!(
        params_err(|p| p.frequency_penalty = -3.0),
        "frequency_penalty must be in [-2, 2], got -3.0."
    );
    assert_eq!(
        params_err(|p| p.repetition_penalty = 0.0),
        "repetition_penalty must be greater than zero, got 0.0."
    );
    assert_eq!(
        params_err(|p| p.temperature = -1.0),
        "temperature must be non-negative, got -1.0."
    );
    assert_eq!(
        params_err(|p| p.temperature = f32::NAN),
        "temperature must be non-negative, got nan."
    );
    assert_eq!(
        params_err(|p| p.top_p = 0.0),
        "top_p must be in (0, 1], got 0.0."
    );
    assert_eq!(
        params_err(|p| p.top_p = 1.1),
        "top_p must be in (0, 1], got 1.1."
    );
    assert_eq!(
        params_err(|p| p.top_k = -2),
        "top_k must be 0 (disable), or at least 1, got -2."
    );
    assert_eq!(
        params_err(|p| p.min_p = 1.5),
        "min_p must be in [0, 1], got 1.5."
    );
    assert_eq!(
        params_err(|p| p.max_tokens = Some(0)),
        "max_tokens must be at least 1, got 0."
    );
    assert_eq!(
        params_err(|p| {
            p.max_tokens = Some(4);
            p.min_tokens = 5
        }),
        "min_tokens must be less than or equal to max_tokens=4, got 5."
    );
    assert_eq!(
        params_err(|p| p.stop = vec!["a".into(), String::new()]),
        "stop cannot contain an empty string."
    );
    assert_eq!(
        params_err(|p| p.logprobs = Some(21)),
        "Requested sample logprobs of 21, which is greater than max allowed: 20"
    );
    assert_eq!(
        params_err(|p| p.prompt_logprobs = Some(30)),
        "Requested prompt logprobs of 30, which is greater than max allowed: 20"
    );
    assert_eq!(
        params_err(|p| p.logit_bias = vec![(5, 1.0), (1000, 1.0), (4000, -1.0)]),
        "token_id(s) [1000, 4000] in logit_bias contain out-of-vocab token ids. Vocabulary size: 1000"
    );
}

#[test]
fn valid_params_pass_including_edges() {
    let p = SamplingParams {
        top_k: -1,
        top_p: 1.0,
        min_p: 1.0,
        presence_penalty: -2.0,
        frequency_penalty: 2.0,
        temperature: 0.0,
        logprobs: Some(20),
        max_tokens: Some(3),
        min_tokens: 3,
        ..Default::default()
    };
    assert_eq!(p.validate(1000, 20), Ok(()));
    assert_eq!(ferrum_engine::sampling::py_float(1e-7), "1e-07");
    assert_eq!(ferrum_engine::sampling::py_float(0.25), "0.25");
}

fn cfg() -> EngineConfig {
    EngineConfig {
        block_size: 4,
        max_num_batched_tokens: 16,
        ..EngineConfig::new(8, 40, 1000)
    }
}

fn refuse(cfg: &EngineConfig, prompt_len: usize, max_tokens: Option<usize>) -> String {
    let r = EngineRequest::new(
        vec![1; prompt_len],
        SamplingParams {
            max_tokens,
            ..Default::default()
        },
    );
    validate_request(cfg, &r).unwrap_err()
}

#[test]
fn never_fitting_requests_are_refused_with_precise_messages() {
    let c = cfg(); // max_model_len 40, cache 8 blocks x 4 = 32 tokens
    assert_eq!(refuse(&c, 0, None), "The decoder prompt cannot be empty");
    assert_eq!(
        refuse(&c, 41, None),
        "The decoder prompt (length 41) is longer than the maximum model length of 40. Make \
         sure that `max_model_len` is no smaller than the number of text tokens."
    );
    assert_eq!(
        refuse(&c, 40, None),
        "This model's maximum context length is 40 tokens. However, your request has 40 \
         input tokens. Please reduce the length of the input messages."
    );
    assert_eq!(
        refuse(&c, 30, Some(11)),
        "This model's maximum context length is 40 tokens. However, you requested 41 tokens \
         (30 in the messages, 11 in the completion). Please reduce the length of the messages \
         or completion."
    );
    assert_eq!(
        refuse(&c, 33, Some(1)),
        "The prompt (length 33) does not fit in the KV cache, which holds 32 tokens (8 blocks \
         of 4). Grow the cache (--kv-cache-memory-bytes, or --gpu-memory-utilization on a GPU) or shorten the prompt."
    );
    assert_eq!(
        refuse(&c, 20, Some(14)),
        "The request can grow to 34 tokens (20 in the prompt, 14 in the completion) but the \
         KV cache holds only 32 tokens (8 blocks of 4). Reduce max_tokens or grow \
         the cache (--kv-cache-memory-bytes, or --gpu-memory-utilization on a GPU)."
    );
    let mut nc = cfg();
    nc.enable_chunked_prefill = false;
    assert_eq!(
        refuse(&nc, 17, Some(1)),
        "The prompt (length 17) is longer than max_num_batched_tokens (16) and chunked \
         prefill is disabled, so it can never be scheduled. Enable chunked prefill or \
         increase max_num_batched_tokens."
    );
    let mut bad = EngineRequest::new(vec![1, 1000, 5000, 2], SamplingParams::default());
    assert_eq!(
        validate_request(&c, &bad).unwrap_err(),
        "Token id 5000 is out of vocabulary"
    );
    bad.prompt_token_ids = vec![1];
    bad.params.temperature = -1.0;
    assert_eq!(
        validate_request(&c, &bad).unwrap_err(),
        "temperature must be non-negative, got -1.0."
    );
}

#[test]
fn fitting_requests_resolve_max_tokens() {
    let c = cfg();
    let ok = |len: usize, m: Option<usize>| {
        let r = EngineRequest::new(
            vec![1; len],
            SamplingParams {
                max_tokens: m,
                ..Default::default()
            },
        );
        validate_request(&c, &r)
    };
    // Prompt + 13 - 1 = 32 slots: exactly the cache.
    assert_eq!(ok(20, Some(13)), Ok(13));
    // Default max_tokens: up to min(max_model_len 40, cache 32 + 1 final token) = 33.
    assert_eq!(ok(20, None), Ok(13));
    let mut big = cfg();
    big.num_blocks = 100;
    let r = EngineRequest::new(vec![1; 10], SamplingParams::default());
    assert_eq!(validate_request(&big, &r), Ok(30));
}

/// A huge `max_tokens` is refused with the usual message, not an overflow.
#[test]
fn max_tokens_near_usize_max_does_not_overflow() {
    let cfg = EngineConfig::new(64, 128, 1000);
    let mut r = EngineRequest::new(vec![1, 2, 3], SamplingParams::default());
    r.params.max_tokens = Some(usize::MAX);
    let e = validate_request(&cfg, &r).unwrap_err();
    assert!(e.contains("maximum context length is 128 tokens"), "{e}");
}
