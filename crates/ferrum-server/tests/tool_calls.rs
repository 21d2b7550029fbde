//! Tool calling and reasoning end to end, through the real HTTP router: the real Qwen3
//! tokenizer and chat template, the real engine thread, and a scripted executor in place of a
//! model (it "samples" the token ids of a canned output, then EOS). Each case checks the
//! non-streaming reply and the SSE stream, and that the two agree.
//!
//! Needs the Qwen3 tokenizer folder that `scripts/setup.sh --test-models` fetches; the tests
//! fail (not skip) without it.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

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
    // a named tool must be one of `tools` (streamed forced calls: tests/openai/test_tool_choice_stream.py)
    let unknown = weather_request(
        json!({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}),
    );
    let m = refused(&s, &unknown, "tool_choice").await;
    assert!(m.contains("get_time"), "{m}");
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
