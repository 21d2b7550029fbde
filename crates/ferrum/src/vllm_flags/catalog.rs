//! The catalog of vLLM's flags, read from the generated JSON.

use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The flags of `vllm serve`, generated from vLLM's source (see the module docs).
const FLAGS_JSON: &str = include_str!("../../tests/fixtures/vllm_serve_flags.json");

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
pub(super) enum Arity {
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

pub(super) struct Spec {
    pub(super) name: String,
    pub(super) options: Vec<String>,
    pub(super) negatives: Vec<String>,
    pub(super) arity: Arity,
    pub(super) append: bool,
    pub(super) ty: String,
    pub(super) default: Value,
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
    pub(super) fn long_names(&self) -> impl Iterator<Item = &str> {
        self.options.iter().filter_map(|o| o.strip_prefix("--"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Which {
    Current,
    Removed,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) which: Which,
    pub(super) idx: usize,
    pub(super) negative: bool,
}

pub(super) struct Catalog {
    pub(super) version: String,
    pub(super) commit: String,
    pub(super) current: Vec<Spec>,
    pub(super) removed: Vec<Spec>,
    /// Every option string (`--x`, `--no-x`, `-tp`, ...) of a current or removed flag.
    pub(super) index: HashMap<String, Entry>,
}

impl Catalog {
    pub(super) fn spec(&self, which: Which, idx: usize) -> &Spec {
        match which {
            Which::Current => &self.current[idx],
            Which::Removed => &self.removed[idx],
        }
    }

    pub(super) fn current_by_name(&self, name: &str) -> Option<usize> {
        match self.index.get(&format!("--{name}")) {
            Some(e) if e.which == Which::Current && !e.negative => Some(e.idx),
            _ => None,
        }
    }
}

pub(super) fn catalog() -> &'static Catalog {
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
pub(super) fn vllm_version() -> String {
    let c = catalog();
    format!("{} ({})", c.version, c.commit)
}
