//! ferrum-server: the OpenAI-compatible HTTP server (axum) and the output side of a request
//! that it shares with the offline commands.
//!
//! Routes as vLLM's: `/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/tokenize`,
//! `/detokenize`, `/health`, `/version`, `/metrics`. Errors use OpenAI's body.

pub mod chat;
pub mod chat_parse;
pub mod completions;
pub mod error;
pub mod fields;
pub mod logprobs;
pub mod misc;
pub mod output;
pub mod request;
pub mod sse;
pub mod state;
pub mod stats_log;
pub mod structured;
pub mod submit;
pub mod tool_stream;
pub mod track;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

pub use error::ApiError;
pub use state::{AppState, Cors, ServerOptions, Shared};

/// The largest request body accepted (a 128k-token prompt as text is well under this).
const MAX_BODY_BYTES: usize = 32 << 20;

pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat::create))
        .route("/v1/completions", post(completions::create))
        .route("/v1/models", get(misc::models))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let routes = Router::new()
        .merge(api)
        .route("/tokenize", post(misc::tokenize))
        .route("/detokenize", post(misc::detokenize))
        .route("/health", get(misc::health))
        .route("/version", get(misc::version))
        .route("/metrics", get(misc::metrics));
    // `--root-path /p`: `/p/v1/models` reaches `/v1/models` too (a proxy that forwards the
    // prefix), as under uvicorn and Starlette; paths without it still work
    let routes = match root_prefix(state.opts.root_path.as_deref()) {
        Some(p) => Router::new().nest(p, routes.clone()).merge(routes),
        None => routes,
    };
    let access_log = state.opts.access_log;
    routes
        .fallback(not_found)
        .layer(middleware::from_fn(move |req, next| {
            log_access(access_log, req, next)
        }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(openai_errors))
        // A bug in one request's handling answers that request with a 500, nothing else.
        .layer(CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!("a request handler panicked: {what}");
                ApiError::internal(format!("internal error while handling the request: {what}"))
                    .into_response()
            },
        ))
        .layer(cors(state.opts.cors.clone().unwrap_or_default()))
        .with_state(state)
}

/// The route prefix of `--root-path`: none for an empty or "/" root (validated at start-up to
/// begin with "/").
pub fn root_prefix(root_path: Option<&str>) -> Option<&str> {
    root_path
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
}

/// uvicorn's access-log line for each answered request, when on: the client's address, the
/// request line and the status.
async fn log_access(on: bool, req: Request, next: Next) -> Response {
    if !on {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.to_string());
    let line = format!("{} {} {:?}", req.method(), req.uri(), req.version());
    let res = next.run(req).await;
    let status = res.status();
    tracing::info!(
        target: "ferrum::access",
        "{peer} - \"{line}\" {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    res
}

/// Errors axum answers by itself (405 for a known path with another method, 413 past the body
/// limit) come with an empty or plain-text body; every error gets OpenAI's body instead (as
/// vLLM's), keeping its status and `Allow` header. Answers that leave the request body unread
/// (401, 404, 405, 413: refused before any handler reads it) close the connection, since the
/// server cannot find where the next request starts: they say so (`Connection: close`, as h11
/// does for vLLM), or a keep-alive client sends its next request into the closed socket.
async fn openai_errors(req: Request, next: Next) -> Response {
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .map_or(req.headers().contains_key(header::TRANSFER_ENCODING), |v| {
            v.as_bytes() != b"0"
        });
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut out = if is_json {
        res
    } else {
        let (parts, body) = res.into_parts();
        let text = axum::body::to_bytes(body, 64 << 10)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text).trim().to_string();
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_string()
        } else {
            text
        };
        let mut out = ApiError {
            status,
            message,
            param: None,
        }
        .into_response();
        if let Some(allow) = parts.headers.get(header::ALLOW) {
            out.headers_mut().insert(header::ALLOW, allow.clone());
        }
        out
    };
    let unread = matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::NOT_FOUND
            | StatusCode::METHOD_NOT_ALLOWED
            | StatusCode::PAYLOAD_TOO_LARGE
    );
    if has_body && unread {
        out.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    out
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// vLLM's `--api-key`: every `/v1` route needs `Authorization: Bearer <key>`; keys are
/// compared in constant time.
async fn auth(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if state.opts.api_keys.is_empty() || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok = state.opts.api_keys.iter().fold(false, |acc, k| {
        acc | constant_time_eq(k.as_bytes(), given.as_bytes())
    });
    if ok {
        next.run(req).await
    } else {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Unauthorized".into(),
            param: None,
        }
        .into_response()
    }
}

/// Equal-length inputs take the same time whatever they hold; a length mismatch reveals only
/// the length.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// vLLM always installs CORS with its flags' values (default: everything allowed, no
/// credentials).
fn cors(c: Cors) -> CorsLayer {
    let star = |v: &[String]| v.is_empty() || v.iter().any(|s| s == "*");
    let mut layer = CorsLayer::new();
    layer = if star(&c.origins) {
        layer.allow_origin(AllowOrigin::any())
    } else {
        layer.allow_origin(
            c.origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    layer = if star(&c.methods) {
        layer.allow_methods(AllowMethods::any())
    } else {
        layer.allow_methods(
            c.methods
                .iter()
                .filter_map(|m| m.parse::<Method>().ok())
                .collect::<Vec<_>>(),
        )
    };
    layer = if star(&c.headers) {
        layer.allow_headers(AllowHeaders::any())
    } else {
        layer.allow_headers(
            c.headers
                .iter()
                .filter_map(|h| h.parse::<header::HeaderName>().ok())
                .collect::<Vec<_>>(),
        )
    };
    if c.credentials && !star(&c.origins) {
        layer = layer.allow_credentials(true);
    }
    layer
}

/// Serves until SIGINT/SIGTERM; then stops accepting, lets in-flight requests finish for up
/// to `drain_timeout`, and returns (the caller shuts the engine down, aborting the rest).
pub async fn serve(
    state: Shared,
    listener: tokio::net::TcpListener,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            "shutting down: no new requests; waiting up to {drain_timeout:?} for in-flight ones"
        );
        signal_state.draining.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
    });
    let mut graceful_rx = stop_rx.clone();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful_rx.wait_for(|s| *s).await;
    });
    let mut deadline_rx = stop_rx;
    tokio::select! {
        r = server => r,
        _ = async move {
            let _ = deadline_rx.wait_for(|s| *s).await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {drain_timeout:?}: aborting them");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
