//! The side files of a HF tokenizer directory: `tokenizer_config.json` (special tokens,
//! `add_bos_token`/`add_eos_token`, chat template), `special_tokens_map.json`,
//! `generation_config.json` (`eos_token_id`, an int or a list) and a separate
//! `chat_template.jinja` / `chat_template.json`, which newer transformers write instead of
//! putting the template in `tokenizer_config.json`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// What the side files say, before ids are looked up in the vocabulary.
#[derive(Debug, Default)]
pub(crate) struct HfConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
    pub pad_token: Option<String>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    /// `generation_config.json`'s `eos_token_id`, in file order.
    pub generation_eos_ids: Vec<u32>,
    /// (name, source); a single unnamed template is called `default`, as transformers does.
    pub chat_templates: Vec<(String, String)>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let v = serde_json::from_str(&text).with_context(|| format!("parsing {path:?}"))?;
    Ok(Some(v))
}

/// A special token is written either as its text or as an AddedToken object.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `chat_template` is a string or a list of `{"name", "template"}`.
fn templates(v: &Value) -> Result<Vec<(String, String)>> {
    match v {
        Value::String(s) => Ok(vec![("default".to_string(), s.clone())]),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let name = item.get("name").and_then(Value::as_str);
                let source = item.get("template").and_then(Value::as_str);
                match (name, source) {
                    (Some(n), Some(s)) => Ok((n.to_string(), s.to_string())),
                    _ => bail!("chat_template list entries need string `name` and `template`"),
                }
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => bail!("chat_template is neither a string nor a list"),
    }
}

fn ids(v: Option<&Value>) -> Vec<u32> {
    let as_id = |x: &Value| x.as_u64().and_then(|i| u32::try_from(i).ok());
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(as_id).collect(),
        Some(x) => as_id(x).into_iter().collect(),
        None => Vec::new(),
    }
}

pub(crate) fn read(dir: &Path) -> Result<HfConfig> {
    let mut cfg = HfConfig::default();
    let tc = read_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
    let stm = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);
    // tokenizer_config.json wins; special_tokens_map.json fills gaps (older checkpoints).
    let special = |key: &str| token_text(tc.get(key)).or_else(|| token_text(stm.get(key)));
    cfg.bos_token = special("bos_token");
    cfg.eos_token = special("eos_token");
    cfg.unk_token = special("unk_token");
    cfg.pad_token = special("pad_token");
    cfg.add_bos_token = tc.get("add_bos_token").and_then(Value::as_bool);
    cfg.add_eos_token = tc.get("add_eos_token").and_then(Value::as_bool);
    if let Some(t) = tc.get("chat_template") {
        cfg.chat_templates = templates(t).context("tokenizer_config.json chat_template")?;
    }

    // Separate template files take precedence, as in transformers.
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let source =
            std::fs::read_to_string(&jinja).with_context(|| format!("reading {jinja:?}"))?;
        cfg.chat_templates = vec![("default".to_string(), source)];
    } else if let Some(v) = read_json(&dir.join("chat_template.json"))? {
        let t = v.get("chat_template").unwrap_or(&Value::Null);
        cfg.chat_templates = templates(t).context("chat_template.json")?;
    }

    if let Some(gc) = read_json(&dir.join("generation_config.json"))? {
        cfg.generation_eos_ids = ids(gc.get("eos_token_id"));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn special_tokens_as_text_or_object() {
        assert_eq!(token_text(Some(&json!("<s>"))), Some("<s>".into()));
        assert_eq!(
            token_text(Some(&json!({"content": "</s>", "lstrip": false}))),
            Some("</s>".into())
        );
        assert_eq!(token_text(Some(&json!(null))), None);
    }

    #[test]
    fn eos_ids_int_or_list() {
        assert_eq!(ids(Some(&json!(7))), vec![7]);
        assert_eq!(ids(Some(&json!([1, 2, 3]))), vec![1, 2, 3]);
        assert!(ids(None).is_empty());
    }

    #[test]
    fn named_templates() {
        let t = templates(&json!([
            {"name": "default", "template": "a"},
            {"name": "tool_use", "template": "b"}
        ]))
        .unwrap();
        assert_eq!(t[1], ("tool_use".to_string(), "b".to_string()));
    }
}
