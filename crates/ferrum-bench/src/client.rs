//! One streamed request to an OpenAI-compatible server, timed as vLLM's
//! `async_request_openai_completions` / `async_request_openai_chat_completions` do it.

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::metrics::RequestOutcome;
use crate::sse::SseBuffer;

/// Seconds on a monotonic clock shared by all requests (vLLM's `time.perf_counter()`).
pub fn now() -> f64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Which API the requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions` (backends `openai` and `vllm`).
    Completions,
    /// `/v1/chat/completions` (backend `openai-chat`).
    Chat,
}

/// What every request shares.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub api: Api,
    pub api_url: String,
    /// Sent as the request's `model`.
    pub model: String,
    pub headers: Vec<(String, String)>,
    pub ignore_eos: bool,
    pub logprobs: Option<u32>,
    /// Merged into every payload last (sampling options, `--extra-body`).
    pub extra_body: Map<String, Value>,
}

/// One request's input.
#[derive(Debug, Clone)]
pub struct RequestInput {
    pub prompt: String,
    pub prompt_len: usize,
    pub output_len: usize,
    pub request_id: Option<String>,
}

/// The JSON body vLLM sends for this input.
pub fn payload(ep: &Endpoint, input: &RequestInput) -> Value {
    let mut p = match ep.api {
        Api::Completions => json!({
            "model": ep.model,
            "prompt": input.prompt,
            "repetition_penalty": 1.0,
            "max_tokens": input.output_len,
            "logprobs": ep.logprobs,
            "stream": true,
            "stream_options": {"include_usage": true},
        }),
        Api::Chat => json!({
            "model": ep.model,
            "messages": [{"role": "user", "content": [{"type": "text", "text": input.prompt}]}],
            "max_completion_tokens": input.output_len,
            "stream": true,
            "stream_options": {"include_usage": true},
        }),
    };
    let obj = p.as_object_mut().expect("payload is an object");
    if ep.ignore_eos {
        obj.insert("ignore_eos".into(), Value::Bool(true));
    }
    for (k, v) in &ep.extra_body {
        obj.insert(k.clone(), v.clone());
    }
    p
}

/// Sends one request and measures it; every failure is recorded in the outcome, never
/// returned as an error.
pub async fn send(client: &reqwest::Client, ep: &Endpoint, input: &RequestInput) -> RequestOutcome {
    let mut out = RequestOutcome {
        prompt_len: input.prompt_len,
        ..RequestOutcome::default()
    };
    let st = now();
    out.start_time = st;
    if let Err(e) = stream_into(client, ep, input, st, &mut out).await {
        out.success = false;
        out.error = format!("{e:#}");
    }
    out
}

async fn stream_into(
    client: &reqwest::Client,
    ep: &Endpoint,
    input: &RequestInput,
    st: f64,
    out: &mut RequestOutcome,
) -> Result<()> {
    let mut req = client.post(&ep.api_url).json(&payload(ep, input));
    if let Ok(key) = std::env::var("OPENAI_API_KEY")
        && !key.is_empty()
    {
        req = req.bearer_auth(key);
    }
    for (k, v) in &ep.headers {
        req = req.header(k, v);
    }
    if let Some(id) = &input.request_id {
        req = req.header("x-request-id", id);
    }
    let resp = req.send().await?;
    let status = resp.status();
    if status != reqwest::StatusCode::OK {
        // vLLM records the reason phrase; the body (the server's error message) is kept
        // too, since it is usually what explains the failure.
        let reason = status.canonical_reason().unwrap_or("").to_string();
        let body = resp.text().await.unwrap_or_default();
        let body = body.trim();
        out.error = if body.is_empty() {
            reason
        } else {
            format!("{reason}: {body}")
        };
        return Ok(());
    }

    let mut sse = SseBuffer::new();
    let mut stream = resp.bytes_stream();
    let mut first = false;
    let mut last = st;
    let mut handle = |data: String, out: &mut RequestOutcome| -> Result<()> {
        if data.trim() == "[DONE]" {
            return Ok(());
        }
        let ts = now();
        let v: Value = serde_json::from_str(&data)
            .with_context(|| format!("invalid JSON in stream: {data}"))?;
        if let Some(choice) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        {
            let text = match ep.api {
                Api::Completions => choice.get("text"),
                Api::Chat => choice.get("delta").and_then(|d| d.get("content")),
            };
            if !first {
                first = true;
                out.ttft = ts - st;
            } else {
                out.itl.push(ts - last);
            }
            last = ts;
            out.generated_text
                .push_str(text.and_then(Value::as_str).unwrap_or(""));
        }
        // vLLM reads usage only from choice-less chunks; a server that attaches usage to
        // every chunk (continuous usage stats) is counted correctly by taking the last.
        if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
            if let Some(n) = usage.get("completion_tokens").and_then(Value::as_u64) {
                out.output_tokens = Some(n as usize);
            }
            if let Some(n) = usage.get("prompt_tokens").and_then(Value::as_u64) {
                out.prompt_len = n as usize;
            }
        }
        Ok(())
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the response stream")?;
        for data in sse.push(&chunk) {
            handle(data, out)?;
        }
    }
    if let Some(data) = sse.finish() {
        handle(data, out)?;
    }
    if first {
        out.success = true;
    } else {
        out.error = "Never received a valid chunk to calculate TTFT.\
                     This response will be marked as failed!"
            .into();
    }
    out.latency = last - st;
    Ok(())
}

/// `GET {base_url}/v1/models`: the first model's `id` (the name to send) and `root` (what
/// vLLM reports as the model id; `id` again when the server gives no root).
pub async fn first_model(client: &reqwest::Client, base_url: &str) -> Result<(String, String)> {
    let url = format!("{base_url}/v1/models");
    let fetch = async {
        let resp = client.get(&url).send().await?.error_for_status()?;
        let v: Value = resp.json().await?;
        anyhow::Ok(v)
    };
    let v = fetch.await.with_context(|| {
        format!(
            "Failed to fetch models from server at {url}. Check that:\n\
             1. The server is running\n2. The server URL is correct"
        )
    })?;
    let Some(first) = v
        .get("data")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
    else {
        bail!(
            "No models found on the server at {base_url}. Make sure the server is running \
             and has models loaded."
        );
    };
    let id = first
        .get("id")
        .and_then(Value::as_str)
        .context("model entry without an id")?
        .to_string();
    let root = first
        .get("root")
        .and_then(Value::as_str)
        .map_or_else(|| id.clone(), str::to_string);
    Ok((id, root))
}
