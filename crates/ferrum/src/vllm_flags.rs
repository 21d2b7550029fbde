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
const FLAGS_JSON: &str = include_str!("../tests/fixtures/vllm_serve_flags.json");

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

// ----------------------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ferrum serve` defines (the sample list of the brief).
    const FERRUM: &[&str] = &[
        "model",
        "host",
        "port",
        "served-model-name",
        "api-key",
        "allowed-origins",
        "allowed-methods",
        "allowed-headers",
        "allow-credentials",
        "uvicorn-log-level",
        "disable-log-stats",
        "enable-log-requests",
        "disable-fastapi-docs",
        "root-path",
        "chat-template",
        "default-chat-template-kwargs",
        "enable-auto-tool-choice",
        "tool-call-parser",
        "reasoning-parser",
        "response-role",
        "tokenizer",
        "load-format",
        "max-model-len",
        "seed",
        "generation-config",
        "max-num-seqs",
        "max-num-batched-tokens",
        "block-size",
        "enable-prefix-caching",
        "no-enable-prefix-caching",
        "enable-chunked-prefill",
        "no-enable-chunked-prefill",
        "scheduling-policy",
        "kv-cache-memory-bytes",
        "num-gpu-blocks-override",
        "gpu-memory-utilization",
        "max-logprobs",
        "config",
    ];

    fn ferrum() -> Vec<String> {
        FERRUM.iter().map(|s| s.to_string()).collect()
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn norm(cmd: &str) -> Result<Normalized, String> {
        normalize_serve_argv(words(cmd), &ferrum())
    }

    fn ok(cmd: &str, argv: &str, warnings: &[&str]) {
        let n = norm(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert_eq!(n.argv, words(argv), "{cmd}");
        assert_eq!(n.warnings, warnings, "{cmd}");
    }

    fn err(cmd: &str, message: &str) {
        assert_eq!(norm(cmd), Err(message.to_string()), "{cmd}");
    }

    /// A `vllm serve MODEL ...` line, as a deployment guide prints it, without `vllm serve`.
    fn guide(line: &str) -> String {
        line.trim()
            .strip_prefix("vllm serve")
            .expect("a vllm serve line")
            .replace("\\\n", " ")
    }

    // -- the JSON

    #[test]
    fn flags_json_parses_and_names_its_source() {
        let cat = catalog();
        assert!(cat.current.len() > 300, "{}", cat.current.len());
        assert!(!cat.removed.is_empty());
        assert!(!cat.version.is_empty() && !cat.commit.is_empty());
        assert_eq!(vllm_version(), format!("{} ({})", cat.version, cat.commit));
        for spec in &cat.current {
            assert!(
                spec.options.iter().all(|o| o.starts_with('-')),
                "{}",
                spec.name
            );
        }
        // A removed flag is one the current vLLM does not accept in any form.
        for spec in &cat.removed {
            for o in spec.options.iter().chain(&spec.negatives) {
                let e = cat.index[o];
                assert_eq!(e.which, Which::Removed, "{o} is both current and removed");
            }
        }
        for rule in VALUE_RULES {
            assert!(
                cat.index.contains_key(&format!("--{}", rule.flag)),
                "value rule for unknown flag --{}",
                rule.flag
            );
        }
        for (name, _) in REMOVED_ACTIONS {
            let e = cat.index.get(&format!("--{name}")).expect(name);
            assert_eq!(e.which, Which::Removed, "--{name}");
        }
    }

    #[test]
    fn flags_json_records_kinds_defaults_and_no_forms() {
        let cat = catalog();
        let spec = |n: &str| &cat.current[cat.current_by_name(n).unwrap()];
        assert_eq!(spec("max-model-len").arity, Arity::One);
        assert_eq!(spec("max-model-len").ty, "human_int_or_auto");
        assert_eq!(spec("enable-prefix-caching").arity, Arity::Switch);
        assert_eq!(
            spec("enable-prefix-caching").negatives,
            ["--no-enable-prefix-caching", "--disable-prefix-caching"]
        );
        assert_eq!(spec("disable-log-stats").negatives, Vec::<String>::new());
        assert_eq!(spec("api-key").arity, Arity::Many);
        assert_eq!(spec("hf-token").arity, Arity::Optional);
        assert_eq!(spec("port").default, Value::from(8000));
        assert_eq!(spec("max-logprobs").default, Value::from(20));
        assert_eq!(
            spec("tensor-parallel-size").options,
            ["--tensor-parallel-size", "-tp"]
        );
        assert!(spec("middleware").append);
        assert!(cat.index["--disable-log-requests"].negative);
    }

    // -- parse_human_int

    #[test]
    fn human_ints_follow_vllm() {
        for (s, n) in [
            ("16k", 16_000),
            ("1k", 1000),
            ("1K", 1024),
            ("25.6k", 25_600),
            ("2M", 2 << 20),
            ("2m", 2_000_000),
            ("1g", 1_000_000_000),
            ("1G", 1 << 30),
            ("1T", 1 << 40),
            ("1t", 1_000_000_000_000),
            ("4.35k", 4350),
            ("2.01k", 2009), // int(2.01 * 1000) is 2009 in Python, too
            ("1.001k", 1000),
            ("0.5k", 500),
            ("4096", 4096),
            (" 32768 ", 32_768),
            ("+7", 7),
            ("1_000", 1000),
            ("007", 7),
        ] {
            assert_eq!(parse_human_int(s), Ok(n), "{s}");
        }
        for s in [
            "", "k", "1.5K", "1e3", "abc", "-5", "1__0", "_1", "16 k", "1.k", ".5k", "1kb",
        ] {
            assert!(parse_human_int(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_human_int("1.5K").unwrap_err(),
            "invalid integer \"1.5K\": decimals are not allowed with binary suffixes like K; did you mean 1.5k?"
        );
        assert!(parse_human_int("99999999999T").is_err());
        assert!(parse_human_int("9999999999999999999999999999t").is_err());
    }

    // -- spellings

    #[test]
    fn equals_and_space_forms_and_underscores() {
        ok(
            "m --max-model-len=4096 --port 9000",
            "m --max-model-len 4096 --port 9000",
            &[],
        );
        ok(
            "m --max_model_len 4096 --tool_call_parser=hermes",
            "m --max-model-len 4096 --tool-call-parser hermes",
            &[],
        );
        ok(
            "m --enable_prefix_caching",
            "m --enable-prefix-caching",
            &[],
        );
        // A value that starts with `-` keeps to its flag.
        ok("m --chat-template=-x", "m --chat-template=-x", &[]);
    }

    #[test]
    fn human_ints_are_rewritten_for_clap() {
        ok(
            "m --max-model-len 16k --max-num-batched-tokens 2K --kv-cache-memory-bytes 4G",
            "m --max-model-len 16000 --max-num-batched-tokens 2048 --kv-cache-memory-bytes 4294967296",
            &[],
        );
        ok(
            "m --max-model-len auto",
            "m",
            &["`--max-model-len auto` (fit to memory) taken as the model's own length"],
        );
        ok(
            "m --max-model-len -1",
            "m",
            &["`--max-model-len -1` (fit to memory) taken as the model's own length"],
        );
        err(
            "m --max-model-len 1.5K",
            "--max-model-len: invalid integer \"1.5K\": decimals are not allowed with binary suffixes like K; did you mean 1.5k?",
        );
    }

    #[test]
    fn negative_and_inverse_forms() {
        ok(
            "m --no-enable-prefix-caching",
            "m --no-enable-prefix-caching",
            &[],
        );
        ok(
            "m --disable-prefix-caching",
            "m --no-enable-prefix-caching",
            &[],
        );
        ok(
            "m --disable-chunked-prefill",
            "m --no-enable-chunked-prefill",
            &[],
        );
        // Off is the default: nothing to pass on.
        ok("m --disable-log-requests", "m", &[]);
        ok("m --no-enable-log-requests", "m", &[]);
        // A store_true flag has no --no- form in vLLM either: clap reports it.
        ok("m --no-disable-log-stats", "m --no-disable-log-stats", &[]);
        ok("m --no-enforce-eager --no-trust-remote-code", "m", &[]);
        // On by default in vLLM (or "auto"), and ferrum has no way to turn it off.
        err(
            "m --no-use-tqdm-on-load",
            "--no-use-tqdm-on-load is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m --no-async-scheduling",
            "--no-async-scheduling is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m --enable-prefix-caching=true",
            "--enable-prefix-caching takes no value (got --enable-prefix-caching=true)",
        );
    }

    #[test]
    fn last_use_wins_like_argparse() {
        ok(
            "m --max-model-len 1024 --max-model-len 2048",
            "m --max-model-len 2048",
            &["`--max-model-len` given more than once; the last one wins, as in vLLM"],
        );
        ok(
            "m --enable-prefix-caching --disable-prefix-caching",
            "m --no-enable-prefix-caching",
            &["`--enable-prefix-caching` given more than once; the last one wins, as in vLLM"],
        );
        // The refused use was overridden by an accepted one.
        ok(
            "m -tp 2 --tensor-parallel-size 1",
            "m",
            &["`--tensor-parallel-size` given more than once; the last one wins, as in vLLM"],
        );
    }

    #[test]
    fn short_options_and_optimization_level() {
        ok("m -tp 1 -pp 1 -dp=1", "m", &[]);
        err(
            "m -tp 2",
            "not supported yet: --tensor-parallel-size 2 (ferrum runs a model on one device)",
        );
        err(
            "m -pp 2",
            "not supported yet: --pipeline-parallel-size 2 (ferrum runs a model on one device)",
        );
        err(
            "m -dp 4",
            "not supported yet: --data-parallel-size 4 (ferrum runs one engine)",
        );
        err(
            "m -q awq",
            "not supported yet: --quantization awq (ferrum runs the weights as the checkpoint stores them, GGUF quantizations included)",
        );
        err(
            "m -sc {}",
            "-sc (--speculative-config) is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m -O3",
            "-O (--optimization-level) is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m -O 2",
            "-O (--optimization-level) is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m -O=decode",
            "-O (--optimization-level) is a vLLM flag that ferrum does not support yet",
        );
        ok("m -h", "m -h", &[]);
        ok("m --help=ModelConfig", "m --help", &[]);
    }

    #[test]
    fn abbreviations_like_argparse() {
        ok(
            "m --max-model 4096",
            "m --max-model-len 4096",
            &["`--max-model` taken as --max-model-len (vLLM accepts an unambiguous abbreviation)"],
        );
        let e = norm("m --max-num 8").unwrap_err();
        assert!(
            e.starts_with("ambiguous option: --max-num could match "),
            "{e}"
        );
        assert!(
            e.contains("--max-num-seqs") && e.contains("--max-num-batched-tokens"),
            "{e}"
        );
    }

    #[test]
    fn dotted_json_keys_become_one_json_value() {
        ok(
            "m --default-chat-template-kwargs.enable_thinking false --port 8001",
            r#"m --port 8001 --default-chat-template-kwargs {"enable_thinking":false}"#,
            &[],
        );
        ok(
            "m --default_chat_template_kwargs.a.b 1 --default-chat-template-kwargs.a.c=x --default-chat-template-kwargs.l+ p,q",
            r#"m --default-chat-template-kwargs {"a":{"b":1,"c":"x"},"l":["p","q"]}"#,
            &[],
        );
        // vLLM's dotted uses come last, so they win over a whole JSON value.
        ok(
            r#"m --default-chat-template-kwargs.x 1 --default-chat-template-kwargs {"y":2}"#,
            r#"m --default-chat-template-kwargs {"x":1}"#,
            &[
                "`--default-chat-template-kwargs` given more than once; the last one wins, as in vLLM",
            ],
        );
        err(
            "m --speculative-config.method ngram --speculative-config.num_speculative_tokens 3",
            "--speculative-config is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m --compilation-config.level",
            "--compilation-config.level needs a value",
        );
    }

    #[test]
    fn values_that_look_like_numbers_or_text() {
        ok("m --seed -5", "m --seed=-5", &[]);
        ok(
            "m --served-model-name a b --port 1",
            "m --served-model-name a b --port 1",
            &[],
        );
        ok("m --api-key=k1", "m --api-key k1", &[]);
        err("m --port", "--port needs a value");
        err(
            "m --served-model-name --port 1",
            "--served-model-name needs at least one value",
        );
    }

    // -- removed flags

    #[test]
    fn removed_flags_warn_and_consume_their_values() {
        ok(
            "m --use-v2-block-manager --port 1",
            "m --port 1",
            &["`--use-v2-block-manager` was removed from vLLM; ignored"],
        );
        ok(
            "m --num-scheduler-steps 8 --port 1",
            "m --port 1",
            &["`--num-scheduler-steps` was removed from vLLM; ignored"],
        );
        ok(
            "m --swap-space=16",
            "m",
            &["`--swap-space` was removed from vLLM; ignored"],
        );
        ok(
            "m --swap_space 16",
            "m",
            &["`--swap-space` was removed from vLLM; ignored"],
        );
        ok(
            "m --guided-decoding-backend xgrammar",
            "m",
            &[
                "`--guided-decoding-backend` was removed from vLLM; ignored (vLLM now reads it from --structured-outputs-config)",
            ],
        );
        ok(
            "m --enable-reasoning",
            "m",
            &[
                "`--enable-reasoning` was removed from vLLM; ignored (vLLM parses reasoning whenever --reasoning-parser is given)",
            ],
        );
        ok(
            "m --device cpu",
            "m",
            &["`--device` was removed from vLLM; ignored"],
        );
        err(
            "m --device cuda",
            "not supported yet: --device cuda (ferrum runs on the CPU)",
        );
        ok(
            "m --task generate",
            "m",
            &["`--task` was removed from vLLM; ignored"],
        );
        err(
            "m --task embed",
            "not supported yet: --task embed (ferrum serves text generation only)",
        );
        ok(
            "m --no-calculate-kv-scales",
            "m",
            &["`--no-calculate-kv-scales` was removed from vLLM; ignored"],
        );
        ok(
            "m -spec-draft-tp 1",
            "m",
            &[
                "`-spec-draft-tp (--speculative-draft-tensor-parallel-size)` was removed from vLLM; ignored",
            ],
        );
    }

    #[test]
    fn removed_flags_mapped_or_refused() {
        err(
            "m --worker-use-ray",
            "not supported yet: --worker-use-ray (vLLM's earlier spelling of \
             --distributed-executor-backend ray; ferrum runs a model in one process)",
        );
        err(
            "m --speculative-model [ngram] --num-speculative-tokens 5",
            SPECULATIVE,
        );
        err(
            "m --rope-scaling {\"type\":\"yarn\"}",
            "not supported yet: --rope-scaling (vLLM moved it to --hf-overrides, which ferrum does not support yet)",
        );
    }

    // -- partly supported values

    #[test]
    fn value_table() {
        ok(
            "m --dtype auto --dtype=float32",
            "m",
            &["`--dtype` given more than once; the last one wins, as in vLLM"],
        );
        err(
            "m --dtype bfloat16",
            "not supported yet: --dtype bfloat16 (ferrum computes in f32 on the CPU)",
        );
        ok("m --kv-cache-dtype auto", "m", &[]);
        err(
            "m --kv-cache-dtype fp8",
            "not supported yet: --kv-cache-dtype fp8 (ferrum keeps the KV cache in its compute dtype, f32)",
        );
        err(
            "m --quantization fp8",
            "not supported yet: --quantization fp8 (ferrum runs the weights as the checkpoint stores them, GGUF quantizations included)",
        );
        ok("m --quantization None", "m", &[]);
        ok(
            "m --trust-remote-code",
            "m",
            &[
                "`--trust-remote-code` accepted: ferrum runs no model code from the hub, so it has no effect",
            ],
        );
        ok(
            "m --enforce-eager",
            "m",
            &["`--enforce-eager` accepted: ferrum captures no CUDA graphs, so it has no effect"],
        );
        ok("m --distributed-executor-backend uni", "m", &[]);
        err(
            "m --distributed-executor-backend ray",
            "not supported yet: --distributed-executor-backend ray (ferrum runs a model in one process)",
        );
        ok("m --load-format gguf", "m --load-format gguf", &[]);
        ok("m --load-format=dummy", "m --load-format dummy", &[]);
        err(
            "m --load-format bitsandbytes",
            "not supported yet: --load-format bitsandbytes (ferrum loads auto, safetensors, gguf and dummy)",
        );
        ok(
            "m --device-memory-utilization 0.5",
            "m --gpu-memory-utilization 0.5",
            &[],
        );
    }

    #[test]
    fn unsupported_and_unknown_flags() {
        err(
            "m --enable-lora",
            "--enable-lora is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m --async-scheduling",
            "--async-scheduling is a vLLM flag that ferrum does not support yet",
        );
        err(
            "m --enable-prompt-tokens-details",
            "--enable-prompt-tokens-details is a vLLM flag that ferrum does not support yet",
        );
        // Every refusal is reported.
        err(
            "m --enable-lora --hf-overrides {} -tp 8",
            "--enable-lora is a vLLM flag that ferrum does not support yet\n\
             --hf-overrides is a vLLM flag that ferrum does not support yet\n\
             not supported yet: --tensor-parallel-size 8 (ferrum runs a model on one device)",
        );
        // Misspellings go to clap as they are.
        ok("m --max-mdel-len 4096", "m --max-mdel-len 4096", &[]);
        ok("m --max_mdel_len=4096", "m --max-mdel-len=4096", &[]);
        // ferrum's own flags too.
        let mut flags = ferrum();
        flags.push("ferrum-only".into());
        let n = normalize_serve_argv(words("m --ferrum-only x"), &flags).unwrap();
        assert_eq!(n.argv, words("m --ferrum-only x"));
        let n = normalize_serve_argv(words("m --ferrum-o=x"), &flags).unwrap();
        assert_eq!(n.argv, words("m --ferrum-only=x"));
        ok("m -- --enable-lora", "m -- --enable-lora", &[]);
    }

    #[test]
    fn clap_suggests_the_flag_for_a_misspelling() {
        let cmd = clap::Command::new("serve")
            .arg(clap::Arg::new("model"))
            .arg(clap::Arg::new("max-model-len").long("max-model-len"));
        let n = norm("m --max-mdel-len 4096").unwrap();
        let e = cmd
            .try_get_matches_from(std::iter::once("serve".to_string()).chain(n.argv))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unexpected argument '--max-mdel-len'"), "{e}");
        assert!(
            e.contains("a similar argument exists: '--max-model-len'"),
            "{e}"
        );
    }

    // -- --config

    fn write_config(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("ferrum-vllm-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn config_file_expands_like_vllm() {
        let path = write_config(
            "serve.yaml",
            "port: 12323\n\
             max_model_len: 16k\n\
             enable-prefix-caching: false\n\
             enable-auto-tool-choice: true\n\
             disable-log-stats: false\n\
             trust-remote-code: yes\n\
             tool-call-parser: hermes\n\
             served-model-name: [a, b]\n\
             api-key: []\n\
             root-path: ~\n\
             default-chat-template-kwargs:\n  enable_thinking: false\n\
             model: from-config\n\
             tensor-parallel-size: 4\n",
        );
        // The command line wins over the file (tp 1 over tp 4), the positional model over the
        // file's.
        let n = normalize_serve_argv(
            words(&format!("m --config {path} -tp 1 --port 8000")),
            &ferrum(),
        )
        .unwrap();
        assert_eq!(
            n.argv,
            words(
                r#"m --max-model-len 16000 --no-enable-prefix-caching --enable-auto-tool-choice
                   --tool-call-parser hermes --served-model-name a b
                   --default-chat-template-kwargs {"enable_thinking":false} --port 8000"#
            )
        );
        assert_eq!(
            n.warnings,
            [
                "`--trust-remote-code` accepted: ferrum runs no model code from the hub, so it has no effect"
            ]
        );
        // No positional model: the file's is used.
        let n = normalize_serve_argv(words(&format!("--config={path} -tp 1")), &ferrum()).unwrap();
        assert_eq!(n.argv[..2], words("--port 12323")[..]);
        assert!(
            n.argv.windows(2).any(|w| w == words("--model from-config")),
            "{:?}",
            n.argv
        );
        // Without the command line's -tp 1, the file's 4 is refused.
        assert_eq!(
            normalize_serve_argv(words(&format!("m --config {path}")), &ferrum()),
            Err(
                "not supported yet: --tensor-parallel-size 4 (ferrum runs a model on one device)"
                    .into()
            )
        );
    }

    #[test]
    fn config_file_errors_name_the_file() {
        let e = norm("m --config /nonexistent/serve.yaml").unwrap_err();
        assert!(
            e.starts_with("--config /nonexistent/serve.yaml: cannot read the config file: "),
            "{e}"
        );
        err(
            "m --config serve.json",
            "--config serve.json: the config file must be a .yaml or .yml file (as in vLLM)",
        );
        err("m --config", "--config needs a file name");
        err(
            "m --config a.yaml --config b.yaml",
            "--config given more than once; vLLM reads one config file",
        );
        let bad = write_config("bad.yaml", "port: [1\n");
        assert!(
            norm(&format!("m --config {bad}"))
                .unwrap_err()
                .starts_with(&format!("--config {bad}: not valid YAML"))
        );
        let list = write_config("list.yml", "- port\n");
        err(
            &format!("m --config {list}"),
            &format!("--config {list}: expected a mapping of flag names to values"),
        );
        let nested = write_config("nested.yaml", "config: other.yaml\n");
        err(
            &format!("m --config {nested}"),
            &format!("--config {nested}: a config file cannot name another one (`config`)"),
        );
        let empty = write_config("empty.yaml", "");
        ok(&format!("m --config {empty}"), "m", &[]);
        let removed = write_config(
            "removed.yaml",
            "swap-space: 4\nuse-v2-block-manager: true\n",
        );
        ok(
            &format!("m --config {removed}"),
            "m",
            &[
                "`--swap-space` was removed from vLLM; ignored",
                "`--use-v2-block-manager` was removed from vLLM; ignored",
            ],
        );
    }

    // -- every vLLM flag lands in a class

    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Clone, Copy)]
    enum Class {
        Ferrum,
        ValueChecked,
        RemovedIgnored,
        RemovedMapped,
        RemovedRefused,
        NotSupported,
    }

    fn class_of(which: Which, spec: &Spec, ferrum: &HashSet<String>) -> Class {
        match which {
            Which::Removed => match REMOVED_ACTIONS.iter().find(|(n, _)| *n == spec.name) {
                Some((_, RemovedAction::Refuse(_))) => Class::RemovedRefused,
                Some((_, RemovedAction::MapTo(..))) => Class::RemovedMapped,
                _ => Class::RemovedIgnored,
            },
            Which::Current if rule_for(&spec.name).is_some() => Class::ValueChecked,
            Which::Current if spec.long_names().any(|n| ferrum.contains(n)) => Class::Ferrum,
            Which::Current => Class::NotSupported,
        }
    }

    /// Sample values for a flag use of this arity.
    fn sample_values(arity: Arity) -> Vec<String> {
        match arity {
            Arity::Switch | Arity::Optional => vec![],
            Arity::One => vec!["1".into()],
            Arity::Many => vec!["1".into(), "2".into()],
            Arity::Exactly(n) => vec!["1".into(); n],
        }
    }

    /// Nothing vLLM accepts (or accepted) reaches clap unless ferrum defines it: each option
    /// string is passed on under a ferrum name, dropped with or without a warning, or refused
    /// with a message that names it.
    #[test]
    fn every_vllm_flag_is_classified() {
        let cat = catalog();
        let ferrum_list = ferrum();
        let ferrum: HashSet<String> = ferrum_list.iter().cloned().collect();
        let mut counts: HashMap<Class, Vec<String>> = HashMap::new();
        for (which, list) in [
            (Which::Current, &cat.current),
            (Which::Removed, &cat.removed),
        ] {
            for spec in list {
                if spec.name == "config" {
                    continue; // read before anything else
                }
                counts
                    .entry(class_of(which, spec, &ferrum))
                    .or_default()
                    .push(spec.name.clone());
                let forms = spec
                    .options
                    .iter()
                    .map(|o| (o, false))
                    .chain(spec.negatives.iter().map(|o| (o, true)));
                for (opt, negative) in forms {
                    let mut argv = vec!["m".to_string(), opt.clone()];
                    if !negative {
                        argv.extend(sample_values(spec.arity));
                    }
                    match normalize_serve_argv(argv.clone(), &ferrum_list) {
                        Ok(n) => {
                            assert_eq!(n.argv[0], "m", "{argv:?}");
                            for t in n.argv[1..].iter().filter(|t| t.starts_with('-')) {
                                let name = t.trim_start_matches('-').split('=').next().unwrap();
                                assert!(
                                    ferrum.contains(name),
                                    "{argv:?} -> {:?}: {t} is not ferrum's",
                                    n.argv
                                );
                            }
                            if which == Which::Removed {
                                assert!(
                                    n.warnings.iter().any(|w| w.contains(opt.as_str())),
                                    "{argv:?}: {:?}",
                                    n.warnings
                                );
                            }
                        }
                        Err(e) => {
                            let named = e.contains(opt.as_str())
                                || e.contains(&format!("--{}", spec.name))
                                || e.contains("--speculative-config");
                            assert!(named, "{argv:?}: {e}");
                        }
                    }
                }
            }
        }
        let mut classes: Vec<_> = counts.into_iter().collect();
        classes.sort();
        for (class, mut names) in classes {
            names.sort();
            println!("{class:?} ({}): {}", names.len(), names.join(" "));
        }
    }

    #[test]
    fn value_checked_flags_are_the_table() {
        let names: Vec<&str> = VALUE_RULES.iter().map(|r| r.flag).collect();
        assert_eq!(
            names,
            [
                "tensor-parallel-size",
                "pipeline-parallel-size",
                "data-parallel-size",
                "dtype",
                "kv-cache-dtype",
                "quantization",
                "trust-remote-code",
                "enforce-eager",
                "distributed-executor-backend",
                "load-format",
                "device",
                "task",
            ]
        );
    }

    // -- deployment guides

    #[test]
    fn guide_qwen3_reasoning() {
        let cmd =
            guide("vllm serve Qwen/Qwen3-8B --enable-reasoning --reasoning-parser deepseek_r1");
        ok(
            &cmd,
            "Qwen/Qwen3-8B --reasoning-parser deepseek_r1",
            &[
                "`--enable-reasoning` was removed from vLLM; ignored (vLLM parses reasoning whenever --reasoning-parser is given)",
            ],
        );
    }

    #[test]
    fn guide_qwen3_tools() {
        let cmd =
            guide("vllm serve Qwen/Qwen3-8B --enable-auto-tool-choice --tool-call-parser hermes");
        ok(
            &cmd,
            "Qwen/Qwen3-8B --enable-auto-tool-choice --tool-call-parser hermes",
            &[],
        );
    }

    #[test]
    fn guide_glm45_air_tensor_parallel() {
        let cmd = guide(
            "vllm serve zai-org/GLM-4.5-Air --tensor-parallel-size 4 --tool-call-parser glm45 \
             --reasoning-parser glm45 --enable-auto-tool-choice",
        );
        err(
            &cmd,
            "not supported yet: --tensor-parallel-size 4 (ferrum runs a model on one device)",
        );
        // The same on one device runs.
        ok(
            &cmd.replace("--tensor-parallel-size 4", "--tensor-parallel-size 1"),
            "zai-org/GLM-4.5-Air --tool-call-parser glm45 --reasoning-parser glm45 --enable-auto-tool-choice",
            &[],
        );
    }

    #[test]
    fn guide_long_context_fp8_kv_cache() {
        let cmd = guide(
            "vllm serve Qwen/Qwen3-8B --max-model-len 16k --kv-cache-dtype fp8 --gpu-memory-utilization 0.9",
        );
        err(
            &cmd,
            "not supported yet: --kv-cache-dtype fp8 (ferrum keeps the KV cache in its compute dtype, f32)",
        );
        ok(
            &cmd.replace("--kv-cache-dtype fp8", "--kv-cache-dtype auto"),
            "Qwen/Qwen3-8B --max-model-len 16000 --gpu-memory-utilization 0.9",
            &[],
        );
    }

    #[test]
    fn guide_older_vllm_lines() {
        // A 2024 tool-calling guide (vLLM 0.5/0.6 era).
        ok(
            &guide(
                "vllm serve Qwen/Qwen2.5-7B-Instruct --enable-auto-tool-choice --tool-call-parser hermes \
                 --disable-log-requests --swap-space 16 --max-num-seqs 64 --use-v2-block-manager",
            ),
            "Qwen/Qwen2.5-7B-Instruct --enable-auto-tool-choice --tool-call-parser hermes --max-num-seqs 64",
            &[
                "`--swap-space` was removed from vLLM; ignored",
                "`--use-v2-block-manager` was removed from vLLM; ignored",
            ],
        );
        // n-gram speculation, 0.6 spelling.
        err(
            &guide(
                "vllm serve facebook/opt-6.7b --speculative-model [ngram] --num-speculative-tokens 5 \
                 --ngram-prompt-lookup-max 4",
            ),
            SPECULATIVE,
        );
        // Llama with an API key and explicit dtype.
        ok(
            &guide(
                "vllm serve meta-llama/Llama-3.1-8B-Instruct --dtype auto --api-key token-abc123",
            ),
            "meta-llama/Llama-3.1-8B-Instruct --api-key token-abc123",
            &[],
        );
        // DeepSeek-R1 distill on two GPUs.
        err(
            &guide(
                "vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-32B --tensor-parallel-size 2 \
                 --max-model-len 32768 --enforce-eager",
            ),
            "not supported yet: --tensor-parallel-size 2 (ferrum runs a model on one device)",
        );
        // gpt-oss.
        err(
            &guide("vllm serve openai/gpt-oss-20b --async-scheduling"),
            "--async-scheduling is a vLLM flag that ferrum does not support yet",
        );
        // Served name, host and port, chat template, --model spelled out.
        ok(
            &guide(
                "vllm serve --model Qwen/Qwen3-8B --served-model-name qwen3 --host 0.0.0.0 --port 8000 \
                 --chat-template ./template.jinja --trust-remote-code",
            ),
            "--model Qwen/Qwen3-8B --served-model-name qwen3 --host 0.0.0.0 --port 8000 --chat-template ./template.jinja",
            &[
                "`--trust-remote-code` accepted: ferrum runs no model code from the hub, so it has no effect",
            ],
        );
    }

    // -- robustness

    #[test]
    fn never_panics() {
        use rand::{Rng, SeedableRng};
        let pool: Vec<String> = [
            "--",
            "-",
            "-O",
            "-O3",
            "-O=",
            "-Oé",
            "-tp",
            "-tp=",
            "=",
            "--=",
            "--=x",
            "---",
            "--.",
            "--a.",
            "--.b",
            "--max-model-len",
            "--max-model-len=",
            "16k",
            "1.5K",
            "auto",
            "-1",
            "-0.5",
            "--config",
            "--config=",
            "x.yaml",
            "--api-key",
            "--served-model-name",
            "--hf-token",
            "--no-enable-prefix-caching",
            "--disable-prefix-caching",
            "--enable-prefix-caching=1",
            "--default-chat-template-kwargs.a",
            "--default-chat-template-kwargs.a+",
            "--speculative-config.x",
            "--swap-space",
            "--device",
            "--task",
            "--worker-use-ray",
            "--speculative-model",
            "é",
            "--é",
            "-é",
            "--max",
            "--m",
            "--help=",
            "-h",
            "a b",
            "--dtype",
            "bfloat16",
            "--load-format",
            "pt",
            "--middleware",
            "x",
            "{",
            "{\"a\":1}",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let n = rng.random_range(0..8);
            let argv: Vec<String> = (0..n)
                .map(|_| pool[rng.random_range(0..pool.len())].clone())
                .collect();
            let _ = normalize_serve_argv(argv, &ferrum());
        }
        for s in [
            "",
            "é",
            "1é",
            "ék",
            "1.é",
            "99999999999999999999999",
            "-",
            "+",
            "1e",
            "k1",
        ] {
            let _ = parse_human_int(s);
        }
    }
}
