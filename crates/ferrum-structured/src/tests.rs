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
