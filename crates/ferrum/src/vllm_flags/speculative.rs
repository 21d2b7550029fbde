//! vLLM 0.6's spelling of n-gram speculation (`--speculative-model [ngram]
//! --num-speculative-tokens K --ngram-prompt-lookup-max N --ngram-prompt-lookup-min M`), removed
//! from vLLM since, mapped with a warning to the one `--speculative-config` JSON it means now.

use super::catalog::{Which, catalog};
use super::lexer::Item;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The removed flags read together, and the `--speculative-config` key each becomes.
const LEGACY: &[(&str, Option<&str>)] = &[
    ("speculative-model", None),
    ("num-speculative-tokens", Some("num_speculative_tokens")),
    ("ngram-prompt-lookup-max", Some("prompt_lookup_max")),
    ("ngram-prompt-lookup-min", Some("prompt_lookup_min")),
];

/// Takes the legacy speculation flags out of `items` and appends the equivalent
/// `--speculative-config JSON` (with a warning), or refuses what has no n-gram meaning.
pub(super) fn map_legacy_speculative(
    items: Vec<Item>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Item>, String> {
    let cat = catalog();
    let mut found: HashMap<&str, String> = HashMap::new();
    let mut typed: Vec<String> = Vec::new();
    let mut rest = Vec::with_capacity(items.len());
    for item in items {
        if let Item::Flag(u) = &item
            && u.entry.which == Which::Removed
        {
            let name = cat.spec(Which::Removed, u.entry.idx).name.as_str();
            if let Some(&(flag, _)) = LEGACY.iter().find(|(f, _)| *f == name) {
                // the last use wins, as with argparse
                found.insert(flag, u.values.last().cloned().unwrap_or_default());
                if !typed.contains(&u.typed) {
                    typed.push(u.typed.clone());
                }
                continue;
            }
        }
        rest.push(item);
    }
    if found.is_empty() {
        return Ok(rest);
    }
    let spelling = "vLLM's earlier spelling of --speculative-config";
    match found.get("speculative-model").map(String::as_str) {
        Some("[ngram]" | "ngram") => {}
        Some(m) => {
            return Err(format!(
                "not supported yet: --speculative-model {m} ({spelling} with a draft model; \
                 ferrum implements the \"ngram\" method only)"
            ));
        }
        None => {
            return Err(format!(
                "{} without --speculative-model [ngram] ({spelling} '{{\"method\": \"ngram\", ...}}')",
                typed.join(", ")
            ));
        }
    }
    if !found.contains_key("num-speculative-tokens") {
        return Err(format!(
            "--speculative-model [ngram] needs --num-speculative-tokens ({spelling} \
             '{{\"method\": \"ngram\", \"num_speculative_tokens\": K}}')"
        ));
    }
    let mut obj = Map::new();
    obj.insert("method".into(), Value::from("ngram"));
    for &(flag, key) in LEGACY {
        let (Some(key), Some(v)) = (key, found.get(flag)) else {
            continue;
        };
        let n: u64 = v
            .parse()
            .map_err(|_| format!("--{flag} expects a non-negative integer, got `{v}`"))?;
        obj.insert(key.into(), Value::from(n));
    }
    let json = Value::Object(obj).to_string();
    warnings.push(format!(
        "`{}` {} removed from vLLM; mapped to --speculative-config {json}",
        typed.join("`, `"),
        if typed.len() == 1 { "was" } else { "were" }
    ));
    rest.push(Item::Verbatim("--speculative-config".into()));
    rest.push(Item::Verbatim(json));
    Ok(rest)
}
