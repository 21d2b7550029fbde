//! `glm45` / `glm47` tool parsers on canned GLM outputs: exact results
//! (including schema-typed argument values), and every chunking streams to
//! the same content and calls.

mod common;

use common::{calls, check_tool_stream, weather_tools};
use ferrum_parsers::{ToolDelta, ToolParserKind as K};

/// GLM-4.5 chat-template shape: newline after the name and after each tag.
fn glm45(name: &str, args: &[(&str, &str)]) -> String {
    let mut s = format!("<tool_call>{name}\n");
    for (k, v) in args {
        s += &format!("<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n");
    }
    s + "</tool_call>"
}

/// GLM-4.7 shape: no newlines at all.
fn glm47(name: &str, args: &[(&str, &str)]) -> String {
    let mut s = format!("<tool_call>{name}");
    for (k, v) in args {
        s += &format!("<arg_key>{k}</arg_key><arg_value>{v}</arg_value>");
    }
    s + "</tool_call>"
}

#[test]
fn plain_content_and_unclosed_calls() {
    let t = weather_tools();
    for kind in [K::Glm45, K::Glm47] {
        for text in [
            "Paris is sunny today.",
            "  \n",
            "x <tool_",
            "Hi <tool_call>get_weather\n<arg_key>city",
        ] {
            let r = check_tool_stream(kind, &t, text);
            assert_eq!(
                (r.content.as_deref(), r.calls.len()),
                (Some(text), 0),
                "{kind} {text:?}"
            );
        }
    }
}

#[test]
fn one_call_each_format() {
    let t = weather_tools();
    let args = [("city", "Beijing"), ("days", "3")];
    let want = [("get_weather", r#"{"city": "Beijing", "days": 3}"#)];
    let r = check_tool_stream(K::Glm45, &t, &glm45("get_weather", &args));
    assert_eq!((r.content.as_deref(), calls(&r)), (None, want.to_vec()));
    let r = check_tool_stream(K::Glm47, &t, &glm47("get_weather", &args));
    assert_eq!((r.content.as_deref(), calls(&r)), (None, want.to_vec()));
    // glm47 also accepts the glm45 shape (whitespace between tags).
    let r = check_tool_stream(K::Glm47, &t, &glm45("get_weather", &args));
    assert_eq!(calls(&r), want);
    // glm45 needs the newline after the name: a glm47-shaped call is skipped.
    let text = glm47("get_weather", &args);
    let r = check_tool_stream(K::Glm45, &t, &text);
    assert_eq!(
        (r.content.as_deref(), r.calls.len()),
        (Some(text.as_str()), 0)
    );
}

#[test]
fn argument_types_follow_the_schema() {
    let t = weather_tools();
    let args = [
        ("name", " my config "),
        ("count", "42"),
        ("ratio", "0.75"),
        ("enabled", "true"),
        ("options", "{\"a\": 1, \"b\": [true, null]}"),
        ("tags", "[\"x\", \"y\"]"),
        ("code", "print('hi')\n"),
        ("extra", " [1, 2] "),
        ("note", "hello world"),
    ];
    let want = concat!(
        r#"{"name": " my config ", "count": 42, "ratio": 0.75, "enabled": true, "#,
        r#""options": {"a": 1, "b": [true, null]}, "tags": ["x", "y"], "#,
        r#""code": "print('hi')\n", "extra": [1, 2], "note": "hello world"}"#
    );
    for (kind, text) in [
        (K::Glm45, glm45("set_config", &args)),
        (K::Glm47, glm47("set_config", &args)),
    ] {
        let r = check_tool_stream(kind, &t, &text);
        assert_eq!(calls(&r), [("set_config", want)], "{kind}");
    }
}

#[test]
fn non_json_values_fall_back_like_vllm() {
    let t = weather_tools();
    let args = [
        ("count", "forty"),  // not JSON, not a literal: stripped string
        ("enabled", "True"), // Python literal
        ("options", "{'a': None, 'b': (1, 2)}"),
        ("ratio", " 1e3 "),                // JSON float, Python repr
        ("tags", "[1, 2,]"),               // trailing comma: literal_eval
        ("city", "42"),                    // not in this tool's schema: JSON
        ("name", "{\"not\": \"parsed\"}"), // string type: raw text
    ];
    let want = concat!(
        r#"{"count": "forty", "enabled": true, "options": {"a": null, "b": [1, 2]}, "#,
        r#""ratio": 1000.0, "tags": [1, 2], "city": 42, "name": "{\"not\": \"parsed\"}"}"#
    );
    let r = check_tool_stream(K::Glm45, &t, &glm45("set_config", &args));
    assert_eq!(calls(&r), [("set_config", want)]);
    // Unknown tool: everything JSON-or-string; duplicate key keeps first slot.
    let args = [("a", "1"), ("b", "x y"), ("a", "\"two\"")];
    let r = check_tool_stream(K::Glm47, &t, &glm47("unknown_tool", &args));
    assert_eq!(calls(&r), [("unknown_tool", r#"{"a": "two", "b": "x y"}"#)]);
}

#[test]
fn two_calls_and_content() {
    let t = weather_tools();
    let a = glm45("get_weather", &[("city", "Paris")]);
    let b = glm45("get_weather", &[("city", "London"), ("unit", "celsius")]);
    let text = format!("I'll check both.\n{a}\n{b}");
    let r = check_tool_stream(K::Glm45, &t, &text);
    assert_eq!(r.content.as_deref(), Some("I'll check both.\n"));
    assert_eq!(
        calls(&r),
        [
            ("get_weather", r#"{"city": "Paris"}"#),
            ("get_weather", r#"{"city": "London", "unit": "celsius"}"#)
        ]
    );
    // Whitespace-only content before calls becomes None; text between and
    // after calls is dropped.
    let text = format!("\n\n{a}\nthen\n{b}\ntrailing");
    let r = check_tool_stream(K::Glm45, &t, &text);
    assert_eq!((r.content.as_deref(), r.calls.len()), (None, 2));
    let a7 = glm47("get_weather", &[("city", "Paris")]);
    let r = check_tool_stream(K::Glm47, &t, &format!("Checking…{a7}{a7}"));
    assert_eq!(
        (r.content.as_deref(), r.calls.len()),
        (Some("Checking…"), 2)
    );
}

#[test]
fn calls_without_arguments_and_odd_separators() {
    let r = check_tool_stream(K::Glm45, &[], "<tool_call>get_time\n</tool_call>");
    assert_eq!(calls(&r), [("get_time", "{}")]);
    let r = check_tool_stream(K::Glm47, &[], "<tool_call> get_time </tool_call>");
    assert_eq!(calls(&r), [("get_time", "{}")]);
    // glm47 tolerates literal "\n" escapes between key and value.
    let text = r"<tool_call>f<arg_key>k</arg_key>\n<arg_value>1</arg_value></tool_call>";
    let r = check_tool_stream(K::Glm47, &[], text);
    assert_eq!(calls(&r), [("f", r#"{"k": 1}"#)]);
    // A skipped region does not count, a later good one does.
    let text = format!("<tool_call>bad</tool_call>{}", glm45("g", &[("k", "v")]));
    let r = check_tool_stream(K::Glm45, &[], &text);
    assert_eq!(
        (r.content.as_deref(), calls(&r)),
        (None, vec![("g", r#"{"k": "v"}"#)])
    );
}

#[test]
fn calls_stream_as_each_closes() {
    let t = weather_tools();
    let mut s = K::Glm45.stream(&t);
    assert_eq!(
        s.push("Sure.\n<tool_call>get_weather\n<arg_key>city"),
        [ToolDelta::Content("Sure.\n".into())]
    );
    let d = s.push("</arg_key>\n<arg_value>Oslo</arg_value>\n</tool_call>\n<tool_call>get_we");
    assert!(
        matches!(&d[..], [ToolDelta::Start { index: 0, name, .. }, ToolDelta::Arguments { index: 0, fragment }]
        if name == "get_weather" && fragment == r#"{"city": "Oslo"}"#)
    );
    assert_eq!(s.calls_started(), 1);
    assert_eq!(s.finish(), []);
}
