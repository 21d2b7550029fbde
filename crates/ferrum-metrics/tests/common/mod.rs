//! A tiny Prometheus text-format parser, enough to read back what `Metrics::render` writes
//! (and what vLLM writes): `# HELP`, `# TYPE` and sample lines with escaped label values.

#![allow(dead_code)] // each test crate uses a different part

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The value exactly as written, e.g. `3.0` or `1.7e+09`.
    pub value_text: String,
}

impl Sample {
    pub fn value(&self) -> f64 {
        match self.value_text.as_str() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            t => t.parse().unwrap_or_else(|_| panic!("bad value {t:?}")),
        }
    }

    pub fn label_names(&self) -> Vec<String> {
        self.labels.keys().cloned().collect()
    }
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name (as on `# TYPE`) -> type.
    pub types: BTreeMap<String, String>,
    pub helps: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn samples_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Sample> + use<'a> {
        let name = name.to_string();
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The one sample named `name` whose labels include all of `with`.
    pub fn get(&self, name: &str, with: &[(&str, &str)]) -> &Sample {
        let found: Vec<_> = self
            .samples_named(name)
            .filter(|s| {
                with.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert_eq!(found.len(), 1, "{name} {with:?}: {found:?}");
        found[0]
    }

    pub fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.get(name, with).value()
    }
}

pub fn parse(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let help = help.replace("\\n", "\n").replace("\\\\", "\\");
            assert!(
                out.helps.insert(name.into(), help).is_none(),
                "second HELP for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a type");
            assert!(
                out.types.insert(name.into(), kind.into()).is_none(),
                "second TYPE for {name}"
            );
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            out.samples.push(parse_sample(line));
        }
    }
    out
}

fn parse_sample(line: &str) -> Sample {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => panic!("no value on {line:?}"),
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
            assert_eq!(chars.next(), Some('"'), "label value is quoted on {line:?}");
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value") {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => panic!("dangling escape on {line:?}"),
                    },
                    c => value.push(c),
                }
            }
            assert!(
                labels.insert(key.clone(), value).is_none(),
                "label {key} twice on {line:?}"
            );
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("unexpected {other:?} in labels of {line:?}"),
            }
        }
    }
    let value_text: String = chars.collect::<String>().trim().to_string();
    assert!(
        !value_text.contains(' '),
        "timestamps are not expected: {line:?}"
    );
    Sample {
        name: name.to_string(),
        labels,
        value_text,
    }
}

pub fn fixture() -> serde_json::Value {
    let text = include_str!("../fixtures/vllm_metrics.json");
    serde_json::from_str(text).expect("fixture is valid JSON")
}

pub fn str_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON list")
        .iter()
        .map(|x| x.as_str().expect("a string").to_string())
        .collect()
}
