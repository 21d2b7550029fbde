//! `run_serve` against an in-process mock OpenAI server (axum) that streams SSE chunks
//! `data: {...}\n\n`, a usage chunk and `data: [DONE]`, and records what it was sent.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use ferrum_bench::{ServeArgs, run_serve};
use futures::SinkExt;
use serde_json::{Value, json};

/// Prompt tokens the mock claims in its usage chunk (the benchmark must report these).
const PROMPT_TOKENS: usize = 17;

#[derive(Default)]
struct Mock {
    send_usage: bool,
    /// Answer the n-th request (0-based) with a 500.
    fail_request: Option<usize>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    tokens_sent: AtomicUsize,
    request_ids: Mutex<Vec<String>>,
    bodies: Mutex<Vec<Value>>,
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": "mock-model", "object": "model", "root": "/models/mock-model.gguf"}
    ]}))
}

async fn generate(st: Arc<Mock>, headers: HeaderMap, body: Value, chat: bool) -> Response {
    let n = st.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        st.request_ids.lock().unwrap().push(id.to_string());
    }
    st.bodies.lock().unwrap().push(body.clone());
    if st.fail_request == Some(n) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    let max_key = if chat {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let max_tokens = body[max_key].as_u64().unwrap_or(16) as usize;
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);

    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(4);
    tokio::spawn(async move {
        // Hold the request briefly so concurrent requests overlap.
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..max_tokens {
            // " the" is one token in SmolLM2's vocabulary, so the text counts as it streams.
            let choice = if chat {
                json!({"index": 0, "delta": {"content": " the"}})
            } else {
                json!({"index": 0, "text": " the"})
            };
            let chunk = json!({"id": "x", "object": "text_completion", "choices": [choice]});
            // Split one event across two writes, as networks do.
            let event = format!("data: {chunk}\n\n");
            let (a, b) = event.split_at(event.len() / 2);
            let _ = tx.send(Ok(Bytes::from(a.to_string()))).await;
            let _ = tx.send(Ok(Bytes::from(b.to_string()))).await;
            st.tokens_sent.fetch_add(1, Ordering::SeqCst);
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if st.send_usage {
            let usage = json!({"id": "x", "choices": [], "usage": {
                "prompt_tokens": PROMPT_TOKENS, "completion_tokens": max_tokens,
                "total_tokens": PROMPT_TOKENS + max_tokens}});
            let _ = tx.send(Ok(Bytes::from(format!("data: {usage}\n\n")))).await;
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(rx))
        .unwrap()
}

/// Serves the mock on a free port; returns its base URL.
async fn serve(mock: Arc<Mock>) -> String {
    let app = axum::Router::new()
        .route("/v1/models", get(models))
        .route(
            "/v1/completions",
            post(|State(st), h, Json(b)| generate(st, h, b, false)),
        )
        .route(
            "/v1/chat/completions",
            post(|State(st), h, Json(b)| generate(st, h, b, true)),
        )
        .with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Without TCP_NODELAY, small SSE writes wait on delayed ACKs (~40 ms) and the timings
    // measure Nagle's algorithm instead of the stream.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn tokenizer_path() -> Option<PathBuf> {
    let p = ferrum_gguf::default_model_path();
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} missing (run scripts/setup.sh)", p.display());
        None
    }
}

fn args(url: &str, tok: &std::path::Path, extra: &[&str]) -> ServeArgs {
    let mut a = vec![
        "--base-url",
        url,
        "--tokenizer",
        tok.to_str().unwrap(),
        "--num-prompts",
        "20",
        "--max-concurrency",
        "4",
        "--random-input-len",
        "32",
        "--random-output-len",
        "8",
        "--random-range-ratio",
        "0.5",
        "--disable-tqdm",
    ];
    a.extend_from_slice(extra);
    ServeArgs::from_args(a).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_stream_with_usage() {
    let Some(tok) = tokenizer_path() else { return };
    let mock = Arc::new(Mock {
        send_usage: true,
        ..Mock::default()
    });
    let url = serve(mock.clone()).await;
    let dir = std::env::temp_dir().join(format!("ferrum-bench-e2e-{}", std::process::id()));
    let dir_s = dir.to_str().unwrap().to_string();
    let a = args(
        &url,
        &tok,
        &[
            "--save-result",
            "--result-dir",
            &dir_s,
            "--result-filename",
            "r.json",
        ],
    );
    let r = run_serve(&a).await.unwrap();

    assert_eq!((r.completed, r.failed), (20, 0));
    let sent = mock.tokens_sent.load(Ordering::SeqCst);
    assert_eq!(r.total_output_tokens, sent);
    assert_eq!(r.output_lens.iter().sum::<usize>(), sent);
    // Output lengths drawn from [4, 12] are what the mock was asked for and sent.
    assert!(r.output_lens.iter().all(|&n| (4..=12).contains(&n)));
    assert_eq!(
        r.total_input_tokens,
        20 * PROMPT_TOKENS,
        "usage.prompt_tokens wins"
    );
    assert!(
        r.itls
            .iter()
            .zip(&r.output_lens)
            .all(|(itl, &n)| itl.len() == n - 1)
    );
    assert!(
        r.ttfts
            .iter()
            .zip(&r.latencies)
            .all(|(t, l)| *t >= 0.005 && l >= t)
    );
    assert!(mock.max_in_flight.load(Ordering::SeqCst) <= 4);
    assert!(r.max_concurrent_requests <= 4 && r.max_concurrent_requests >= 1);
    assert!(
        r.report
            .starts_with("============ Serving Benchmark Result ============\n")
    );
    assert!(
        r.report
            .contains(&format!("{:<40} {:<10}\n", "Successful requests:", 20))
    );
    assert!(
        r.report
            .contains("Maximum request concurrency:             4         \n")
    );

    // What the server received: vLLM's payload, one id per request.
    let ids: HashSet<String> = mock.request_ids.lock().unwrap().iter().cloned().collect();
    assert_eq!(ids.len(), 20);
    let body = mock.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "mock-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["ignore_eos"], true, "random dataset ignores EOS");
    assert!(body["prompt"].is_string());

    // The saved JSON has vLLM's keys.
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(saved["completed"], 20);
    assert_eq!(saved["total_output_tokens"], sent);
    assert_eq!(saved["request_rate"], "inf");
    assert_eq!(saved["max_concurrency"], 4);
    assert_eq!(saved["model_id"], "/models/mock-model.gguf");
    assert_eq!(saved["backend"], "openai");
    assert!(saved["p99_ttft_ms"].is_number() && saved["latencies"].is_array());
    assert!(
        saved.get("ttfts").is_none(),
        "per-request lists only with --save-detailed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_without_usage_counts_text_and_reports_failures() {
    let Some(tok) = tokenizer_path() else { return };
    let mock = Arc::new(Mock {
        send_usage: false,
        fail_request: Some(5),
        ..Mock::default()
    });
    let url = serve(mock.clone()).await;
    let a = args(
        &url,
        &tok,
        &[
            "--backend",
            "openai-chat",
            "--request-rate",
            "200",
            "--temperature",
            "0",
        ],
    );
    let r = run_serve(&a).await.unwrap();

    assert_eq!((r.completed, r.failed), (19, 1));
    // No usage: tokens are counted from the text, one per " the".
    assert_eq!(
        r.total_output_tokens,
        mock.tokens_sent.load(Ordering::SeqCst)
    );
    let err = r.errors.iter().find(|e| !e.is_empty()).unwrap();
    assert!(err.starts_with("Internal Server Error"), "{err}");
    assert!(
        r.report
            .contains("Failed requests:                         1         \n")
    );
    assert!(
        r.report
            .contains("Request rate configured (RPS):           200.00    \n")
    );
    let body = mock.bodies.lock().unwrap()[0].clone();
    assert_eq!(body["messages"][0]["content"][0]["type"], "text");
    assert_eq!(body["temperature"], 0.0);
    assert!(body["max_completion_tokens"].is_u64());
}
