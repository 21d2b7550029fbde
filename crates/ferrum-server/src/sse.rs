//! Server-sent events as OpenAI streams them: one `data: {json}` per chunk, an error chunk if
//! generation fails midway, the usage chunk when asked, and `data: [DONE]`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::output::StopReason;

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": null,
    })
}

/// vLLM's `stop_reason`: the stop token id or the stop string; `null` for EOS and length.
pub fn stop_reason_json(r: &Option<StopReason>) -> Option<Value> {
    match r {
        None => None,
        Some(StopReason::Token(id)) => Some(json!(id)),
        Some(StopReason::Text(s)) => Some(json!(s)),
    }
}

/// The envelope every chunk of one stream shares, and the running token count its usage
/// chunks report.
#[derive(Clone)]
pub struct Envelope {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub prompt_tokens: usize,
    pub generated: Arc<AtomicUsize>,
}

impl Envelope {
    pub fn new(
        id: String,
        object: &'static str,
        created: u64,
        model: String,
        prompt_tokens: usize,
    ) -> Self {
        Self {
            id,
            object,
            created,
            model,
            prompt_tokens,
            generated: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn count(&self, tokens: usize) {
        self.generated.fetch_add(tokens, Ordering::Relaxed);
    }

    pub fn usage(&self) -> Value {
        usage(self.prompt_tokens, self.generated.load(Ordering::Relaxed))
    }

    /// A chunk with these choices (and usage, for `continuous_usage_stats`).
    pub fn chunk(&self, choices: Value, with_usage: bool) -> Value {
        let mut c = json!({"id": self.id, "object": self.object, "created": self.created, "model": self.model, "choices": choices});
        if with_usage {
            c["usage"] = self.usage();
        }
        c
    }
}

/// Streams `events` (each item: chunks to send, or the error that ends the stream), then the
/// usage chunk if `include_usage`, then `[DONE]`. Dropping the response (client gone) drops
/// `events`, which aborts the requests behind it.
pub fn respond(
    events: impl Stream<Item = anyhow::Result<Vec<Value>>> + Send + 'static,
    env: Envelope,
    include_usage: bool,
) -> Response {
    let body = events
        .map(|r| match r {
            Ok(chunks) => chunks,
            Err(e) => vec![ApiError::internal(format!("{e:#}")).body()],
        })
        .scan(false, |failed, chunks| {
            // After an error chunk nothing else is generated.
            if *failed {
                return futures::future::ready(None);
            }
            *failed = chunks.iter().any(|c| c.get("error").is_some());
            futures::future::ready(Some(chunks))
        })
        .flat_map(stream::iter)
        .chain(
            stream::once(async move { include_usage.then(|| env.chunk(json!([]), true)) })
                .filter_map(futures::future::ready),
        )
        .map(|v| Ok::<_, Infallible>(Event::default().data(v.to_string())))
        .chain(stream::once(async { Ok(Event::default().data("[DONE]")) }));
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}
