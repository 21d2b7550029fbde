//! Tool calling and reasoning end to end, through the real HTTP router: the real Qwen3
//! tokenizer and chat template, the real engine thread, and a scripted executor in place of a
//! model (it "samples" the token ids of a canned output, then EOS). Each case checks the
//! non-streaming reply and the SSE stream, and that the two agree.
//!
//! Needs the Qwen3 tokenizer folder that `scripts/setup.sh --test-models` fetches; the tests
//! fail (not skip) without it.

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

const MODEL: &str = "qwen3-test";
const BLOCK_SIZE: usize = 16;
const NUM_BLOCKS: usize = 1024;
const MAX_MODEL_LEN: usize = 8192;
const TIMEOUT: Duration = Duration::from_secs(120);

const HERMES_CALL: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";
const HERMES_ARGS: &str = r#"{"city": "Paris", "unit": "celsius"}"#;
const GLM_ARGS: &str = r#"{"city": "Paris", "days": 3}"#;

fn tokenizer() -> Arc<Tokenizer> {
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
struct ScriptedExecutor {
    script: Vec<u32>,
    eos: u32,
}

impl Executor for ScriptedExecutor {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        Ok(batch
            .seqs
            .iter()
            .map(|s| SeqStepOutput {
                token: s.sample.then(|| Sampled {
                    id: self
                        .script
                        .get(s.num_output_tokens())
                        .copied()
                        .unwrap_or(self.eos),
                    logprobs: None,
                }),
                prompt_logprobs: Vec::new(),
            })
            .collect())
    }
}

/// `ferrum serve` flags that matter here.
#[derive(Clone, Copy, Default)]
struct Flags {
    enable_auto_tool_choice: bool,
    tool_call_parser: Option<&'static str>,
    reasoning_parser: Option<&'static str>,
}

const HERMES: Flags = Flags {
    enable_auto_tool_choice: true,
    tool_call_parser: Some("hermes"),
    reasoning_parser: None,
};

/// A server whose model always answers `output` (tokenized with the Qwen3 tokenizer).
struct Server {
    state: Shared,
    /// The canned output's token ids.
    script: Vec<u32>,
    /// Output tokens per reply: the script plus EOS.
    completion_tokens: usize,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.engine.shutdown();
    }
}

fn server(output: &str, flags: Flags) -> Server {
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
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, String) {
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

    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let (status, text) = self.post(path, body).await;
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    /// A non-streaming chat completion that must succeed.
    async fn chat(&self, body: &Value) -> Value {
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
    async fn chat_stream(&self, body: &Value) -> Vec<Value> {
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
struct Reply {
    content: Option<String>,
    reasoning: Option<String>,
    /// (name, arguments) of each call, in order.
    calls: Vec<(String, String)>,
    finish_reason: String,
}

fn assert_tool_call_id(id: &Value) {
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
fn whole(v: &Value, reasoning_parser: bool) -> Reply {
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
fn reassemble(chunks: &[Value]) -> Reply {
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
async fn both(s: &Server, body: &Value, reasoning_parser: bool) -> Reply {
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

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the weather forecast for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "description": "Days to forecast"}},
            "required": ["city"]}}})
}

fn weather_request(extra: Value) -> Value {
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

fn args_of(reply: &Reply, i: usize) -> Value {
    serde_json::from_str(&reply.calls[i].1)
        .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {:?}", reply.calls[i].1))
}

#[tokio::test]
async fn hermes_tool_call() {
    let s = server(HERMES_CALL, HERMES);
    let body = weather_request(json!({}));
    let v = s.chat(&body).await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], Value::Null, "{m}");
    assert_eq!(m["tool_calls"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    assert_tool_call_id(&m["tool_calls"][0]["id"]);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let r = both(&s, &body, false).await;
    assert_eq!(
        r,
        Reply {
            content: None,
            reasoning: None,
            calls: vec![("get_weather".into(), HERMES_ARGS.into())],
            finish_reason: "tool_calls".into(),
        }
    );
    assert_eq!(args_of(&r, 0), json!({"city": "Paris", "unit": "celsius"}));

    // The prompt the chat completion ran is the one /tokenize renders.
    let (status, t) = s.post_json("/tokenize", &body).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(v["usage"]["prompt_tokens"], t["count"]);
    let prompt = s
        .state
        .tokenizer
        .decode(
            &serde_json::from_value::<Vec<u32>>(t["tokens"].clone()).unwrap(),
            false,
        )
        .unwrap();
    assert!(
        prompt
            .contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""),
        "{prompt}"
    );
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
}

#[tokio::test]
async fn hermes_stream_with_usage_and_default_tool_choice() {
    let s = server(HERMES_CALL, HERMES);
    // `tools` without `tool_choice` means "auto" (vLLM).
    let mut body = weather_request(json!({"stream_options": {"include_usage": true}}));
    body.as_object_mut().unwrap().remove("tool_choice");
    let chunks = s.chat_stream(&body).await;
    let usage = chunks.last().unwrap();
    assert_eq!(
        usage["choices"],
        json!([]),
        "the last chunk is the usage chunk"
    );
    assert_eq!(usage["usage"]["completion_tokens"], s.completion_tokens);
    let r = reassemble(&chunks);
    assert_eq!(
        r.calls,
        [("get_weather".to_string(), HERMES_ARGS.to_string())]
    );
    assert_eq!(r.finish_reason, "tool_calls");
    assert_eq!(r.content, None);
}

#[tokio::test]
async fn hermes_text_before_the_call_is_content() {
    let out = format!("Let me check.\n{HERMES_CALL}");
    let s = server(&out, HERMES);
    let r = both(&s, &weather_request(json!({})), false).await;
    assert_eq!(r.content.as_deref(), Some("Let me check.\n"));
    assert_eq!(
        r.calls,
        [("get_weather".to_string(), HERMES_ARGS.to_string())]
    );
    assert_eq!(r.finish_reason, "tool_calls");
}

#[tokio::test]
async fn hermes_plain_answer_with_tools_offered() {
    // Tools offered, none called: the whole text is content and the finish reason is stop.
    // The tool parser decodes with special tokens kept; EOS must still not show up as text.
    let s = server("It is sunny in Paris.", HERMES);
    let r = both(&s, &weather_request(json!({})), false).await;
    assert_eq!(
        r,
        Reply {
            content: Some("It is sunny in Paris.".into()),
            reasoning: None,
            calls: vec![],
            finish_reason: "stop".into(),
        }
    );
}

#[tokio::test]
async fn stop_tokens_are_not_text() {
    let s = server("It is sunny in Paris.", HERMES);
    // vLLM keeps the EOS text only with `include_stop_str_in_output`.
    let body = weather_request(json!({"include_stop_str_in_output": true}));
    let r = both(&s, &body, false).await;
    assert_eq!(
        r.content.as_deref(),
        Some("It is sunny in Paris.<|im_end|>")
    );
    assert_eq!(r.finish_reason, "stop");
    // A (non-special) stop token id ends the text before it and is the stop_reason.
    let period = *s.script.last().unwrap();
    assert_eq!(s.state.tokenizer.decode(&[period], false).unwrap(), ".");
    for stream in [false, true] {
        let body = weather_request(json!({"stop_token_ids": [period], "stream": stream}));
        let (status, text) = s.post("/v1/chat/completions", &body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let (content, stop_reason) = if stream {
            let mut content = String::new();
            let mut stop_reason = Value::Null;
            for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if line == "[DONE]" {
                    continue;
                }
                let c: Value = serde_json::from_str(line).unwrap();
                let ch = &c["choices"][0];
                content += ch["delta"]["content"].as_str().unwrap_or_default();
                if !ch["finish_reason"].is_null() {
                    assert_eq!(ch["finish_reason"], "stop", "{c}");
                    stop_reason = ch["stop_reason"].clone();
                }
            }
            (content, stop_reason)
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            let ch = &v["choices"][0];
            assert_eq!(ch["finish_reason"], "stop", "{v}");
            assert_eq!(v["usage"]["completion_tokens"], s.script.len(), "{v}");
            (
                ch["message"]["content"].as_str().unwrap().to_string(),
                ch["stop_reason"].clone(),
            )
        };
        assert_eq!(content, "It is sunny in Paris", "stream: {stream}");
        assert_eq!(stop_reason, json!(period), "stream: {stream}");
    }
}

const QWEN3_REASONING: Flags = Flags {
    enable_auto_tool_choice: true,
    tool_call_parser: Some("hermes"),
    reasoning_parser: Some("qwen3"),
};

#[tokio::test]
async fn qwen3_reasoning_then_hermes_call() {
    let out = format!("<think>\nI should call the tool.\n</think>\n\n{HERMES_CALL}");
    let s = server(&out, QWEN3_REASONING);
    let r = both(&s, &weather_request(json!({})), true).await;
    assert_eq!(
        r,
        Reply {
            reasoning: Some("\nI should call the tool.\n".into()),
            // vLLM: the text between </think> and <tool_call> is the content.
            content: Some("\n\n".into()),
            calls: vec![("get_weather".into(), HERMES_ARGS.into())],
            finish_reason: "tool_calls".into(),
        }
    );
    assert_eq!(args_of(&r, 0), json!({"city": "Paris", "unit": "celsius"}));
}

#[tokio::test]
async fn qwen3_thinking_off_is_all_content() {
    let s = server("The weather in Paris is mild.", QWEN3_REASONING);
    let body = json!({
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "chat_template_kwargs": {"enable_thinking": false},
    });
    let v = s.chat(&body).await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], Value::Null, "{m}");
    assert_eq!(m["reasoning"], Value::Null, "{m}");
    assert_eq!(m["tool_calls"], json!([]), "{m}");
    let r = both(&s, &body, true).await;
    assert_eq!(
        r,
        Reply {
            content: Some("The weather in Paris is mild.".into()),
            reasoning: None,
            calls: vec![],
            finish_reason: "stop".into(),
        }
    );
    // The template closed the (empty) think block in the prompt.
    let (status, t) = s.post_json("/tokenize", &body).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let ids: Vec<u32> = serde_json::from_value(t["tokens"].clone()).unwrap();
    let prompt = s.state.tokenizer.decode(&ids, false).unwrap();
    assert!(
        prompt.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{prompt:?}"
    );
}

#[tokio::test]
async fn qwen3_thinking_off_hermes_call() {
    let s = server(HERMES_CALL, QWEN3_REASONING);
    let body = weather_request(json!({"chat_template_kwargs": {"enable_thinking": false}}));
    let r = both(&s, &body, true).await;
    assert_eq!(
        r,
        Reply {
            content: None,
            reasoning: None,
            calls: vec![("get_weather".into(), HERMES_ARGS.into())],
            finish_reason: "tool_calls".into(),
        }
    );
}

#[tokio::test]
async fn glm45_call_after_reasoning() {
    let out = concat!(
        "<think>The user wants a forecast.</think>\n",
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n",
        "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
    );
    let flags = Flags {
        enable_auto_tool_choice: true,
        tool_call_parser: Some("glm45"),
        reasoning_parser: Some("glm45"),
    };
    let s = server(out, flags);
    let r = both(&s, &weather_request(json!({})), true).await;
    assert_eq!(
        r,
        Reply {
            reasoning: Some("The user wants a forecast.".into()),
            // Whitespace-only text before the first call is dropped (vLLM).
            content: None,
            // `days` is an integer in the schema: a JSON number, not "3".
            calls: vec![("get_weather".into(), GLM_ARGS.into())],
            finish_reason: "tool_calls".into(),
        }
    );
    assert_eq!(args_of(&r, 0), json!({"city": "Paris", "days": 3}));
}

#[tokio::test]
async fn glm45_call_without_reasoning_parser() {
    let out = concat!(
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n",
        "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
    );
    let flags = Flags {
        enable_auto_tool_choice: true,
        tool_call_parser: Some("glm45"),
        reasoning_parser: None,
    };
    let s = server(out, flags);
    let r = both(&s, &weather_request(json!({})), false).await;
    assert_eq!(
        r,
        Reply {
            reasoning: None,
            content: None,
            calls: vec![("get_weather".into(), GLM_ARGS.into())],
            finish_reason: "tool_calls".into(),
        }
    );
}

#[tokio::test]
async fn glm47_reasoning_content_and_call() {
    // GLM-4.7 puts <think> in the prompt: only </think> is generated; no newlines in calls.
    let out = concat!(
        "Look it up.</think>Checking now.",
        "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>",
        "<arg_key>days</arg_key><arg_value>3</arg_value></tool_call>"
    );
    let flags = Flags {
        enable_auto_tool_choice: true,
        tool_call_parser: Some("glm47"),
        reasoning_parser: Some("glm45"),
    };
    let s = server(out, flags);
    let r = both(&s, &weather_request(json!({})), true).await;
    assert_eq!(
        r,
        Reply {
            reasoning: Some("Look it up.".into()),
            content: Some("Checking now.".into()),
            calls: vec![("get_weather".into(), GLM_ARGS.into())],
            finish_reason: "tool_calls".into(),
        }
    );
    assert_eq!(args_of(&r, 0), json!({"city": "Paris", "days": 3}));
}

/// A 400 naming `param`, in OpenAI's error body.
async fn refused(s: &Server, body: &Value, param: &str) -> String {
    let mut messages = Vec::new();
    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let (status, v) = s.post_json("/v1/chat/completions", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        let e = &v["error"];
        assert_eq!(e["type"], "BadRequestError", "{v}");
        assert_eq!(e["code"], 400, "{v}");
        assert_eq!(e["param"], param, "{v}");
        messages.push(e["message"].as_str().unwrap().to_string());
    }
    assert_eq!(
        messages[0], messages[1],
        "streamed and whole refusals differ"
    );
    messages.pop().unwrap()
}

const AUTO_REFUSAL: &str =
    "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set";

#[tokio::test]
async fn auto_tool_choice_needs_the_flags() {
    let parser_only = Flags {
        enable_auto_tool_choice: false,
        tool_call_parser: Some("hermes"),
        reasoning_parser: None,
    };
    for flags in [Flags::default(), parser_only] {
        let s = server(HERMES_CALL, flags);
        let body = weather_request(json!({}));
        assert_eq!(refused(&s, &body, "tool_choice").await, AUTO_REFUSAL);
        // Without `tool_choice`, `tools` means "auto".
        let mut implicit = body.clone();
        implicit.as_object_mut().unwrap().remove("tool_choice");
        assert_eq!(refused(&s, &implicit, "tool_choice").await, AUTO_REFUSAL);
        // tool_choice "none" needs no parser: the output is plain content.
        let v = s
            .chat(&weather_request(json!({"tool_choice": "none"})))
            .await;
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], HERMES_CALL, "{m}");
        assert_eq!(m["tool_calls"], json!([]), "{m}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn unsupported_tool_choice_and_bad_tools_are_refused() {
    let s = server(HERMES_CALL, HERMES);
    let required = weather_request(json!({"tool_choice": "required"}));
    let m = refused(&s, &required, "tool_choice").await;
    assert!(m.contains("tool_choice"), "{m}");
    let named = weather_request(
        json!({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    );
    let m = refused(&s, &named, "tool_choice").await;
    assert!(m.contains("tool_choice"), "{m}");
    let m = refused(
        &s,
        &weather_request(json!({"tool_choice": "sometimes"})),
        "tool_choice",
    )
    .await;
    assert!(m.contains("tool_choice"), "{m}");

    for bad in [
        json!([{"type": "function"}]),
        json!([{"type": "function", "function": {"description": "no name"}}]),
        json!([{"type": "retrieval", "function": {"name": "get_weather"}}]),
        json!(["get_weather"]),
    ] {
        let m = refused(&s, &weather_request(json!({"tools": bad})), "tools").await;
        assert!(m.contains("tools[0]"), "{m}");
    }
    let m = refused(
        &s,
        &weather_request(json!({"tools": {"type": "function"}})),
        "tools",
    )
    .await;
    assert!(m.contains("tools"), "{m}");
    // A bad second entry is named by its index.
    let bad = json!([weather_tool(), {"type": "function", "function": {}}]);
    let m = refused(&s, &weather_request(json!({"tools": bad})), "tools").await;
    assert!(m.contains("tools[1]"), "{m}");
}

/// `/tokenize` with `messages` + `tools` renders like Python (jinja2 as transformers runs
/// it), per the ferrum-tokenizer fixture made by `make_fixtures.py`.
#[tokio::test]
async fn tokenize_tools_prompt_matches_python_rendering() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ferrum-tokenizer/tests/fixtures/chat_templates.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let qwen3 = &fixture["qwen3"];
    let tok = tokenizer();
    assert_eq!(
        tok.chat_template(),
        qwen3["template"].as_str(),
        "the fixture was rendered with another Qwen3 chat template than the cached tokenizer's"
    );
    let s = server("unused", HERMES);
    let mut checked = 0;
    for case in qwen3["cases"].as_array().unwrap() {
        let extra = &case["extra"];
        if extra.get("tools").is_none() {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let expected = case["expected"].as_str().unwrap();
        let mut body = json!({
            "model": MODEL,
            "messages": case["messages"],
            "add_generation_prompt": case["add_generation_prompt"],
            "tools": extra["tools"],
        });
        if let Some(k) = extra.get("chat_template_kwargs") {
            body["chat_template_kwargs"] = k.clone();
        }
        let (status, v) = s.post_json("/tokenize", &body).await;
        assert_eq!(status, StatusCode::OK, "{name}: {v}");
        let want = tok.encode(expected, false).unwrap();
        assert_eq!(v["count"], want.len(), "{name}");
        assert_eq!(v["tokens"], json!(want), "{name}");
        assert_eq!(v["max_model_len"], MAX_MODEL_LEN);
        checked += 1;
    }
    assert!(checked >= 2, "the fixture has no Qwen3 tools cases");
}
