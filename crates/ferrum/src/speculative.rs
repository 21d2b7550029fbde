//! `--speculative-config` as vLLM takes it: a JSON object (vLLM's `SpeculativeConfig` fields).
//! ferrum implements the n-gram method (prompt lookup); any other method is refused by name.

use ferrum_engine::SpeculativeConfig;
use serde_json::{Map, Value};

/// The fields ferrum reads; vLLM's others are refused by name rather than ignored.
const FIELDS: &[&str] = &[
    "method",
    "model",
    "num_speculative_tokens",
    "prompt_lookup_max",
    "prompt_lookup_min",
];

/// Parses and validates `--speculative-config` (clap value parser).
pub fn parse_speculative_config(s: &str) -> Result<SpeculativeConfig, String> {
    let v: Value = serde_json::from_str(s)
        .map_err(|e| format!("--speculative-config is not valid JSON ({e}): {s}"))?;
    let Value::Object(obj) = v else {
        return Err(format!(
            "--speculative-config must be a JSON object, got {s}"
        ));
    };
    from_object(&obj)
}

fn from_object(obj: &Map<String, Value>) -> Result<SpeculativeConfig, String> {
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "not supported yet: --speculative-config field `{k}` (ferrum's n-gram speculation \
             takes method, num_speculative_tokens, prompt_lookup_max and prompt_lookup_min)"
        ));
    }
    let text = |key: &str| -> Result<Option<&str>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "--speculative-config: {key} must be a string, got {other}"
            )),
        }
    };
    let int = |key: &str| -> Result<Option<usize>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                format!("--speculative-config: {key} must be a non-negative integer, got {v}")
            }),
        }
    };
    let is_ngram = |m: &str| m == "ngram" || m == "[ngram]";
    let method = text("method")?;
    let model = text("model")?;
    match (method, model) {
        (Some(m), _) if is_ngram(m) => {}
        (None, Some(m)) if is_ngram(m) => {}
        (Some(m), _) => {
            return Err(format!(
                "not supported yet: speculative decoding method `{m}` (ferrum implements \"ngram\")"
            ));
        }
        (None, Some(m)) => {
            return Err(format!(
                "not supported yet: speculative decoding with a draft model (`{m}`); ferrum \
                 implements the \"ngram\" method"
            ));
        }
        (None, None) => {
            return Err(
                "--speculative-config needs \"method\": \"ngram\" (the method ferrum implements)"
                    .into(),
            );
        }
    }
    let k = int("num_speculative_tokens")?.ok_or(
        "num_speculative_tokens must be provided with speculative model unless the draft model \
         config contains an n_predict parameter.",
    )?;
    SpeculativeConfig::ngram(k, int("prompt_lookup_min")?, int("prompt_lookup_max")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_as_vllm_takes_it() {
        let c = parse_speculative_config(
            r#"{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4, "prompt_lookup_min": 2}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            SpeculativeConfig {
                num_speculative_tokens: 3,
                prompt_lookup_min: 2,
                prompt_lookup_max: 4
            }
        );
        let c = parse_speculative_config(r#"{"model": "[ngram]", "num_speculative_tokens": 5}"#)
            .unwrap();
        assert_eq!((c.prompt_lookup_min, c.prompt_lookup_max), (5, 5));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let e = parse_speculative_config(r#"{"method": "eagle", "num_speculative_tokens": 3}"#)
            .unwrap_err();
        assert!(e.contains("`eagle`"), "{e}");
        let e = parse_speculative_config(r#"{"method": "ngram"}"#).unwrap_err();
        assert!(e.contains("num_speculative_tokens"), "{e}");
        let e = parse_speculative_config(
            r#"{"method": "ngram", "num_speculative_tokens": 3, "draft_tensor_parallel_size": 1}"#,
        )
        .unwrap_err();
        assert!(e.contains("draft_tensor_parallel_size"), "{e}");
        let e = parse_speculative_config(
            r#"{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 4, "prompt_lookup_max": 2}"#,
        )
        .unwrap_err();
        assert_eq!(e, "prompt_lookup_min=4 must be <= prompt_lookup_max=2");
        assert!(parse_speculative_config("{").is_err());
        assert!(parse_speculative_config("[]").is_err());
    }
}
