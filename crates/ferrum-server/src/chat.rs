//! `POST /v1/chat/completions`: messages rendered with the model's chat template (off the
//! async runtime), generated text split into reasoning, content and tool calls by the
//! configured parsers, streamed or whole.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::chat_parse::{ChoiceParser, ParseSetup};
use crate::error::{ApiError, ApiResult};
use crate::fields::{bool_of, usize_of};
use crate::logprobs;
use crate::request::{Common, common_field, json_object, warn_unknown};
use crate::sse::{self, Envelope, now_secs};
use crate::state::Shared;
use crate::submit::{self, merged, tokenize};
use crate::tool_stream::ForcedStream;

struct ChatRequest {
    common: Common,
    logprobs: bool,
    top_logprobs: Option<usize>,
    setup: ParseSetup,
}

/// Renders `messages` (and `tools`, `documents`, `chat_template_kwargs`,
/// `add_generation_prompt`, `continue_final_message`) with the chat template, on the
/// blocking pool. Shared with `/tokenize`.
pub async fn render_messages(state: &Shared, obj: &Map<String, Value>) -> ApiResult<String> {
    let messages = normalize_messages(obj.get("messages").unwrap_or(&Value::Null))?;
    let flag = |k: &str, default: bool| -> ApiResult<bool> {
        obj.get(k)
            .filter(|v| !v.is_null())
            .map_or(Ok(default), |v| bool_of(k, v))
    };
    let continue_final = flag("continue_final_message", false)?;
    let add_generation_prompt = flag("add_generation_prompt", !continue_final)?;
    if continue_final && add_generation_prompt {
        return Err(ApiError::bad_request(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        ));
    }
    if obj.get("chat_template").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::field(
            "chat_template",
            "a per-request `chat_template` is not accepted; start the server with --chat-template",
        ));
    }
    let mut kwargs = state
        .opts
        .default_chat_template_kwargs
        .clone()
        .unwrap_or_else(|| json!({}));
    match obj.get("chat_template_kwargs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                kwargs[k] = v.clone();
            }
        }
        Some(v) => {
            return Err(ApiError::field(
                "chat_template_kwargs",
                format!("`chat_template_kwargs` must be an object, got {v}"),
            ));
        }
    }
    let mut extra = json!({"chat_template_kwargs": kwargs});
    for k in ["tools", "documents"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            extra[k] = v.clone();
        }
    }
    let last = messages.as_array().and_then(|a| a.last()).cloned();
    let tok = state.tokenizer.clone();
    let text = tokio::task::spawn_blocking(move || {
        tok.apply_chat_template(&messages, add_generation_prompt, Some(&extra))
    })
    .await
    .map_err(|e| ApiError::internal(format!("chat template task failed: {e}")))?
    .map_err(|e| ApiError::bad_request(format!("the chat template failed: {e:#}")))?;
    if !continue_final {
        return Ok(text);
    }
    // transformers' rule: cut the rendering right after the final message's content, so the
    // model continues it instead of starting a new turn.
    let content = last
        .as_ref()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    match text.rfind(&content) {
        Some(at) if !content.is_empty() => Ok(text[..at + content.len()].to_string()),
        _ => Err(ApiError::field(
            "continue_final_message",
            "the final message's content was not found in the rendered chat template",
        )),
    }
}

/// Messages as templates expect them: text content parts joined into one string (as vLLM's
/// "string" content format), anything else refused by name.
fn normalize_messages(v: &Value) -> ApiResult<Value> {
    let arr = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::field("messages", "`messages` must be a non-empty list"))?;
    let mut out = Vec::with_capacity(arr.len());
    for (i, m) in arr.iter().enumerate() {
        let mut m = m.as_object().cloned().ok_or_else(|| {
            ApiError::field("messages", format!("messages[{i}] must be an object"))
        })?;
        match m.get("role").and_then(Value::as_str) {
            Some(_) => {}
            None => {
                return Err(ApiError::field(
                    "messages",
                    format!("messages[{i}] needs a `role` string"),
                ));
            }
        }
        if let Some(Value::Array(parts)) = m.get("content") {
            let mut texts = Vec::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(
                        p.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                    Some(t) => {
                        return Err(ApiError::field(
                            "messages",
                            format!(
                                "content parts of type `{t}` (messages[{i}]) are not supported yet: this model takes text only"
                            ),
                        ));
                    }
                    None => {
                        return Err(ApiError::field(
                            "messages",
                            format!("messages[{i}]: a content part needs a `type`"),
                        ));
                    }
                }
            }
            m.insert("content".into(), Value::String(texts.join("\n")));
        }
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}

fn parse(state: &Shared, obj: &Map<String, Value>) -> ApiResult<ChatRequest> {
    let mut r = ChatRequest {
        common: Common::new(&state.defaults),
        logprobs: false,
        top_logprobs: None,
        setup: ParseSetup::default(),
    };
    let mut unknown = Vec::new();
    for (k, v) in obj {
        if common_field(&mut r.common, k, v)? {
            continue;
        }
        match k.as_str() {
            // Read by `render_messages` / the parse setup.
            "messages"
            | "tools"
            | "documents"
            | "chat_template_kwargs"
            | "add_generation_prompt"
            | "continue_final_message"
            | "chat_template"
            | "tool_choice"
            | "parallel_tool_calls" => {}
            "logprobs" => r.logprobs = !v.is_null() && bool_of(k, v)?,
            "top_logprobs" => {
                r.top_logprobs = (!v.is_null()).then(|| usize_of(k, v)).transpose()?
            }
            "echo" if v.is_null() || v == &Value::Bool(false) => {}
            "echo" => return Err(ApiError::field(k, "`echo` is not supported yet for chat")),
            "add_special_tokens" if v.is_null() || v == &Value::Bool(false) => {}
            "add_special_tokens" => {
                return Err(ApiError::field(
                    k,
                    "`add_special_tokens: true` is not supported yet for chat",
                ));
            }
            _ => unknown.push(k.clone()),
        }
    }
    warn_unknown("/v1/chat/completions", &unknown);
    if r.top_logprobs.is_some_and(|k| k > 0) && !r.logprobs {
        return Err(ApiError::field(
            "top_logprobs",
            "when using `top_logprobs`, `logprobs` must be set to true.",
        ));
    }
    r.common.params.logprobs = r.logprobs.then(|| r.top_logprobs.unwrap_or(0));
    r.setup = ParseSetup::from_request(state, obj)?;
    if r.setup.keeps_special_tokens() {
        r.common.params.skip_special_tokens = false;
    }
    r.common.check()?;
    Ok(r)
}

pub async fn create(State(state): State<Shared>, body: Bytes) -> ApiResult<Response> {
    let arrival = Instant::now();
    state.check_serving()?;
    let obj = json_object(&body)?;
    let mut req = parse(&state, &obj)?;
    let model = state.check_model(req.common.model.as_deref())?;
    // a forced tool call (`tool_choice` "required" or named) constrains the output to the
    // tools' schema, over any other structured-output field (as vLLM)
    if let Some((_, schema)) = &req.setup.forced {
        req.common.structured = Some((
            "tool_choice".into(),
            ferrum_structured::ConstraintSpec::JsonSchema {
                schema: schema.clone(),
                strict: true,
            },
        ));
    }
    let spec = req.common.structured.take();
    crate::structured::attach(&state, &mut req.common.params, spec).await?;
    let prompt = render_messages(&state, &obj).await?;
    // The template holds the special tokens already (vLLM's default for chat).
    let ids = tokenize(&state, prompt, false).await?;
    let params = &req.common.params;
    let run = submit::submit(&state, ids, params, req.common.priority, arrival)?;
    if state.opts.log_requests {
        tracing::info!(
            prompt_tokens = run.prompt_ids.len(),
            ?params,
            "chat request"
        );
    }
    let env = Envelope::new(
        format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        "chat.completion.chunk",
        now_secs(),
        model,
        run.prompt_ids.len(),
    );
    let n = params.n;
    let mut parsers: Vec<ChoiceParser> = (0..n).map(|_| req.setup.parser()).collect();
    if req.common.stream {
        return Ok(stream(state, req, run, env, parsers));
    }
    let mut res = crate::output::RequestResult::new(n);
    let mut deltas = merged(vec![run]);
    while let Some((_, d)) = deltas.next().await {
        res.add(d.map_err(|e| ApiError::internal(format!("{e:#}")))?);
    }
    if let Some(e) = res.error() {
        return Err(ApiError::internal(e.to_string()));
    }
    let mut choices = Vec::new();
    let mut completion_tokens = 0;
    for (i, (c, p)) in res.completions.iter().zip(&mut parsers).enumerate() {
        completion_tokens += c.token_ids.len();
        let mut m = p.push(&c.text);
        m.append(p.finish());
        let f = c.finish.as_ref();
        let mut message = json!({
            "role": state.opts.response_role,
            "content": (!m.content.is_empty()).then_some(&m.content),
            "tool_calls": m.tool_calls_whole().unwrap_or_else(|| json!([])),
        });
        let mut finish_reason = f.map(|f| p.finish_reason(f.reason));
        if let Some((forced, _)) = &req.setup.forced
            && let Some(calls) = forced.tool_calls(&m.content)
        {
            message["content"] = json!("");
            message["tool_calls"] = calls;
            if *forced == crate::chat_parse::ForcedTool::Required && finish_reason == Some("stop") {
                finish_reason = Some("tool_calls");
            }
        }
        if p.reasoning_enabled() {
            let r = (!m.reasoning.is_empty()).then_some(&m.reasoning);
            message["reasoning_content"] = json!(r);
            message["reasoning"] = json!(r);
        }
        choices.push(json!({
            "index": i,
            "message": message,
            "logprobs": req.logprobs.then(|| json!({"content": logprobs::chat_content(&state.tokenizer, &c.logprobs)})),
            "finish_reason": finish_reason,
            "stop_reason": f.and_then(|f| sse::stop_reason_json(&f.stop_reason)),
        }));
    }
    let prompt_logprobs = params
        .prompt_logprobs
        .map(|_| logprobs::prompt(&state.tokenizer, &res.prompt_logprobs));
    Ok(axum::Json(json!({
        "id": env.id,
        "object": "chat.completion",
        "created": env.created,
        "model": env.model,
        "choices": choices,
        "usage": sse::usage(env.prompt_tokens, completion_tokens),
        "prompt_logprobs": prompt_logprobs,
    }))
    .into_response())
}

fn stream(
    state: Shared,
    req: ChatRequest,
    run: submit::Running,
    env: Envelope,
    mut parsers: Vec<ChoiceParser>,
) -> Response {
    let n = req.common.params.n;
    let continuous = req.common.continuous_usage_stats;
    let role = state.opts.response_role.clone();
    let want_plp = req.common.params.prompt_logprobs.is_some();
    let want_lp = req.logprobs;
    // A forced tool call turns each choice's content into `tool_calls` deltas as it arrives.
    let mut forced: Vec<Option<ForcedStream>> = (0..n)
        .map(|_| req.setup.forced.as_ref().map(|(f, _)| ForcedStream::new(f)))
        .collect();
    let e = env.clone();
    // OpenAI's first chunk per choice carries the role and empty content.
    let first: Vec<Value> = (0..n)
        .map(|i| {
            e.chunk(
                json!([{"index": i, "delta": {"role": role, "content": ""}, "logprobs": null, "finish_reason": null}]),
                continuous,
            )
        })
        .collect();
    let head = futures::stream::once(async move { Ok(first) });
    let events = merged(vec![run]).map(move |(_, d)| {
        let d = d?;
        e.count(d.token_ids.len());
        let p = &mut parsers[d.seq_index];
        let mut m = p.push(&d.text);
        let f = d.finish.as_ref();
        if let Some(err) = f.and_then(|f| f.error.clone()) {
            anyhow::bail!(err);
        }
        if f.is_some() {
            m.append(p.finish());
        }
        let fs = &mut forced[d.seq_index];
        // (a named call's header goes out with its first text, or at the end if none came)
        if let Some(fs) = fs.as_mut()
            && (!m.content.is_empty() || f.is_some())
        {
            m.tool_calls
                .extend(fs.push(&std::mem::take(&mut m.content)));
        }
        let finish_reason = f.map(|f| match fs {
            Some(fs) => fs.finish_reason(f.reason),
            None => p.finish_reason(f.reason),
        });
        let mut delta = Map::new();
        if !m.content.is_empty() {
            delta.insert("content".into(), json!(m.content));
        }
        if !m.reasoning.is_empty() {
            delta.insert("reasoning_content".into(), json!(m.reasoning));
            delta.insert("reasoning".into(), json!(m.reasoning));
        }
        if let Some(calls) = m.tool_call_deltas() {
            delta.insert("tool_calls".into(), calls);
        }
        let lp = want_lp
            .then(|| json!({"content": logprobs::chat_content(&state.tokenizer, &d.logprobs)}));
        if delta.is_empty() && f.is_none() && lp.is_none() && d.prompt_logprobs.is_empty() {
            return Ok(vec![]);
        }
        let mut chunk = e.chunk(
            json!([{
                "index": d.seq_index,
                "delta": delta,
                "logprobs": lp,
                "finish_reason": finish_reason,
                "stop_reason": f.and_then(|f| sse::stop_reason_json(&f.stop_reason)),
            }]),
            continuous,
        );
        if want_plp && !d.prompt_logprobs.is_empty() {
            chunk["prompt_logprobs"] = logprobs::prompt(&state.tokenizer, &d.prompt_logprobs);
        }
        Ok(vec![chunk])
    });
    sse::respond(head.chain(events), env, req.common.include_usage)
}
