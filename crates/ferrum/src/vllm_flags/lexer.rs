//! Lexing: reads the tokens into flag uses as vLLM's argparse does.

use super::catalog::{Arity, Entry, Which, catalog};
use super::config_file::Origin;
use super::human_int::parse_human_int;
use serde_json::Value;
use std::collections::HashSet;

/// One flag use, or a token passed on as it is.
#[derive(Debug)]
pub(super) enum Item {
    /// Copied verbatim: positionals, flags of ferrum's own, flags nobody knows, `-h`.
    Verbatim(String),
    Flag(FlagUse),
}

#[derive(Debug)]
pub(super) struct FlagUse {
    pub(super) entry: Entry,
    /// The option as written, underscores turned into dashes (`--max-model-len`, `-tp`).
    pub(super) typed: String,
    pub(super) values: Vec<String>,
    pub(super) origin: Origin,
}

/// Whether argparse reads this token as an option rather than a value: it starts with `-`, is
/// not `-` alone, not a negative number and holds no space.
fn looks_like_option(tok: &str) -> bool {
    if !tok.starts_with('-') || tok == "-" || tok.contains(' ') {
        return false;
    }
    let rest = &tok[1..];
    let number = match rest.split_once('.') {
        None => !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()),
        Some((a, b)) => {
            a.bytes().all(|c| c.is_ascii_digit())
                && !b.is_empty()
                && b.bytes().all(|c| c.is_ascii_digit())
        }
    };
    !number
}

/// FlexibleArgumentParser's spelling: underscores become dashes in a `--` flag's name, up to
/// the first `.` (what follows is a JSON key path and keeps its underscores).
fn dashed(name: &str) -> String {
    match name.strip_prefix("--") {
        Some(rest) => {
            let (head, tail) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
            format!("--{}{tail}", head.replace('_', "-"))
        }
        None => name.to_string(),
    }
}

pub(super) struct Lexer<'a> {
    pub(super) toks: Vec<(String, Origin)>,
    pub(super) pos: usize,
    pub(super) ferrum: &'a HashSet<String>,
    pub(super) items: Vec<Item>,
    /// `--flag.key value` uses, merged per flag into one JSON object (vLLM appends them last).
    pub(super) dotted: Vec<(usize, Value, Origin)>,
    pub(super) warnings: Vec<String>,
}

impl Lexer<'_> {
    fn next_value(&mut self) -> Option<String> {
        let (tok, _) = self.toks.get(self.pos)?;
        if looks_like_option(tok) {
            return None;
        }
        self.pos += 1;
        Some(tok.clone())
    }

    pub(super) fn run(mut self) -> Result<(Vec<Item>, Vec<String>), String> {
        let cat = catalog();
        while self.pos < self.toks.len() {
            let (tok, origin) = self.toks[self.pos].clone();
            self.pos += 1;
            if tok == "--" {
                self.items.push(Item::Verbatim(tok));
                while let Some((t, _)) = self.toks.get(self.pos) {
                    self.items.push(Item::Verbatim(t.clone()));
                    self.pos += 1;
                }
                break;
            }
            if !looks_like_option(&tok) {
                self.items.push(Item::Verbatim(tok));
                continue;
            }
            // vLLM: `--help=<section>` searches the help; clap has plain `--help`.
            if tok.starts_with("--help=") {
                self.items.push(Item::Verbatim("--help".into()));
                continue;
            }
            // vLLM: -O3, -O=3, -Odecode and `-O 3` mean --optimization-level.
            if let Some(level) = tok.strip_prefix("-O") {
                let value = if let Some(v) = level.strip_prefix('=') {
                    Some(v.to_string())
                } else if !level.is_empty() {
                    Some(level.to_string())
                } else if self
                    .toks
                    .get(self.pos)
                    .is_some_and(|(t, _)| ["0", "1", "2", "3"].contains(&t.as_str()))
                {
                    self.pos += 1;
                    Some(self.toks[self.pos - 1].0.clone())
                } else {
                    None
                };
                if let (Some(v), Some(&entry)) = (value, cat.index.get("--optimization-level")) {
                    self.items.push(Item::Flag(FlagUse {
                        entry,
                        typed: "-O".into(),
                        values: vec![v],
                        origin,
                    }));
                    continue;
                }
            }
            let (name, attached) = match tok.split_once('=') {
                Some((n, v)) => (dashed(n), Some(v.to_string())),
                None => (dashed(&tok), None),
            };
            if name.starts_with("--") && name.contains('.') {
                self.dotted_use(&name, attached, origin)?;
                continue;
            }
            let typed = if cat.index.contains_key(&name)
                || self.ferrum.contains(name.trim_start_matches('-'))
            {
                name
            } else {
                self.abbreviation(&name)?.unwrap_or(name)
            };
            let Some(&entry) = cat.index.get(&typed) else {
                // ferrum's own flag, or one nobody knows (clap will say so): as written.
                self.items.push(Item::Verbatim(match &attached {
                    Some(v) => format!("{typed}={v}"),
                    None => typed,
                }));
                continue;
            };
            let values = self.values(&typed, entry, attached)?;
            self.items.push(Item::Flag(FlagUse {
                entry,
                typed,
                values,
                origin,
            }));
        }
        // vLLM turns the dotted uses into one JSON value per flag, after everything else.
        for (idx, value, origin) in std::mem::take(&mut self.dotted) {
            let entry = Entry {
                which: Which::Current,
                idx,
                negative: false,
            };
            let typed = format!("--{}", cat.current[idx].name);
            self.items.push(Item::Flag(FlagUse {
                entry,
                typed,
                values: vec![value.to_string()],
                origin,
            }));
        }
        Ok((self.items, self.warnings))
    }

    /// argparse takes an unambiguous prefix of a long option as that option: the option.
    fn abbreviation(&mut self, name: &str) -> Result<Option<String>, String> {
        let Some(prefix) = name.strip_prefix("--").filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let cat = catalog();
        let mut matches: Vec<String> = cat
            .current
            .iter()
            .flat_map(|s| s.options.iter().chain(&s.negatives))
            .filter_map(|o| o.strip_prefix("--"))
            .chain(self.ferrum.iter().map(String::as_str))
            .filter(|o| o.starts_with(prefix))
            .map(|o| format!("--{o}"))
            .collect();
        matches.sort();
        matches.dedup();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => {
                self.warnings.push(format!(
                    "`{name}` taken as {one} (vLLM accepts an unambiguous abbreviation)"
                ));
                Ok(Some(one.clone()))
            }
            many => Err(format!(
                "ambiguous option: {name} could match {}",
                many.join(", ")
            )),
        }
    }

    fn values(
        &mut self,
        typed: &str,
        entry: Entry,
        attached: Option<String>,
    ) -> Result<Vec<String>, String> {
        let spec = catalog().spec(entry.which, entry.idx);
        let arity = if entry.negative {
            Arity::Switch
        } else {
            spec.arity
        };
        let need = |what: &str| format!("{typed} needs {what}");
        Ok(match arity {
            Arity::Switch => {
                if let Some(v) = attached {
                    return Err(format!("{typed} takes no value (got {typed}={v})"));
                }
                Vec::new()
            }
            Arity::One => vec![
                attached
                    .or_else(|| self.next_value())
                    .ok_or_else(|| need("a value"))?,
            ],
            Arity::Optional => attached.or_else(|| self.next_value()).into_iter().collect(),
            Arity::Many => match attached {
                Some(v) => vec![v],
                None => {
                    let mut vs = Vec::new();
                    while let Some(v) = self.next_value() {
                        vs.push(v);
                    }
                    if vs.is_empty() {
                        return Err(need("at least one value"));
                    }
                    vs
                }
            },
            Arity::Exactly(n) => {
                if attached.is_some() {
                    return Err(format!("{typed} takes {n} values, not {typed}=..."));
                }
                let mut vs = Vec::new();
                for _ in 0..n {
                    vs.push(
                        self.next_value()
                            .ok_or_else(|| need(&format!("{n} values")))?,
                    );
                }
                vs
            }
        })
    }

    /// `--json-flag.key.sub value` (and `--json-flag.key+ a,b`): one key of a JSON value.
    fn dotted_use(
        &mut self,
        name: &str,
        attached: Option<String>,
        origin: Origin,
    ) -> Result<(), String> {
        let cat = catalog();
        let (base, path) = name.split_once('.').unwrap_or((name, ""));
        let value = match attached {
            Some(v) => v,
            // vLLM takes the next token, whatever it is.
            None => match self.toks.get(self.pos) {
                Some((v, _)) => {
                    self.pos += 1;
                    v.clone()
                }
                None => return Err(format!("{name} needs a value")),
            },
        };
        let Some(idx) = cat.current_by_name(base.trim_start_matches('-')) else {
            // Not a vLLM flag: clap reports it.
            self.items.push(Item::Verbatim(format!("{name}={value}")));
            return Ok(());
        };
        let (path, append) = match path.strip_suffix('+') {
            Some(p) => (p, true),
            None => (path, false),
        };
        let leaf = if append {
            Value::Array(value.split(',').map(|s| Value::String(s.into())).collect())
        } else {
            // vLLM: JSON if it parses, else a human-readable integer, else the string.
            serde_json::from_str(&value).unwrap_or_else(|_| match parse_human_int(&value) {
                Ok(n) => Value::from(n),
                Err(_) => Value::String(value.clone()),
            })
        };
        let mut nested = leaf;
        for key in path.split('.').rev() {
            nested = Value::Object([(key.to_string(), nested)].into_iter().collect());
        }
        match self.dotted.iter_mut().find(|(i, _, _)| *i == idx) {
            Some((_, existing, o)) => {
                merge_json(existing, nested);
                *o = origin;
            }
            None => self.dotted.push((idx, nested, origin)),
        }
        Ok(())
    }
}

/// vLLM's recursive_dict_update: objects merge, lists concatenate, anything else is replaced.
fn merge_json(into: &mut Value, update: Value) {
    match (into, update) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot @ Value::Object(_)) if v.is_object() => merge_json(slot, v),
                    Some(Value::Array(list)) if v.is_array() => {
                        if let Value::Array(more) = v {
                            list.extend(more);
                        }
                    }
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}
