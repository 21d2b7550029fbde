//! Unit tests over a byte-level vocabulary (token i < 256 is byte i; the last id is EOS).

use std::sync::Arc;

use ferrum_engine::sampling::{ConstraintMatcher, mask_words};
use serde_json::json;

use super::*;

fn outputs() -> StructuredOutputs {
    StructuredOutputs::from_tok_env(toktrie::ApproximateTokEnv::single_byte_env()).unwrap()
}

fn eos(so: &StructuredOutputs) -> u32 {
    so.vocab_size() as u32 - 1
}

fn allowed(m: &mut dyn ConstraintMatcher, vocab: usize) -> Vec<u32> {
    let mut bits = vec![0u32; mask_words(vocab)];
    m.fill_mask(&mut bits).unwrap();
    (0..vocab as u32)
        .filter(|&t| bits[t as usize / 32] >> (t % 32) & 1 == 1)
        .collect()
}

/// Greedy walk: always take the first allowed byte (or EOS when it is the only choice).
fn walk(so: &StructuredOutputs, spec: &ConstraintSpec, max: usize) -> (String, bool) {
    let c = so.compile_blocking(spec).unwrap();
    let mut m = c.0.new_matcher();
    let vocab = so.vocab_size();
    let mut out = Vec::new();
    for _ in 0..max {
        if m.is_finished() {
            return (String::from_utf8(out).unwrap(), true);
        }
        let a = allowed(m.as_mut(), vocab);
        assert!(!a.is_empty());
        let t = a[0];
        if t == eos(so) {
            return (String::from_utf8(out).unwrap(), true);
        }
        m.accept(t).unwrap();
        out.push(t as u8);
    }
    (String::from_utf8(out).unwrap(), m.is_finished())
}

#[test]
fn choice_allows_only_the_choices() {
    let so = outputs();
    let spec = ConstraintSpec::Choice(vec!["yes".into(), "no".into()]);
    let c = so.compile_blocking(&spec).unwrap();
    let mut m = c.0.new_matcher();
    let a = allowed(m.as_mut(), so.vocab_size());
    assert_eq!(a, vec![b'n' as u32, b'y' as u32]);
    for &b in b"no" {
        m.accept(b as u32).unwrap();
    }
    assert!(m.is_finished() || allowed(m.as_mut(), so.vocab_size()) == vec![eos(&so)]);
    // a token outside the grammar is refused
    let mut m = c.0.new_matcher();
    assert!(m.accept(b'x' as u32).is_err());
}

#[test]
fn regex_walk_matches() {
    let so = outputs();
    let (s, done) = walk(&so, &ConstraintSpec::Regex("[0-9]{3}-[a-c]{2}".into()), 20);
    assert!(done);
    assert_eq!(s, "000-aa");
}

#[test]
fn json_schema_walk_validates() {
    let so = outputs();
    let schema = json!({
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y"]}},
        "required": ["a", "b"],
        "additionalProperties": false
    });
    let (s, done) = walk(
        &so,
        &ConstraintSpec::JsonSchema {
            schema,
            strict: true,
        },
        200,
    );
    assert!(done, "{s}");
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["a"].as_f64().map(f64::fract), Some(0.0), "{s}");
    assert!(v["b"] == "x" || v["b"] == "y");
}

#[test]
fn json_object_starts_with_brace() {
    let so = outputs();
    let c = so.compile_blocking(&ConstraintSpec::JsonObject).unwrap();
    let mut m = c.0.new_matcher();
    let a = allowed(m.as_mut(), so.vocab_size());
    assert!(a.contains(&(b'{' as u32)));
    assert!(!a.contains(&(b'[' as u32)));
    assert!(!a.contains(&eos(&so)));
}

#[test]
fn rollback_restores_the_state() {
    let so = outputs();
    let c = so
        .compile_blocking(&ConstraintSpec::Regex("ab|ac".into()))
        .unwrap();
    let mut m = c.0.new_matcher();
    let before = allowed(m.as_mut(), so.vocab_size());
    m.accept(b'a' as u32).unwrap();
    assert_eq!(
        allowed(m.as_mut(), so.vocab_size()),
        vec![b'b' as u32, b'c' as u32]
    );
    m.rollback(1).unwrap();
    assert_eq!(allowed(m.as_mut(), so.vocab_size()), before);
}

#[test]
fn refusals_name_the_problem() {
    let so = outputs();
    let bad = [
        ConstraintSpec::Grammar("root ::= \"a\"".into()),
        ConstraintSpec::Grammar("start: undefined_rule".into()),
        ConstraintSpec::Regex("(".into()),
        ConstraintSpec::Choice(vec![]),
        ConstraintSpec::JsonSchema {
            schema: json!({"type": "string", "minLength": 5, "maxLength": 2}),
            strict: true,
        },
        ConstraintSpec::JsonSchema {
            schema: json!(3),
            strict: true,
        },
    ];
    for spec in bad {
        let e = so.compile_blocking(&spec).err();
        assert!(e.is_some(), "{spec:?} compiled");
    }
}

#[test]
fn cache_returns_the_same_compilation() {
    let so = outputs();
    let spec = ConstraintSpec::Regex("x+".into());
    let a = so.compile_blocking(&spec).unwrap();
    let b = so.compile_blocking(&spec).unwrap();
    assert_eq!(a, b);
    assert_eq!(so.stats().compiled, 1);
    assert_eq!(so.stats().cache_hits, 1);
}

#[test]
fn async_compile_runs_off_the_runtime() {
    let so = Arc::new(outputs());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(so.compile(ConstraintSpec::Choice(vec!["a".into()])));
    assert!(r.is_ok());
}

// ---- structural tags -------------------------------------------------------------------------

fn weather_tag() -> ConstraintSpec {
    let city = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": false
    });
    let zone = json!({
        "type": "object",
        "properties": {"zone": {"enum": ["UTC", "CET"]}},
        "required": ["zone"],
        "additionalProperties": false
    });
    let tag = StructuralTag::from_json(
        &json!({
            "type": "structural_tag",
            "structures": [
                {"begin": "<function=get_weather>", "schema": city, "end": "</function>"},
                {"begin": "<function=get_time>", "schema": zone, "end": "</function>"},
            ],
            "triggers": ["<function="],
        }),
        "response_format",
    )
    .unwrap();
    ConstraintSpec::StructuralTag(tag)
}

/// Feeds `text` byte by byte; `Err(n)`: byte `n` was refused.
fn feed(m: &mut dyn ConstraintMatcher, text: &str) -> Result<(), usize> {
    for (i, &b) in text.as_bytes().iter().enumerate() {
        m.accept(b as u32).map_err(|_| i)?;
    }
    Ok(())
}

fn may_end(so: &StructuredOutputs, m: &mut dyn ConstraintMatcher) -> bool {
    allowed(m, so.vocab_size()).contains(&eos(so))
}

/// Where `text` is first refused (`None`: all accepted), and whether EOS may follow it.
fn run_tag(so: &StructuredOutputs, spec: &ConstraintSpec, text: &str) -> (Option<usize>, bool) {
    let c = so.compile_blocking(spec).unwrap();
    let mut m = c.0.new_matcher();
    match feed(m.as_mut(), text) {
        Ok(()) => (None, may_end(so, m.as_mut())),
        Err(i) => (Some(i), false),
    }
}

#[test]
fn struct_tag_free_text_without_a_trigger_may_end() {
    let so = outputs();
    let spec = weather_tag();
    for text in [
        "",
        "It is sunny in Paris.",
        "a <b> function= <function and\n{\"city\": 1}",
        // a trigger's prefix is not a trigger
        "call <function",
    ] {
        assert_eq!(run_tag(&so, &spec, text), (None, true), "{text:?}");
    }
}

#[test]
fn struct_tag_valid_tag_is_accepted_and_only_ends_outside_it() {
    let so = outputs();
    let spec = weather_tag();
    let tag = r#"Let me check. <function=get_weather>{"city": "Paris"}</function>"#;
    assert_eq!(run_tag(&so, &spec, tag), (None, true));
    assert_eq!(run_tag(&so, &spec, &format!("{tag} Done.")), (None, true));
    // inside the tag the output may not end
    for cut in [
        "x <function=",
        "<function=get_",
        r#"<function=get_weather>{"city": "Paris"}"#,
    ] {
        assert_eq!(run_tag(&so, &spec, cut), (None, false), "{cut:?}");
    }
}

#[test]
fn struct_tag_json_against_the_schema_is_enforced() {
    let so = outputs();
    let spec = weather_tag();
    let bad = [
        (r#"<function=get_weather>{"city": 3"#, 31),
        (r#"<function=get_weather>{"town""#, 24),
        (r#"<function=get_weather>{}"#, 23),
        (r#"<function=get_time>{"zone": "PST"}"#, 29),
        // no free whitespace in the JSON
        (r#"<function=get_weather>{ "city""#, 23),
        // the end must follow the JSON
        (r#"<function=get_weather>{"city": "Paris"} "#, 39),
    ];
    for (text, at) in bad {
        assert_eq!(run_tag(&so, &spec, text), (Some(at), false), "{text:?}");
    }
}

#[test]
fn struct_tag_trigger_must_open_a_known_begin() {
    let so = outputs();
    let spec = weather_tag();
    let text = "Checking <function=get_wind>";
    assert_eq!(run_tag(&so, &spec, text), (Some(text.len() - 4), false));
    let text = "Checking <function=xyz";
    assert_eq!(run_tag(&so, &spec, text), (Some(text.len() - 3), false));
}

#[test]
fn struct_tag_two_tags_with_text_between() {
    let so = outputs();
    let spec = weather_tag();
    let text = concat!(
        r#"First <function=get_weather>{"city": "Rome"}</function>"#,
        "\nthen\n",
        r#"<function=get_time>{"zone": "UTC"}</function><function=get_weather>{"city": "Oslo"}</function>"#,
        " done."
    );
    assert_eq!(run_tag(&so, &spec, text), (None, true));
}

#[test]
fn struct_tag_shortest_trigger_opens_and_literals_are_escaped() {
    let so = outputs();
    // "<f" completes before "<function=" is written: the structure hangs off "<f"
    let tag = StructuralTag::from_json(
        &json!({
            "structures": [
                {"begin": "<function=f> // #", "schema": {"type": "integer"}, "end": ""},
                {"begin": "<tool_call>\n{\"name\": \"g\", \"arguments\": ",
                 "schema": {"type": "object", "description": "a # b // c */ \"d\"",
                            "properties": {"x": {"type": "integer"}},
                            "required": ["x"], "additionalProperties": false},
                 "end": "}\n</tool_call>"},
            ],
            "triggers": ["<function=", "<f", "<tool_call>", "never"],
        }),
        "t",
    )
    .unwrap();
    let spec = ConstraintSpec::StructuralTag(tag);
    assert_eq!(run_tag(&so, &spec, "a <function=f> // #12 b"), (None, true));
    assert_eq!(run_tag(&so, &spec, "a <fx"), (Some(4), false));
    let hermes = "<tool_call>\n{\"name\": \"g\", \"arguments\": {\"x\": 1}}\n</tool_call>";
    assert_eq!(run_tag(&so, &spec, hermes), (None, true));
    // a trigger no structure starts with constrains nothing
    assert_eq!(run_tag(&so, &spec, "never mind"), (None, true));
}

#[test]
fn struct_tag_refusals_name_the_field() {
    let s = json!({"begin": "<a>", "schema": {}, "end": "</a>"});
    let cases = [
        (
            json!({"type": "structural_tag", "format": {"type": "any_text"}}),
            "`f.format`",
        ),
        (
            json!({"type": "structural_tag", "triggers": ["<a"]}),
            "`structures`",
        ),
        (json!({"structures": [s], "triggers": []}), "`f.triggers`"),
        (
            json!({"structures": [s], "triggers": [""]}),
            "`f.triggers[0]`",
        ),
        (
            json!({"structures": [s, {"begin": "<b>", "schema": {}, "end": ""}], "triggers": ["<a"]}),
            "`f.structures[1]`",
        ),
        (
            json!({"structures": [{"begin": "<a>", "end": ""}], "triggers": ["<a"]}),
            "`f.structures[0]` needs `schema`",
        ),
        (
            json!({"structures": [{"begin": 1, "schema": {}, "end": ""}], "triggers": ["<a"]}),
            "`f.structures[0].begin`",
        ),
        (
            json!({"type": "json_schema", "structures": [s], "triggers": ["<a"]}),
            "`f.type`",
        ),
        (json!([]), "`f`"),
    ];
    for (v, words) in cases {
        let e = StructuralTag::from_json(&v, "f").unwrap_err();
        assert!(e.0.contains(words), "{v}: {}", e.0);
    }
    // a schema llguidance refuses is refused at compilation
    let bad = json!({"structures": [{"begin": "<a>", "schema": {"type": "string", "minLength": 5,
        "maxLength": 2}, "end": ""}], "triggers": ["<a"]});
    let spec = ConstraintSpec::StructuralTag(StructuralTag::from_json(&bad, "f").unwrap());
    assert!(outputs().compile_blocking(&spec).is_err());
}
