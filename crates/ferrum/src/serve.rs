//! `ferrum serve [MODEL] [flags]`: the OpenAI-compatible server over one engine, with vLLM's
//! flags and start-up line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use ferrum_server::{AppState, Cors, ServerOptions};

use crate::args::RuntimeArgs;
use crate::runtime;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The model (as vLLM's positional MODEL; `--model` works too).
    #[arg(value_name = "MODEL")]
    pub model_tag: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Names the API answers to (several allowed); default: the model path as given.
    #[arg(long, num_args = 1..)]
    pub served_model_name: Vec<String>,
    /// Keys clients must send as `Authorization: Bearer KEY` (several allowed; also
    /// VLLM_API_KEY).
    #[arg(long, num_args = 1..)]
    pub api_key: Vec<String>,
    /// CORS: JSON lists, as vLLM takes them (default: everything).
    #[arg(long, default_value = "[\"*\"]")]
    pub allowed_origins: String,
    #[arg(long, default_value = "[\"*\"]")]
    pub allowed_methods: String,
    #[arg(long, default_value = "[\"*\"]")]
    pub allowed_headers: String,
    #[arg(long)]
    pub allow_credentials: bool,
    /// Log level of the HTTP layer: critical | error | warning | info | debug | trace. Above
    /// info the per-request access lines are off.
    #[arg(long, default_value = "info")]
    pub uvicorn_log_level: String,
    /// No per-request access lines.
    #[arg(long)]
    pub disable_uvicorn_access_log: bool,
    /// No periodic stats line.
    #[arg(long)]
    pub disable_log_stats: bool,
    /// Log each request's parameters.
    #[arg(long)]
    pub enable_log_requests: bool,
    /// vLLM hides its /docs pages with this; ferrum serves none, so it changes nothing.
    #[arg(long)]
    pub disable_fastapi_docs: bool,
    /// The path prefix of the server behind a proxy (as vLLM/FastAPI's root_path): routes are
    /// served with and without it.
    #[arg(long)]
    pub root_path: Option<String>,
    /// A chat template file, or the template itself, replacing the model's.
    #[arg(long)]
    pub chat_template: Option<String>,
    /// JSON object of chat-template variables every request starts from (e.g.
    /// '{"enable_thinking": false}').
    #[arg(long)]
    pub default_chat_template_kwargs: Option<String>,
    /// Let the model call tools when a request's tool_choice is "auto".
    #[arg(long)]
    pub enable_auto_tool_choice: bool,
    /// hermes | glm45 | glm47.
    #[arg(long)]
    pub tool_call_parser: Option<String>,
    /// qwen3 | deepseek_r1 | glm45.
    #[arg(long)]
    pub reasoning_parser: Option<String>,
    /// The role of generated chat messages.
    #[arg(long, default_value = "assistant")]
    pub response_role: String,
    /// Seconds in-flight requests get to finish after SIGTERM before they are aborted.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

fn json_list(flag: &str, s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s)
        .with_context(|| format!("--{flag} takes a JSON list of strings, e.g. '[\"*\"]'; got {s}"))
}

pub fn run(mut a: ServeArgs) -> Result<()> {
    if let Some(m) = a.model_tag.take() {
        if a.runtime.model.model.is_some() {
            bail!("give the model once: as MODEL or as --model, not both");
        }
        a.runtime.model.model = Some(m);
    }
    let level = match a.uvicorn_log_level.as_str() {
        "critical" | "error" => "error",
        "warning" => "warn",
        l @ ("info" | "debug" | "trace") => l,
        other => bail!(
            "--uvicorn-log-level {other}: expected critical, error, warning, info, debug or trace"
        ),
    };
    let access_log = matches!(level, "info" | "debug" | "trace") && !a.disable_uvicorn_access_log;
    if let Some(p) = &a.root_path
        && !p.is_empty()
        && !p.starts_with('/')
    {
        bail!("--root-path {p}: expected a path that starts with '/', e.g. /api");
    }
    let mut api_keys = a.api_key.clone();
    if api_keys.is_empty()
        && let Ok(k) = std::env::var("VLLM_API_KEY")
        && !k.is_empty()
    {
        api_keys.push(k);
    }
    let default_kwargs = a
        .default_chat_template_kwargs
        .as_deref()
        .map(|s| -> Result<serde_json::Value> {
            let v: serde_json::Value = serde_json::from_str(s)
                .with_context(|| format!("--default-chat-template-kwargs is not JSON: {s}"))?;
            if !v.is_object() {
                bail!("--default-chat-template-kwargs must be a JSON object, got {s}");
            }
            Ok(v)
        })
        .transpose()?;
    let cors = Cors {
        origins: json_list("allowed-origins", &a.allowed_origins)?,
        methods: json_list("allowed-methods", &a.allowed_methods)?,
        headers: json_list("allowed-headers", &a.allowed_headers)?,
        credentials: a.allow_credentials,
    };
    ferrum_server::chat_parse::check_flags(
        a.enable_auto_tool_choice,
        a.tool_call_parser.as_deref(),
        a.reasoning_parser.as_deref(),
    )?;

    let metrics_slot: Arc<std::sync::OnceLock<Arc<ferrum_metrics::Metrics>>> = Default::default();
    let slot = metrics_slot.clone();
    let rt = runtime::start_observed(
        &a.runtime.model,
        &a.runtime.engine,
        Box::new(move |step| {
            if let Some(m) = slot.get() {
                m.observe_iteration_tokens(step.num_tokens);
            }
        }),
    )?;
    let model_arg = a
        .runtime
        .model
        .model
        .as_ref()
        .map_or_else(|| rt.model_name.clone(), |p| p.display().to_string());
    let names = if a.served_model_name.is_empty() {
        vec![model_arg.clone()]
    } else {
        a.served_model_name.clone()
    };
    let e = &a.runtime.engine;
    let cache = ferrum_metrics::CacheConfigInfo::new(
        rt.block_size,
        rt.num_blocks,
        e.prefix_caching(),
        // as vLLM: the flag's value as given ("auto", "fp8", "fp8_e4m3")
        clap::ValueEnum::to_possible_value(&e.kv_cache_dtype)
            .map_or("auto".to_string(), |v| v.get_name().to_string()),
        e.gpu_memory_utilization.unwrap_or(0.9),
    );
    let metrics = Arc::new(ferrum_metrics::Metrics::new(
        &names[0],
        rt.max_model_len,
        &cache,
    ));
    let _ = metrics_slot.set(metrics.clone());
    let mut tokenizer = rt.tokenizer.clone();
    if let Some(t) = &a.chat_template {
        let source = match std::fs::read_to_string(t) {
            Ok(s) => s,
            Err(_) if t.contains("{{") || t.contains("{%") => t.clone(),
            Err(e) => bail!("--chat-template {t}: not a readable file ({e}) nor a template"),
        };
        tokenizer = Arc::new(
            tokenizer
                .with_chat_template(&source)
                .context("--chat-template")?,
        );
    }
    let state = Arc::new(AppState {
        engine: rt.engine.clone(),
        tokenizer,
        defaults: rt.defaults.clone(),
        max_model_len: rt.max_model_len,
        opts: ServerOptions {
            served_model_names: names,
            model_root: model_arg,
            api_keys,
            default_chat_template_kwargs: default_kwargs,
            response_role: a.response_role.clone(),
            enable_auto_tool_choice: a.enable_auto_tool_choice,
            tool_call_parser: a.tool_call_parser.clone(),
            reasoning_parser: a.reasoning_parser.clone(),
            log_requests: a.enable_log_requests,
            disable_docs: a.disable_fastapi_docs,
            root_path: a.root_path.clone(),
            access_log,
            cors: Some(cors),
        },
        draining: AtomicBool::new(false),
        model_path: rt.model_path.clone(),
        metrics,
    });
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrum-http")
        .build()?;
    let addr = format!("{}:{}", a.host, a.port);
    let result = tokio.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if !a.disable_log_stats {
            ferrum_server::stats_log::spawn(state.clone(), Duration::from_secs(10));
        }
        // One line a user (or a script waiting for readiness) can read.
        tracing::info!("ferrum serve ready on http://{local}: {}", rt.summary);
        ferrum_server::serve(
            state.clone(),
            listener,
            Duration::from_secs(a.shutdown_timeout),
        )
        .await
        .context("serving")
    });
    rt.engine.shutdown();
    tokio.shutdown_timeout(Duration::from_secs(1));
    result
}
