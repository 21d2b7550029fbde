//! `vllm serve` command lines for `ferrum serve`: rewrites the arguments written for vLLM into
//! ones ferrum's clap parser takes, or refuses them with a message that names the flag.
//!
//! What vLLM accepts comes from `tests/fixtures/vllm_serve_flags.json`, which
//! `tests/fixtures/extract_vllm_flags.py` generates from vLLM's source: every flag of
//! `vllm serve` (with its arity, `--no-`/`--disable-` forms and default) and the flags that
//! older vLLM versions had and the current one dropped. Each flag of a command line ends up in
//! exactly one of these classes:
//! * ferrum defines it: passed on (vLLM's spellings normalized, human-readable integers such as
//!   `16k` turned into plain ones);
//! * ferrum supports some of its values ([`VALUE_RULES`]): an accepted value is passed on, or
//!   dropped where ferrum has no such flag because the value is what ferrum does anyway; any
//!   other value is refused ("not supported yet: --dtype bfloat16 (...)");
//! * vLLM removed it: accepted with a one-line warning and ignored, mapped to its replacement,
//!   or refused where ignoring it would change what the server does ([`REMOVED_ACTIONS`]);
//!   vLLM 0.6's n-gram speculation flags become one `--speculative-config` (`speculative.rs`);
//! * vLLM has it and ferrum does not: refused ("--foo is a vLLM flag that ferrum does not
//!   support yet");
//! * neither knows it: left in place, so that clap reports it with its "a similar argument
//!   exists" tip.

mod catalog;
mod classify;
mod config_file;
mod human_int;
mod lexer;
mod speculative;

use catalog::{Entry, Which, catalog};
use classify::{Outcome, classify, rule_for};
use config_file::{Origin, expand_config};
use lexer::{FlagUse, Item, Lexer};
use std::collections::{HashMap, HashSet};

#[cfg(test)]
use catalog::{Arity, Spec, vllm_version};
#[cfg(test)]
use human_int::parse_human_int;
#[cfg(test)]
use serde_json::Value;

/// `serve`'s arguments ready for clap, and what was accepted but changed or ignored (one line
/// each, for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub argv: Vec<String>,
    pub warnings: Vec<String>,
}

/// How a flag whose values ferrum supports only in part is treated.
#[derive(Debug, Clone, Copy)]
enum Accept {
    /// These values (compared as written; `1`, `01` and `+1` all count as 1 for `IntOne`).
    Values(&'static [&'static str]),
    /// An integer equal to 1.
    IntOne,
    /// Any value; for a boolean flag both `--x` and `--no-x`.
    Any,
}

/// One row of [`VALUE_RULES`].
#[derive(Debug, Clone, Copy)]
struct ValueRule {
    /// vLLM's flag, without `--` (a current flag or a removed one).
    flag: &'static str,
    accept: Accept,
    /// Warning when an accepted use is dropped because ferrum has no such flag.
    warn: Option<&'static str>,
    /// Why other values are refused: "not supported yet: --flag value (why)".
    why: &'static str,
}

/// Flags whose values ferrum supports only in part, in one place. A value that is accepted is
/// passed on where ferrum defines the flag and dropped otherwise (it is what ferrum does
/// anyway); any other value is refused.
const VALUE_RULES: &[ValueRule] = &[
    ValueRule {
        flag: "tensor-parallel-size",
        accept: Accept::IntOne,
        warn: None,
        why: "ferrum runs a model on one device",
    },
    ValueRule {
        flag: "pipeline-parallel-size",
        accept: Accept::IntOne,
        warn: None,
        why: "ferrum runs a model on one device",
    },
    ValueRule {
        flag: "data-parallel-size",
        accept: Accept::IntOne,
        warn: None,
        why: "ferrum runs one engine",
    },
    ValueRule {
        flag: "dtype",
        accept: Accept::Values(&["auto", "float32", "float", "bfloat16", "float16", "half"]),
        warn: None,
        why: "ferrum computes in f32 on the CPU and in bf16 or f16 on a GPU",
    },
    ValueRule {
        flag: "kv-cache-dtype",
        accept: Accept::Values(&["auto", "fp8", "fp8_e4m3"]),
        warn: None,
        why: "ferrum keeps the KV cache in its compute dtype or in fp8 e4m3",
    },
    ValueRule {
        flag: "quantization",
        // `None` (and an empty value) is how vLLM spells "no --quantization".
        accept: Accept::Values(&["None", ""]),
        warn: None,
        why: "ferrum runs the weights as the checkpoint stores them, GGUF quantizations included",
    },
    ValueRule {
        flag: "trust-remote-code",
        accept: Accept::Any,
        warn: Some(
            "`--trust-remote-code` accepted: ferrum runs no model code from the hub, so it has no effect",
        ),
        why: "",
    },
    ValueRule {
        flag: "distributed-executor-backend",
        accept: Accept::Values(&["uni", "mp", "None", ""]),
        warn: None,
        why: "ferrum runs a model in one process",
    },
    ValueRule {
        flag: "load-format",
        accept: Accept::Values(&["auto", "safetensors", "gguf", "dummy"]),
        warn: None,
        why: "ferrum loads auto, safetensors, gguf and dummy",
    },
    // Removed from vLLM, but their values still say something.
    ValueRule {
        flag: "device",
        accept: Accept::Values(&["auto", "cuda", "cpu"]),
        warn: None,
        why: "ferrum runs on CUDA GPUs or the CPU",
    },
    ValueRule {
        flag: "task",
        accept: Accept::Values(&["auto", "generate"]),
        warn: None,
        why: "ferrum serves text generation only",
    },
];

/// What to do with a flag vLLM removed (the list of such flags is the JSON's `removed`).
#[derive(Debug, Clone, Copy)]
enum RemovedAction {
    /// Warn and ignore it; the text, if any, says why that is right.
    Ignore(&'static str),
    /// Warn and read it as this current flag with this value.
    MapTo(&'static str, &'static str),
    /// Refuse it with this message: ignoring it would change what the server does.
    Refuse(&'static str),
}

/// Removed flags that are not simply ignored, or whose warning says more. Every other flag of
/// the JSON's `removed` list is ignored with "`--x` was removed from vLLM; ignored".
const REMOVED_ACTIONS: &[(&str, RemovedAction)] = &[
    (
        "enable-reasoning",
        RemovedAction::Ignore("vLLM parses reasoning whenever --reasoning-parser is given"),
    ),
    (
        "guided-decoding-backend",
        RemovedAction::Ignore("vLLM now reads it from --structured-outputs-config"),
    ),
    (
        "worker-use-ray",
        RemovedAction::MapTo("distributed-executor-backend", "ray"),
    ),
    (
        "rope-scaling",
        RemovedAction::Refuse(
            "--rope-scaling was removed from vLLM: pass --hf-overrides \
             '{\"rope_scaling\": {...}}' instead",
        ),
    ),
    (
        "rope-theta",
        RemovedAction::Refuse(
            "--rope-theta was removed from vLLM: pass --hf-overrides \
             '{\"rope_theta\": ...}' instead",
        ),
    ),
    (
        "qlora-adapter-name-or-path",
        RemovedAction::Refuse(
            "not supported yet: --qlora-adapter-name-or-path (ferrum has no LoRA support)",
        ),
    ),
];

// ------------------------------------------------------------------------------- the entry

/// Rewrites `serve`'s argv (the tokens after `serve`) before clap parses it.
/// `ferrum_flags`: the long flag names (without `--`) that ferrum's clap `serve` command defines.
///
/// In order: expands `--config FILE.yaml` as vLLM does (the command line wins); reads `--x=v`
/// and `--x v`, `--x_y` as `--x-y`, `-O3`, vLLM's short options (`-tp`, `-q`, ...),
/// unambiguous abbreviations and `--json-flag.key value`; keeps the last use of a flag given
/// twice (as vLLM); then classifies each flag (see the module docs). Every refused flag is
/// reported, one line each.
pub fn normalize_serve_argv(
    argv: Vec<String>,
    ferrum_flags: &[String],
) -> Result<Normalized, String> {
    let ferrum: HashSet<String> = ferrum_flags.iter().cloned().collect();
    let toks = expand_config(argv)?;
    let (items, mut warnings) = Lexer {
        toks,
        pos: 0,
        ferrum: &ferrum,
        items: Vec::new(),
        dotted: Vec::new(),
        warnings: Vec::new(),
    }
    .run()?;
    let items = speculative::map_legacy_speculative(items, &mut warnings)?;

    // The last use of a flag wins, as with argparse (clap would refuse the repetition).
    let cat = catalog();
    let mut last: HashMap<(Which, usize), usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Item::Flag(u) = item
            && !cat.spec(u.entry.which, u.entry.idx).append
        {
            last.insert((u.entry.which, u.entry.idx), i);
        }
    }
    let mut argv = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut warned_twice = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let u = match item {
            Item::Verbatim(t) => {
                argv.push(t.clone());
                continue;
            }
            Item::Flag(u) => u,
        };
        let key = (u.entry.which, u.entry.idx);
        if let Some(&j) = last.get(&key).filter(|&&j| j != i) {
            if let Item::Flag(later) = &items[j] {
                let name = &cat.spec(key.0, key.1).name;
                if u.origin == Origin::Cli
                    && later.origin == Origin::Cli
                    && warned_twice.insert(key)
                {
                    warnings.push(format!(
                        "`--{name}` given more than once; the last one wins, as in vLLM"
                    ));
                }
            }
            continue;
        }
        let mut outcome = classify(u, &ferrum);
        if let Outcome::Remap(idx, values, warning) = outcome {
            let name = &cat.current[idx].name;
            let mapped = FlagUse {
                entry: Entry {
                    which: Which::Current,
                    idx,
                    negative: false,
                },
                typed: format!("--{name}"),
                values,
                origin: u.origin,
            };
            outcome = match classify(&mapped, &ferrum) {
                Outcome::Refuse(_) => Outcome::Refuse(format!(
                    "not supported yet: {} (vLLM's earlier spelling of --{name} {}{})",
                    u.typed,
                    mapped.values.join(" "),
                    rule_for(name)
                        .map(|r| format!("; {}", r.why))
                        .unwrap_or_default()
                )),
                other => {
                    warnings.push(warning);
                    other
                }
            };
        }
        match outcome {
            Outcome::Keep(tokens) => argv.extend(tokens),
            Outcome::Drop(w) => warnings.extend(w),
            Outcome::Refuse(e) => errors.push(e),
            Outcome::Remap(..) => {} // a mapping target is a current flag: no second remap
        }
    }
    if !errors.is_empty() {
        let mut seen = HashSet::new();
        errors.retain(|e| seen.insert(e.clone()));
        return Err(errors.join("\n"));
    }
    let mut seen = HashSet::new();
    warnings.retain(|w| seen.insert(w.clone()));
    Ok(Normalized { argv, warnings })
}

#[cfg(test)]
mod tests;
