//! `POST /v1/completions`: a prompt as a string, a list of strings, token ids or lists of
//! token ids; `n` choices per prompt (choice index = prompt index × n + sequence index).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::fields::{bool_of, ids_of, usize_of};
use crate::logprobs;
use crate::output::RequestResult;
use crate::request::{Common, common_field, json_object, warn_unknown};
use crate::sse::{self, Envelope, now_secs};
use crate::state::Shared;
use crate::submit::{self, merged, tokenize};

/// OpenAI's (and vLLM's) default for `/v1/completions`.
const DEFAULT_MAX_TOKENS: usize = 16;

enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

struct CompletionRequest {
    common: Common,
    prompts: Vec<Prompt>,
    echo: bool,
    logprobs: Option<usize>,
    add_special_tokens: bool,
}

fn parse_prompt(v: &Value) -> ApiResult<Vec<Prompt>> {
    let bad = || {
        ApiError::field(
            "prompt",
            "`prompt` must be a string, a list of strings, a list of token ids or a list of lists of token ids",
        )
    };
    let prompts = match v {
        Value::String(s) => vec![Prompt::Text(s.clone())],
        Value::Array(a) if a.is_empty() => {
            return Err(ApiError::field("prompt", "`prompt` is empty"));
        }
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|s| Prompt::Text(s.as_str().unwrap_or_default().to_string()))
            .collect(),
        Value::Array(a) if a.iter().all(Value::is_number) => {
            vec![Prompt::Ids(ids_of("prompt", v)?)]
        }
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| ids_of("prompt", x).map(Prompt::Ids))
            .collect::<ApiResult<_>>()?,
        _ => return Err(bad()),
    };
    Ok(prompts)
}

fn parse(state: &Shared, body: &Bytes) -> ApiResult<CompletionRequest> {
    let obj = json_object(body)?;
    let mut common = Common::new(&state.defaults);
    common.params.max_tokens = Some(DEFAULT_MAX_TOKENS);
    let mut r = CompletionRequest {
        common,
        prompts: Vec::new(),
        echo: false,
        logprobs: None,
        add_special_tokens: true,
    };
    let mut prompt = None;
    let mut unknown = Vec::new();
    for (k, v) in &obj {
        if common_field(&mut r.common, k, v)? {
            continue;
        }
        match k.as_str() {
            "prompt" => prompt = Some(parse_prompt(v)?),
            "echo" => r.echo = !v.is_null() && bool_of(k, v)?,
            "logprobs" => r.logprobs = (!v.is_null()).then(|| usize_of(k, v)).transpose()?,
            "add_special_tokens" => r.add_special_tokens = bool_of(k, v)?,
            _ => unknown.push(k.clone()),
        }
    }
    warn_unknown("/v1/completions", &unknown);
    r.prompts = prompt.ok_or_else(|| ApiError::field("prompt", "`prompt` is required"))?;
    r.common.params.logprobs = r.logprobs;
    if r.echo && (r.logprobs.is_some() || r.common.params.prompt_logprobs.is_some()) {
        return Err(ApiError::field(
            "echo",
            "`echo` together with `logprobs` or `prompt_logprobs` is not supported yet",
        ));
    }
    r.common.check()?;
    Ok(r)
}

pub async fn create(State(state): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let arrival = Instant::now();
    state.check_serving()?;
    let mut req = parse(&state, &body)?;
    let model = state.check_model(req.common.model.as_deref())?;
    let spec = req.common.structured.take();
    crate::structured::attach(&state, &mut req.common.params, spec).await?;
    let mut prompt_ids = Vec::with_capacity(req.prompts.len());
    for p in &req.prompts {
        prompt_ids.push(match p {
            Prompt::Text(t) => tokenize(&state, t.clone(), req.add_special_tokens).await?,
            Prompt::Ids(ids) => ids.clone(),
        });
    }
    let echo_text: Vec<String> = if req.echo {
        req.prompts
            .iter()
            .zip(&prompt_ids)
            .map(|(p, ids)| match p {
                Prompt::Text(t) => t.clone(),
                Prompt::Ids(_) => state.tokenizer.decode(ids, false).unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let params = &req.common.params;
    // All or nothing: a refused prompt fails the request before any is computed.
    let runs = prompt_ids
        .into_iter()
        .map(|ids| submit::submit(&state, ids, params, req.common.priority, arrival))
        .collect::<ApiResult<Vec<_>>>()?;
    if state.opts.log_requests {
        tracing::info!(num_prompts = runs.len(), ?params, "completion request");
    }
    let id = format!("cmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now_secs();
    let n = params.n;
    let prompt_tokens: Vec<usize> = runs.iter().map(|r| r.prompt_ids.len()).collect();
    if req.common.stream {
        return Ok(stream(
            state,
            req,
            runs,
            id,
            created,
            model,
            echo_text,
            prompt_tokens,
        ));
    }
    let mut results: Vec<RequestResult> = runs.iter().map(|_| RequestResult::new(n)).collect();
    let mut deltas = merged(runs);
    while let Some((i, d)) = deltas.next().await {
        results[i].add(d.map_err(|e| ApiError::internal(format!("{e:#}")))?);
    }
    if let Some(e) = results.iter().find_map(|r| r.error()) {
        return Err(ApiError::internal(e.to_string()));
    }
    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    for (pi, res) in results.iter().enumerate() {
        for (si, c) in res.completions.iter().enumerate() {
            completion_tokens += c.token_ids.len();
            let prefix = echo_text.get(pi).map_or("", String::as_str);
            let f = c.finish.as_ref();
            choices.push(json!({
                "index": pi * n + si,
                "text": format!("{prefix}{}", c.text),
                "logprobs": req.logprobs.map(|_| logprobs::completion(&state.tokenizer, &c.logprobs, 0)),
                "finish_reason": f.map(|f| f.reason),
                "stop_reason": f.and_then(|f| sse::stop_reason_json(&f.stop_reason)),
                "prompt_logprobs": params.prompt_logprobs.map(|_| logprobs::prompt(&state.tokenizer, &res.prompt_logprobs)),
            }));
        }
    }
    let prompt_total: usize = prompt_tokens.iter().sum();
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": sse::usage(prompt_total, completion_tokens),
    }))
    .into_response())
}

#[allow(clippy::too_many_arguments)]
fn stream(
    state: Shared,
    req: CompletionRequest,
    runs: Vec<submit::Running>,
    id: String,
    created: u64,
    model: String,
    echo_text: Vec<String>,
    prompt_tokens: Vec<usize>,
) -> Response {
    let n = req.common.params.n;
    let env = Envelope::new(
        id,
        "text_completion",
        created,
        model,
        prompt_tokens.iter().sum(),
    );
    let mut offsets = vec![0usize; prompt_tokens.len() * n];
    let mut echoed = vec![false; prompt_tokens.len() * n];
    let continuous = req.common.continuous_usage_stats;
    let want_lp = req.logprobs.is_some();
    let want_plp = req.common.params.prompt_logprobs.is_some();
    let e = env.clone();
    let events = merged(runs).map(move |(pi, d)| {
        let d = d?;
        let index = pi * n + d.seq_index;
        e.count(d.token_ids.len());
        let mut text = d.text;
        if !echoed[index] {
            echoed[index] = true;
            if let Some(p) = echo_text.get(pi) {
                text = format!("{p}{text}");
            }
        }
        let lp =
            want_lp.then(|| logprobs::completion(&state.tokenizer, &d.logprobs, offsets[index]));
        offsets[index] += text.chars().count();
        let f = d.finish.as_ref();
        if let Some(err) = f.and_then(|f| f.error.clone()) {
            anyhow::bail!(err);
        }
        let mut choice = json!({
            "index": index,
            "text": text,
            "logprobs": lp,
            "finish_reason": f.map(|f| f.reason),
            "stop_reason": f.and_then(|f| sse::stop_reason_json(&f.stop_reason)),
        });
        if want_plp && !d.prompt_logprobs.is_empty() {
            choice["prompt_logprobs"] = logprobs::prompt(&state.tokenizer, &d.prompt_logprobs);
        }
        Ok(vec![e.chunk(json!([choice]), continuous)])
    });
    sse::respond(events, env, req.common.include_usage)
}
