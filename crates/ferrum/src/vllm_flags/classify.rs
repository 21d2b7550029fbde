//! Classification: what each flag use becomes (kept, dropped, remapped or refused).

use super::catalog::{Arity, Spec, Which, catalog};
use super::human_int::{parse_human_int, parse_python_int};
use super::lexer::FlagUse;
use super::{Accept, REMOVED_ACTIONS, RemovedAction, VALUE_RULES, ValueRule};
use serde_json::Value;
use std::collections::HashSet;

/// What one flag use becomes.
pub(super) enum Outcome {
    /// These tokens go to clap.
    Keep(Vec<String>),
    /// Nothing goes to clap (the use means ferrum's default), with an optional warning.
    Drop(Option<String>),
    /// Read it as this current flag with these values instead, after this warning.
    Remap(usize, Vec<String>, String),
    Refuse(String),
}

pub(super) fn rule_for(name: &str) -> Option<&'static ValueRule> {
    VALUE_RULES.iter().find(|r| r.flag == name)
}

fn accepts(rule: &ValueRule, values: &[String]) -> bool {
    match rule.accept {
        Accept::Any => true,
        Accept::IntOne => values.len() == 1 && parse_python_int(values[0].trim()) == Some(1),
        Accept::Values(ok) => values.iter().all(|v| ok.contains(&v.as_str())),
    }
}

/// The long name ferrum knows this flag by: the one typed, the canonical one, or an alias.
fn ferrum_name<'a>(spec: &'a Spec, typed: &'a str, ferrum: &HashSet<String>) -> Option<&'a str> {
    let typed = typed.strip_prefix("--").filter(|t| ferrum.contains(*t));
    typed.or_else(|| spec.long_names().find(|n| ferrum.contains(*n)))
}

fn display(spec: &Spec, typed: &str) -> String {
    if typed.starts_with("--") {
        typed.to_string()
    } else {
        format!("{typed} (--{})", spec.name)
    }
}

fn emit(name: &str, values: &[String], arity: Arity) -> Vec<String> {
    match (arity, values) {
        (Arity::One | Arity::Optional, [v]) if v.starts_with('-') => vec![format!("--{name}={v}")],
        _ => std::iter::once(format!("--{name}"))
            .chain(values.iter().cloned())
            .collect(),
    }
}

pub(super) fn classify(u: &FlagUse, ferrum: &HashSet<String>) -> Outcome {
    let cat = catalog();
    let spec = cat.spec(u.entry.which, u.entry.idx);
    let shown = display(spec, &u.typed);
    if u.entry.which == Which::Removed {
        let removed = |why: &str| {
            if why.is_empty() {
                format!("`{shown}` was removed from vLLM; ignored")
            } else {
                format!("`{shown}` was removed from vLLM; ignored ({why})")
            }
        };
        let action = REMOVED_ACTIONS
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, a)| *a);
        return match action {
            Some(RemovedAction::Refuse(msg)) => Outcome::Refuse(msg.into()),
            Some(RemovedAction::MapTo(flag, value)) => match cat.current_by_name(flag) {
                Some(idx) => Outcome::Remap(
                    idx,
                    vec![value.into()],
                    format!("`{shown}` was removed from vLLM; mapped to --{flag} {value}"),
                ),
                None => Outcome::Drop(Some(removed(""))),
            },
            Some(RemovedAction::Ignore(why)) => Outcome::Drop(Some(removed(why))),
            None => match rule_for(&spec.name) {
                Some(rule) if !u.entry.negative && !accepts(rule, &u.values) => {
                    Outcome::Refuse(format!(
                        "not supported yet: --{} {} ({})",
                        spec.name,
                        u.values.join(" "),
                        rule.why
                    ))
                }
                // vLLM dropped it, ferrum has it (`--device`): passed on
                _ if !u.entry.negative && ferrum_name(spec, &u.typed, ferrum).is_some() => {
                    let name = ferrum_name(spec, &u.typed, ferrum).unwrap_or(&spec.name);
                    Outcome::Keep(emit(name, &u.values, spec.arity))
                }
                _ => Outcome::Drop(Some(removed(""))),
            },
        };
    }
    let fname = ferrum_name(spec, &u.typed, ferrum);
    if u.entry.negative {
        if let Some(rule) = rule_for(&spec.name)
            && matches!(rule.accept, Accept::Any)
            && fname.is_none()
        {
            return Outcome::Drop(None);
        }
        let typed_neg = u.typed.strip_prefix("--").filter(|t| ferrum.contains(*t));
        let no_form = fname
            .map(|n| format!("no-{n}"))
            .filter(|n| ferrum.contains(n));
        return match (typed_neg, no_form) {
            (Some(t), _) => Outcome::Keep(vec![format!("--{t}")]),
            (None, Some(n)) => Outcome::Keep(vec![format!("--{n}")]),
            // Setting false what is false anyway. (A default of null is vLLM's "auto",
            // often on: not the same.)
            _ if spec.default == Value::Bool(false) => Outcome::Drop(None),
            _ => Outcome::Refuse(format!(
                "{shown} is a vLLM flag that ferrum does not support yet"
            )),
        };
    }
    if let Some(rule) = rule_for(&spec.name) {
        if !accepts(rule, &u.values) {
            return Outcome::Refuse(format!(
                "not supported yet: --{} {} ({})",
                spec.name,
                u.values.join(" "),
                rule.why
            ));
        }
        if fname.is_none() {
            return Outcome::Drop(rule.warn.map(String::from));
        }
    }
    let Some(fname) = fname else {
        return Outcome::Refuse(format!(
            "{shown} is a vLLM flag that ferrum does not support yet"
        ));
    };
    let mut values = u.values.clone();
    if spec.ty == "human_int" || spec.ty == "human_int_or_auto" {
        for v in &mut values {
            let t = v.trim();
            if spec.ty == "human_int_or_auto" && (t == "-1" || t.eq_ignore_ascii_case("auto")) {
                return Outcome::Drop(Some(format!(
                    "`--{} {t}` (fit to memory) taken as the model's own length",
                    spec.name
                )));
            }
            match parse_human_int(v) {
                Ok(n) => *v = n.to_string(),
                Err(e) => return Outcome::Refuse(format!("--{}: {e}", spec.name)),
            }
        }
    }
    Outcome::Keep(emit(fname, &values, spec.arity))
}
