//! What every handler shares: the engine, the tokenizer, the served names and the options of
//! `ferrum serve` that shape replies.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrum_engine::{EngineHandle, SamplingParams};
use ferrum_tokenizer::Tokenizer;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Options of `ferrum serve` (vLLM's flags) that the server itself acts on.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `--served-model-name` (several); the first is the one `/v1/models` lists first.
    pub served_model_names: Vec<String>,
    /// The model's path (`root` in `/v1/models`).
    pub model_root: String,
    /// `--api-key` (several) and `VLLM_API_KEY`; empty means no authentication.
    pub api_keys: Vec<String>,
    /// `--default-chat-template-kwargs`: an object merged under each request's own.
    pub default_chat_template_kwargs: Option<Value>,
    /// `--response-role` (the role of generated chat messages).
    pub response_role: String,
    /// `--enable-auto-tool-choice`.
    pub enable_auto_tool_choice: bool,
    /// `--tool-call-parser`.
    pub tool_call_parser: Option<String>,
    /// `--reasoning-parser`.
    pub reasoning_parser: Option<String>,
    /// `--enable-log-requests`.
    pub log_requests: bool,
    /// `--disable-fastapi-docs` (ferrum serves no docs pages either way; kept for the record).
    pub disable_docs: bool,
    /// `--root-path`: a prefix the routes are also served under (behind a proxy that keeps it),
    /// as uvicorn and Starlette route a path that starts with the root path.
    pub root_path: Option<String>,
    /// One line per answered request (uvicorn's access log): on at `--uvicorn-log-level` info
    /// or below, unless `--disable-uvicorn-access-log`.
    pub access_log: bool,
    /// `--allowed-origins`, `--allowed-methods`, `--allowed-headers`, `--allow-credentials`.
    pub cors: Option<Cors>,
}

#[derive(Clone, Debug, Default)]
pub struct Cors {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub credentials: bool,
}

pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    /// Sampling defaults (`--generation-config`) requests start from.
    pub defaults: SamplingParams,
    pub max_model_len: usize,
    pub opts: ServerOptions,
    /// Set by SIGTERM/SIGINT: new requests get 503 while in-flight ones finish.
    pub draining: AtomicBool,
    pub model_path: PathBuf,
    pub metrics: Arc<ferrum_metrics::Metrics>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// The served name a request's `model` must match (absent: the first name).
    pub fn check_model(&self, requested: Option<&str>) -> ApiResult<String> {
        match requested {
            None => Ok(self.opts.served_model_names[0].clone()),
            Some(m) if self.opts.served_model_names.iter().any(|n| n == m) => Ok(m.to_string()),
            Some(m) => Err(ApiError {
                param: Some("model".into()),
                ..ApiError::not_found(format!("The model `{m}` does not exist."))
            }),
        }
    }

    /// Refuses new work when the engine died or the server is draining.
    pub fn check_serving(&self) -> ApiResult<()> {
        if let Some(why) = self.engine.death() {
            return Err(ApiError::internal(why.to_string()));
        }
        if self.draining.load(Ordering::Relaxed) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        Ok(())
    }
}
