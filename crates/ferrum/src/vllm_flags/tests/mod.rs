//! Tests of the vLLM flag rules, each with the exact argv, warnings and errors expected.

use super::*;

mod config_file;
mod guides;
mod removed;

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
    "hf-overrides",
    "load-format",
    "device",
    "kv-cache-dtype",
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
    "speculative-config",
    "enforce-eager",
    "max-cudagraph-capture-size",
    "dtype",
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
    ok("m -sc {}", "m --speculative-config {}", &[]);
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
        &["`--default-chat-template-kwargs` given more than once; the last one wins, as in vLLM"],
    );
    ok(
        "m --speculative-config.method ngram --speculative-config.num_speculative_tokens 3",
        r#"m --speculative-config {"method":"ngram","num_speculative_tokens":3}"#,
        &[],
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
fn value_table() {
    ok(
        "m --dtype auto --dtype=float32",
        "m --dtype float32",
        &["`--dtype` given more than once; the last one wins, as in vLLM"],
    );
    ok("m --dtype bfloat16", "m --dtype bfloat16", &[]);
    err(
        "m --dtype float8",
        "not supported yet: --dtype float8 (ferrum computes in f32 on the CPU and in bf16 or f16 on a GPU)",
    );
    ok("m --kv-cache-dtype auto", "m --kv-cache-dtype auto", &[]);
    ok("m --kv-cache-dtype fp8", "m --kv-cache-dtype fp8", &[]);
    err(
        "m --kv-cache-dtype fp8_e5m2",
        "not supported yet: --kv-cache-dtype fp8_e5m2 (ferrum keeps the KV cache in its compute dtype or in fp8 e4m3)",
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
    ok("m --enforce-eager", "m --enforce-eager", &[]);
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
        "m --enable-lora --async-scheduling -tp 8",
        "--enable-lora is a vLLM flag that ferrum does not support yet\n\
         --async-scheduling is a vLLM flag that ferrum does not support yet\n\
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
            "distributed-executor-backend",
            "load-format",
            "device",
            "task",
        ]
    );
}

// -- deployment guides

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
