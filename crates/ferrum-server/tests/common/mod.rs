//! The harness of the tool-call tests: a router over the real engine with a scripted
//! executor and the real Qwen3 tokenizer, and readers of whole and streamed replies.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ferrum_engine::{
    Engine, EngineConfig, Executor, Sampled, SamplingParams, SeqStepOutput, StepBatch,
};
use ferrum_server::{AppState, ServerOptions, Shared};
use ferrum_tokenizer::Tokenizer;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const MODEL: &str = "qwen3-test";
pub const BLOCK_SIZE: usize = 16;
pub const NUM_BLOCKS: usize = 1024;
pub const MAX_MODEL_LEN: usize = 8192;
pub const TIMEOUT: Duration = Duration::from_secs(120);

pub const HERMES_CALL: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";
pub const HERMES_ARGS: &str = r#"{"city": "Paris", "unit": "celsius"}"#;
pub const GLM_ARGS: &str = r#"{"city": "Paris", "days": 3}"#;

pub fn tokenizer() -> Arc<Tokenizer> {
    static TOK: OnceLock<Arc<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let dir = ferrum_gguf::cached_tokenizer_dir("qwen3");
        assert!(
            dir.join("tokenizer.json").is_file() && dir.join("tokenizer_config.json").is_file(),
            "the Qwen3 tokenizer is missing from {}: run `scripts/setup.sh --test-models` to fetch it",
            dir.display()
        );
        let tok = Tokenizer::from_hf_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot load the Qwen3 tokenizer from {} ({e:#}): run `scripts/setup.sh --test-models` again",
                dir.display()
            )
        });
        assert!(tok.has_chat_template(), "the Qwen3 tokenizer has no chat template");
        Arc::new(tok)
    })
    .clone()
}

/// The fake model: output token `i` of every sequence is `script[i]`, then EOS.
pub struct ScriptedExecutor {
    pub script: Vec<u32>,
    pub eos: u32,
}

impl Executor for ScriptedExecutor {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        Ok(batch
            .seqs
            .iter()
            .map(|s| SeqStepOutput {
                tokens: s
                    .sample
                    .then(|| Sampled {
                        id: self
                            .script
                            .get(s.num_output_tokens())
                            .copied()
                            .unwrap_or(self.eos),
                        logprobs: None,
                    })
                    .into_iter()
                    .collect(),
                prompt_logprobs: Vec::new(),
            })
            .collect())
    }
}

/// `ferrum serve` flags that matter here.
#[derive(Clone, Copy, Default)]
pub struct Flags {
    pub enable_auto_tool_choice: bool,
    pub tool_call_parser: Option<&'static str>,
    pub reasoning_parser: Option<&'static str>,
}

pub const HERMES: Flags = Flags {
    enable_auto_tool_choice: true,
    tool_call_parser: Some("hermes"),
    reasoning_parser: None,
};

/// A server whose model always answers `output` (tokenized with the Qwen3 tokenizer).
pub struct Server {
    pub state: Shared,
    /// The canned output's token ids.
    pub script: Vec<u32>,
    /// Output tokens per reply: the script plus EOS.
    pub completion_tokens: usize,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.engine.shutdown();
    }
}

pub fn server(output: &str, flags: Flags) -> Server {
    let tok = tokenizer();
    let script = tok.encode(output, false).unwrap();
    assert_eq!(
        tok.decode(&script, false).unwrap(),
        output,
        "the canned output does not survive a tokenizer round trip"
    );
    let eos = tok.eos_token_ids()[0];
    assert_eq!(tok.id_to_token(eos).as_deref(), Some("<|im_end|>"));
    let cfg = EngineConfig::new(NUM_BLOCKS, MAX_MODEL_LEN, tok.vocab_size());
    let engine = Engine::start(
        cfg,
        Box::new(ScriptedExecutor {
            script: script.clone(),
            eos,
        }),
    );
    let cache = ferrum_metrics::CacheConfigInfo::new(BLOCK_SIZE, NUM_BLOCKS, true, "auto", 0.9);
    let state = Arc::new(AppState {
        engine,
        tokenizer: tok,
        defaults: SamplingParams::default(),
        max_model_len: MAX_MODEL_LEN,
        opts: ServerOptions {
            served_model_names: vec![MODEL.into()],
            model_root: MODEL.into(),
            response_role: "assistant".into(),
            enable_auto_tool_choice: flags.enable_auto_tool_choice,
            tool_call_parser: flags.tool_call_parser.map(str::to_string),
            reasoning_parser: flags.reasoning_parser.map(str::to_string),
            ..Default::default()
        },
        draining: AtomicBool::new(false),
        model_path: MODEL.into(),
        metrics: Arc::new(ferrum_metrics::Metrics::new(MODEL, MAX_MODEL_LEN, &cache)),
    });
    Server {
        state,
        completion_tokens: script.len() + 1,
        script,
    }
}

impl Server {
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, String) {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let run = async {
            let resp = ferrum_server::router(self.state.clone())
                .oneshot(req)
                .await
                .unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        };
        tokio::time::timeout(TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("POST {path} did not finish within {TIMEOUT:?}"))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (status, text) = self.post(path, body).await;
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// A non-streaming chat completion that must succeed.
    pub async fn chat(&self, body: &Value) -> Value {
        let (status, v) = self.post_json("/v1/chat/completions", body).await;
        assert_eq!(status, StatusCode::OK, "{v:#}");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], MODEL);
        assert_eq!(v["choices"].as_array().map(Vec::len), Some(1), "{v:#}");
        assert_eq!(v["choices"][0]["index"], 0);
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            v["usage"]["completion_tokens"], self.completion_tokens,
            "{v:#}"
        );
        v
    }

    /// A streamed chat completion that must succeed: every `data:` payload, `[DONE]` last.
    pub async fn chat_stream(&self, body: &Value) -> Vec<Value> {
        let mut body = body.clone();
        body["stream"] = json!(true);
        let (status, text) = self.post("/v1/chat/completions", &body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let mut datas = Vec::new();
        for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
            let data = event
                .strip_prefix("data: ")
                .filter(|d| !d.contains('\n'))
                .unwrap_or_else(|| panic!("not a single `data:` line: {event:?}\nin {text}"));
            datas.push(data.to_string());
        }
        assert_eq!(
            datas.last().map(String::as_str),
            Some("[DONE]"),
            "the stream must end with `data: [DONE]`:\n{text}"
        );
        datas.pop();
        assert!(
            !datas.iter().any(|d| d == "[DONE]"),
            "[DONE] before the end:\n{text}"
        );
        let chunks: Vec<Value> = datas
            .iter()
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect();
        for c in &chunks {
            assert!(c.get("error").is_none(), "error chunk: {c}");
            assert_eq!(c["object"], "chat.completion.chunk", "{c}");
            assert_eq!(c["id"], chunks[0]["id"], "{c}");
            assert_eq!(c["model"], MODEL);
        }
        // OpenAI's first chunk: the role and empty content.
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        chunks
    }
}

/// What a reply says, however it was delivered.
#[derive(Debug, PartialEq)]
pub struct Reply {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    /// (name, arguments) of each call, in order.
    pub calls: Vec<(String, String)>,
    pub finish_reason: String,
}

pub fn assert_tool_call_id(id: &Value) {
    let id = id.as_str().unwrap_or_else(|| panic!("tool call id {id}"));
    let hex = id
        .strip_prefix("chatcmpl-tool-")
        .unwrap_or_else(|| panic!("tool call id {id:?} must start with chatcmpl-tool-"));
    assert!(
        hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "tool call id {id:?}"
    );
}

/// The non-streaming reply's choice, with the reply's shape checked.
pub fn whole(v: &Value, reasoning_parser: bool) -> Reply {
    let choice = &v["choices"][0];
    let m = &choice["message"];
    let calls = m["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("tool_calls must be a list: {m}"));
    let mut out = Vec::new();
    for c in calls {
        assert_tool_call_id(&c["id"]);
        assert_eq!(c["type"], "function", "{c}");
        out.push((
            c["function"]["name"].as_str().unwrap().to_string(),
            c["function"]["arguments"].as_str().unwrap().to_string(),
        ));
    }
    assert!(m["content"].is_null() || m["content"].is_string(), "{m}");
    if reasoning_parser {
        assert!(m.get("reasoning_content").is_some(), "{m}");
        assert_eq!(m["reasoning"], m["reasoning_content"], "{m}");
    } else {
        assert!(m.get("reasoning_content").is_none(), "{m}");
        assert!(m.get("reasoning").is_none(), "{m}");
    }
    Reply {
        content: m["content"].as_str().map(str::to_string),
        reasoning: m["reasoning_content"].as_str().map(str::to_string),
        calls: out,
        finish_reason: choice["finish_reason"].as_str().unwrap().to_string(),
    }
}

/// The streamed reply, reassembled (tool call deltas by index), with the protocol checked.
pub fn reassemble(chunks: &[Value]) -> Reply {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut finishes = Vec::new();
    for c in chunks {
        let choices = c["choices"].as_array().unwrap();
        if choices.is_empty() {
            continue; // the usage chunk
        }
        assert_eq!(choices.len(), 1, "{c}");
        let ch = &choices[0];
        assert_eq!(ch["index"], 0);
        let d = &ch["delta"];
        if let Some(s) = d.get("content") {
            content += s.as_str().unwrap();
        }
        if let Some(s) = d.get("reasoning_content") {
            assert_eq!(d["reasoning"], *s, "{c}");
            reasoning += s.as_str().unwrap();
        }
        for t in d["tool_calls"].as_array().into_iter().flatten() {
            let i = t["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                // A call's first delta: id, type and name.
                assert_tool_call_id(&t["id"]);
                assert_eq!(t["type"], "function", "{t}");
                calls.push((
                    t["function"]["name"].as_str().unwrap().to_string(),
                    String::new(),
                ));
            } else {
                assert!(i < calls.len(), "tool call index {i} skips ahead: {t}");
                assert!(t.get("id").is_none(), "a second id for call {i}: {t}");
            }
            if let Some(a) = t["function"].get("arguments") {
                calls[i].1 += a.as_str().unwrap();
            }
        }
        if !ch["finish_reason"].is_null() {
            finishes.push(ch["finish_reason"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        finishes.len(),
        1,
        "exactly one chunk has a finish_reason: {finishes:?}"
    );
    let some = |s: String| (!s.is_empty()).then_some(s);
    Reply {
        content: some(content),
        reasoning: some(reasoning),
        calls,
        finish_reason: finishes.pop().unwrap(),
    }
}

/// Runs `body` whole and streamed; both must give the same reply, which is returned.
pub async fn both(s: &Server, body: &Value, reasoning_parser: bool) -> Reply {
    let v = s.chat(body).await;
    let w = whole(&v, reasoning_parser);
    let chunks = s.chat_stream(body).await;
    let st = reassemble(&chunks);
    assert_eq!(st, w, "streamed vs whole reply");
    assert_eq!(
        v["choices"][0]["stop_reason"],
        Value::Null,
        "EOS has no stop_reason"
    );
    w
}

pub fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the weather forecast for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "description": "Days to forecast"}},
            "required": ["city"]}}})
}

pub fn weather_request(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [weather_tool()],
        "tool_choice": "auto",
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

pub fn args_of(reply: &Reply, i: usize) -> Value {
    serde_json::from_str(&reply.calls[i].1)
        .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {:?}", reply.calls[i].1))
}
