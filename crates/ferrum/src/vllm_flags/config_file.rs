//! `--config FILE.yaml`: the flags a config file stands for, spliced into the command line.

use super::catalog::{Arity, catalog};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Cli,
    Config,
}

/// The flags a `--config` YAML file stands for, as vLLM's FlexibleArgumentParser expands it:
/// `key: value` → `--key value`; `true` → `--key`; `false` → `--no-key` where vLLM has that form,
/// else nothing; a list → `--key item item...` (an empty one: nothing); a mapping → `--key
/// <JSON>`. Unlike vLLM, `key: null` gives nothing (vLLM passes the string `None`, which its
/// optional flags read as unset) and underscores in keys find the `--no-` form too.
fn config_tokens(path: &str, positional_model: bool) -> Result<Vec<String>, String> {
    let ext = path.rsplit('.').next().unwrap_or("");
    if ext != "yaml" && ext != "yml" {
        return Err(format!(
            "--config {path}: the config file must be a .yaml or .yml file (as in vLLM)"
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--config {path}: cannot read the config file: {e}"))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| format!("--config {path}: not valid YAML: {e}"))?;
    let map = match docs.into_iter().next() {
        None | Some(yaml_rust2::Yaml::Null) => return Ok(Vec::new()),
        Some(yaml_rust2::Yaml::Hash(map)) => map,
        Some(_) => {
            return Err(format!(
                "--config {path}: expected a mapping of flag names to values"
            ));
        }
    };
    let cat = catalog();
    let mut out = Vec::new();
    for (key, value) in map {
        let key = match key {
            yaml_rust2::Yaml::String(k) => k,
            other => {
                return Err(format!(
                    "--config {path}: {} is not a flag name",
                    yaml_scalar(&other).unwrap_or_else(|| format!("{other:?}"))
                ));
            }
        };
        let dashed = key.replace('_', "-");
        if dashed == "config" {
            return Err(format!(
                "--config {path}: a config file cannot name another one (`{key}`)"
            ));
        }
        if positional_model && dashed == "model" {
            continue; // vLLM: the model on the command line wins over the file's
        }
        let entry = cat.index.get(&format!("--{dashed}"));
        let switch = entry.is_some_and(|e| cat.spec(e.which, e.idx).arity == Arity::Switch);
        let as_bool = match &value {
            yaml_rust2::Yaml::Boolean(b) => Some(*b),
            // PyYAML reads YAML 1.1, where these are booleans too.
            yaml_rust2::Yaml::String(s) if switch => match s.as_str() {
                "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
                _ => None,
            },
            _ => None,
        };
        match (as_bool, value) {
            (Some(true), _) => out.push(format!("--{key}")),
            (Some(false), _) => {
                let no = format!("--no-{dashed}");
                if cat.index.get(&no).is_some_and(|e| e.negative) {
                    out.push(no);
                }
            }
            (None, yaml_rust2::Yaml::Null) => {}
            (None, yaml_rust2::Yaml::Array(items)) => {
                if !items.is_empty() {
                    out.push(format!("--{key}"));
                    out.extend(items.iter().map(yaml_item_string));
                }
            }
            (None, v @ yaml_rust2::Yaml::Hash(_)) => {
                out.push(format!("--{key}"));
                out.push(yaml_to_json(&v).to_string());
            }
            (None, v) => {
                out.push(format!("--{key}"));
                out.push(yaml_item_string(&v));
            }
        }
    }
    Ok(out)
}

/// A scalar as Python's `str()` gives it (booleans `True`/`False`, as vLLM passes them).
fn yaml_scalar(y: &yaml_rust2::Yaml) -> Option<String> {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(true) => Some("True".into()),
        Yaml::Boolean(false) => Some("False".into()),
        Yaml::Null => Some("None".into()),
        _ => None,
    }
}

fn yaml_item_string(y: &yaml_rust2::Yaml) -> String {
    yaml_scalar(y).unwrap_or_else(|| yaml_to_json(y).to_string())
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| (yaml_item_string(k), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

/// Splices `--config FILE`'s flags in where vLLM puts them: after the positional model if the
/// command line starts with one, else first; so the command line's own flags, coming later,
/// win.
pub(super) fn expand_config(argv: Vec<String>) -> Result<Vec<(String, Origin)>, String> {
    let at: Vec<usize> = argv
        .iter()
        .enumerate()
        .take_while(|(_, a)| a.as_str() != "--")
        .filter(|(_, a)| a.as_str() == "--config" || a.starts_with("--config="))
        .map(|(i, _)| i)
        .collect();
    let cli = |v: Vec<String>| v.into_iter().map(|a| (a, Origin::Cli)).collect();
    let Some(&i) = at.first() else {
        return Ok(cli(argv));
    };
    if at.len() > 1 {
        return Err("--config given more than once; vLLM reads one config file".into());
    }
    let (path, end) = match argv[i].strip_prefix("--config=") {
        Some(p) => (p.to_string(), i + 1),
        None => match argv.get(i + 1) {
            Some(p) => (p.clone(), i + 2),
            None => return Err("--config needs a file name".into()),
        },
    };
    let positional_model = argv.first().is_some_and(|a| !a.starts_with('-'));
    let from_file = config_tokens(&path, positional_model)?;
    let mut out = Vec::with_capacity(argv.len() + from_file.len());
    let mut rest = argv
        .into_iter()
        .enumerate()
        .filter(|(k, _)| *k < i || *k >= end);
    if positional_model && let Some((_, model)) = rest.next() {
        out.push((model, Origin::Cli));
    }
    out.extend(from_file.into_iter().map(|a| (a, Origin::Config)));
    out.extend(rest.map(|(_, a)| (a, Origin::Cli)));
    Ok(out)
}
