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
//! * vLLM has it and ferrum does not: refused ("--foo is a vLLM flag that ferrum does not
//!   support yet");
//! * neither knows it: left in place, so that clap reports it with its "a similar argument
//!   exists" tip.

use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// The flags of `vllm serve`, generated from vLLM's source (see the module docs).
const FLAGS_JSON: &str = include_str!("../../tests/fixtures/vllm_serve_flags.json");

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
        accept: Accept::Values(&["auto", "float32", "float"]),
        warn: None,
        why: "ferrum computes in f32 on the CPU",
    },
    ValueRule {
        flag: "kv-cache-dtype",
        accept: Accept::Values(&["auto"]),
        warn: None,
        why: "ferrum keeps the KV cache in its compute dtype, f32",
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
        flag: "enforce-eager",
        accept: Accept::Any,
        warn: Some(
            "`--enforce-eager` accepted: ferrum captures no CUDA graphs, so it has no effect",
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
        accept: Accept::Values(&["auto", "cpu"]),
        warn: None,
        why: "ferrum runs on the CPU",
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

const SPECULATIVE: &str = "not supported yet: --speculative-config (ferrum has no speculative \
    decoding; --speculative-model and --num-speculative-tokens were vLLM's earlier spelling of it)";

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
    ("speculative-model", RemovedAction::Refuse(SPECULATIVE)),
    ("num-speculative-tokens", RemovedAction::Refuse(SPECULATIVE)),
    (
        "rope-scaling",
        RemovedAction::Refuse(
            "not supported yet: --rope-scaling (vLLM moved it to --hf-overrides, which ferrum \
             does not support yet)",
        ),
    ),
    (
        "rope-theta",
        RemovedAction::Refuse(
            "not supported yet: --rope-theta (vLLM moved it to --hf-overrides, which ferrum \
             does not support yet)",
        ),
    ),
    (
        "qlora-adapter-name-or-path",
        RemovedAction::Refuse(
            "not supported yet: --qlora-adapter-name-or-path (ferrum has no LoRA support)",
        ),
    ),
];

// ------------------------------------------------------------------------------- catalog

#[derive(Deserialize)]
struct FlagsFile {
    source: SourceInfo,
    flags: Vec<FlagRecord>,
    #[serde(default)]
    removed: Vec<FlagRecord>,
}

#[derive(Deserialize)]
struct SourceInfo {
    version: Option<String>,
    commit: Option<String>,
}

#[derive(Deserialize)]
struct FlagRecord {
    name: String,
    options: Vec<String>,
    #[serde(default)]
    negatives: Vec<String>,
    kind: String,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    default: Value,
}

/// How many values a flag takes, as vLLM's argparse reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// `store_true` or `BooleanOptionalAction`: none.
    Switch,
    /// One (`append` flags too, once per occurrence).
    One,
    /// `nargs="?"`: one if the next token is not an option.
    Optional,
    /// `nargs="+"`: every following token that is not an option, at least one.
    Many,
    /// `nargs=N`.
    Exactly(usize),
}

struct Spec {
    name: String,
    options: Vec<String>,
    negatives: Vec<String>,
    arity: Arity,
    append: bool,
    ty: String,
    default: Value,
}

impl Spec {
    fn from_record(r: FlagRecord) -> Spec {
        let arity = match r.kind.as_str() {
            "bool" | "store_true" | "store_false" => Arity::Switch,
            "optional_value" => Arity::Optional,
            "values" => Arity::Many,
            k => match k.strip_prefix("values_").and_then(|n| n.parse().ok()) {
                Some(n) => Arity::Exactly(n),
                None => Arity::One,
            },
        };
        Spec {
            append: r.kind == "append",
            name: r.name,
            options: r.options,
            negatives: r.negatives,
            arity,
            ty: r.ty.unwrap_or_default(),
            default: r.default,
        }
    }

    /// The long options that select it (positive forms), without `--`.
    fn long_names(&self) -> impl Iterator<Item = &str> {
        self.options.iter().filter_map(|o| o.strip_prefix("--"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Which {
    Current,
    Removed,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    which: Which,
    idx: usize,
    negative: bool,
}

struct Catalog {
    version: String,
    commit: String,
    current: Vec<Spec>,
    removed: Vec<Spec>,
    /// Every option string (`--x`, `--no-x`, `-tp`, ...) of a current or removed flag.
    index: HashMap<String, Entry>,
}

impl Catalog {
    fn spec(&self, which: Which, idx: usize) -> &Spec {
        match which {
            Which::Current => &self.current[idx],
            Which::Removed => &self.removed[idx],
        }
    }

    fn current_by_name(&self, name: &str) -> Option<usize> {
        match self.index.get(&format!("--{name}")) {
            Some(e) if e.which == Which::Current && !e.negative => Some(e.idx),
            _ => None,
        }
    }
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        // The file is part of the binary and a unit test parses it: a failure here is a bug in
        // the build, not in anyone's input.
        let file: FlagsFile =
            serde_json::from_str(FLAGS_JSON).expect("vllm_serve_flags.json is valid");
        let current: Vec<Spec> = file.flags.into_iter().map(Spec::from_record).collect();
        let removed: Vec<Spec> = file.removed.into_iter().map(Spec::from_record).collect();
        let mut index = HashMap::new();
        for (which, list) in [(Which::Removed, &removed), (Which::Current, &current)] {
            for (idx, spec) in list.iter().enumerate() {
                for o in &spec.options {
                    index.insert(
                        o.clone(),
                        Entry {
                            which,
                            idx,
                            negative: false,
                        },
                    );
                }
                for o in &spec.negatives {
                    index.insert(
                        o.clone(),
                        Entry {
                            which,
                            idx,
                            negative: true,
                        },
                    );
                }
            }
        }
        Catalog {
            version: file.source.version.unwrap_or_default(),
            commit: file.source.commit.unwrap_or_default(),
            current,
            removed,
            index,
        }
    })
}

/// The vLLM version (and commit) whose flags ferrum mirrors, e.g. "0.34.0 (62d4bc3c7)".
#[allow(dead_code)]
pub fn vllm_version() -> String {
    let c = catalog();
    format!("{} ({})", c.version, c.commit)
}

// ------------------------------------------------------------------------ human-readable ints

/// vLLM's human-readable integers for `--max-model-len`, `--max-num-batched-tokens`,
/// `--kv-cache-memory-bytes` and the like: a plain integer, or a number with a suffix, where
/// lower-case `k`/`m`/`g`/`t` multiply by 1000, 1000², 1000³, 1000⁴ (decimals allowed:
/// `25.6k` = 25600, truncated as vLLM's `int(float(n) * mult)`), and upper-case `K`/`M`/`G`/`T`
/// by 1024, 1024², 1024³, 1024⁴ (whole numbers only: `1K` = 1024).
pub fn parse_human_int(s: &str) -> Result<usize, String> {
    let v = s.trim();
    let bad = || {
        format!(
            "invalid integer {s:?}: vLLM takes a plain integer or one with a suffix, k/m/g/t \
             (x1000) or K/M/G/T (x1024), e.g. 16k, 25.6k, 2M"
        )
    };
    if let Some(suffix) = v.chars().last().filter(|c| "kKmMgGtT".contains(*c)) {
        let number = &v[..v.len() - 1]; // the suffix is one ASCII byte
        if is_decimal(number) {
            let power = match suffix.to_ascii_lowercase() {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                _ => 4,
            };
            if suffix.is_ascii_lowercase() {
                let x: f64 = number.parse().map_err(|_| bad())?;
                let product = x * 1000f64.powi(power);
                // `as` truncates toward zero like Python's int(); refuse what does not fit.
                if !(product.is_finite() && product < usize::MAX as f64) {
                    return Err(format!("{s:?} is too large"));
                }
                return Ok(product as usize);
            }
            if number.contains('.') {
                return Err(format!(
                    "invalid integer {s:?}: decimals are not allowed with binary suffixes like \
                     {suffix}; did you mean {number}{}?",
                    suffix.to_ascii_lowercase()
                ));
            }
            let n: usize = number.parse().map_err(|_| format!("{s:?} is too large"))?;
            return n
                .checked_mul(1usize << (10 * power))
                .ok_or_else(|| format!("{s:?} is too large"));
        }
    }
    parse_python_int(v).ok_or_else(bad).and_then(|n| {
        usize::try_from(n).map_err(|_| format!("invalid value {s:?}: must not be negative"))
    })
}

/// `\d+(\.\d+)?`, ASCII digits.
fn is_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let whole = parts.next().is_some_and(digits);
    whole && parts.next().is_none_or(digits)
}

/// Python's `int(str)` for base 10: a sign, then digits with single underscores between them.
fn parse_python_int(s: &str) -> Option<i128> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let n: i128 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -n } else { n })
}

// --------------------------------------------------------------------------------- --config

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
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
fn expand_config(argv: Vec<String>) -> Result<Vec<(String, Origin)>, String> {
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

// ---------------------------------------------------------------------------------- lexing

/// One flag use, or a token passed on as it is.
#[derive(Debug)]
enum Item {
    /// Copied verbatim: positionals, flags of ferrum's own, flags nobody knows, `-h`.
    Verbatim(String),
    Flag(FlagUse),
}

#[derive(Debug)]
struct FlagUse {
    entry: Entry,
    /// The option as written, underscores turned into dashes (`--max-model-len`, `-tp`).
    typed: String,
    values: Vec<String>,
    origin: Origin,
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

struct Lexer<'a> {
    toks: Vec<(String, Origin)>,
    pos: usize,
    ferrum: &'a HashSet<String>,
    items: Vec<Item>,
    /// `--flag.key value` uses, merged per flag into one JSON object (vLLM appends them last).
    dotted: Vec<(usize, Value, Origin)>,
    warnings: Vec<String>,
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

    fn run(mut self) -> Result<(Vec<Item>, Vec<String>), String> {
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

// -------------------------------------------------------------------------- classification

/// What one flag use becomes.
enum Outcome {
    /// These tokens go to clap.
    Keep(Vec<String>),
    /// Nothing goes to clap (the use means ferrum's default), with an optional warning.
    Drop(Option<String>),
    /// Read it as this current flag with these values instead, after this warning.
    Remap(usize, Vec<String>, String),
    Refuse(String),
}

fn rule_for(name: &str) -> Option<&'static ValueRule> {
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

fn classify(u: &FlagUse, ferrum: &HashSet<String>) -> Outcome {
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
