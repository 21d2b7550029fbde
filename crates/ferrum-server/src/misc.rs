//! The small endpoints: models, tokenize / detokenize, health, version, metrics.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::chat::render_messages;
use crate::error::{ApiError, ApiResult};
use crate::fields::{bool_of, ids_of, str_of};
use crate::logprobs::token_text;
use crate::request::json_object;
use crate::sse::now_secs;
use crate::state::Shared;
use crate::submit::tokenize as encode;

pub async fn models(State(state): State<Shared>) -> Response {
    let data: Vec<Value> = state
        .opts
        .served_model_names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": now_secs(),
                "owned_by": "ferrum",
                "root": state.opts.model_root,
                "parent": null,
                "max_model_len": state.max_model_len,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// vLLM's `/tokenize`: `{prompt}` or `{messages}` (rendered with the chat template).
pub async fn tokenize(State(state): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let obj = json_object(&body)?;
    state.check_model(obj.get("model").and_then(Value::as_str))?;
    let flag = |k: &str, default: bool| -> ApiResult<bool> {
        obj.get(k)
            .filter(|v| !v.is_null())
            .map_or(Ok(default), |v| bool_of(k, v))
    };
    let return_strs = flag("return_token_strs", false)?;
    let ids = match (obj.get("prompt"), obj.get("messages")) {
        (Some(p), None) => {
            encode(
                &state,
                str_of("prompt", p)?.to_string(),
                flag("add_special_tokens", true)?,
            )
            .await?
        }
        (None, Some(_)) => {
            let text = render_messages(&state, &obj).await?;
            encode(&state, text, flag("add_special_tokens", false)?).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `prompt` (text) or `messages` (a chat)",
            ));
        }
    };
    let strs: Option<Vec<String>> = return_strs.then(|| {
        ids.iter()
            .map(|&id| token_text(&state.tokenizer, id))
            .collect()
    });
    Ok(axum::Json(json!({
        "count": ids.len(),
        "max_model_len": state.max_model_len,
        "tokens": ids,
        "token_strs": strs,
    }))
    .into_response())
}

pub async fn detokenize(State(state): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let obj = json_object(&body)?;
    state.check_model(obj.get("model").and_then(Value::as_str))?;
    let ids = ids_of("tokens", obj.get("tokens").unwrap_or(&Value::Null))?;
    let vocab = state.tokenizer.vocab_size();
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::field(
            "tokens",
            format!("Token id {bad} is out of vocabulary"),
        ));
    }
    let text = state
        .tokenizer
        .decode(&ids, false)
        .map_err(|e| ApiError::bad_request(format!("cannot decode: {e:#}")))?;
    Ok(axum::Json(json!({"prompt": text})).into_response())
}

/// 200 while the engine runs; 503 once it died (a load balancer takes the replica out).
pub async fn health(State(state): State<Shared>) -> Response {
    match state.engine.death() {
        None => StatusCode::OK.into_response(),
        Some(why) => ApiError::unavailable(why.to_string()).into_response(),
    }
}

pub async fn version() -> Response {
    axum::Json(json!({"version": env!("CARGO_PKG_VERSION")})).into_response()
}

pub async fn metrics(State(state): State<Shared>) -> Response {
    let s = state.engine.snapshot();
    // vLLM exposes the spec-decode counters only when speculative decoding is configured
    let spec = state
        .engine
        .config()
        .speculative
        .map(|_| ferrum_metrics::SpecDecodeSnapshot {
            num_drafts: s.spec_decode.num_drafts,
            num_draft_tokens: s.spec_decode.num_draft_tokens,
            num_accepted_tokens: s.spec_decode.num_accepted_tokens,
            num_accepted_tokens_per_pos: s.spec_decode.num_accepted_tokens_per_pos.clone(),
        });
    let snap = ferrum_metrics::EngineSnapshot {
        num_running: s.num_running,
        num_waiting: s.num_waiting,
        kv_cache_usage: s.kv_cache_usage,
        prefix_cache_queries: s.prefix_cache_queries,
        prefix_cache_hits: s.prefix_cache_hits,
        num_preemptions: s.num_preemptions,
        prompt_tokens: s.prompt_tokens,
        generation_tokens: s.generation_tokens,
    };
    let text = state.metrics.render_with_spec(&snap, spec.as_ref());
    ([(header::CONTENT_TYPE, ferrum_metrics::CONTENT_TYPE)], text).into_response()
}
