//! ferrum's /metrics against the committed vLLM reference list (tests/fixtures/
//! vllm_metrics.json): every metric present with vLLM's type, help, label names and bucket
//! bounds, and nothing else. Changing a bucket, label or name makes this fail.

mod common;

use std::collections::BTreeSet;

use common::{Exposition, fixture, parse, str_list};
use ferrum_metrics::{CacheConfigInfo, EngineSnapshot, Metrics};

const MODEL: &str = "Qwen/Qwen3-0.6B";

fn rendered() -> Exposition {
    let max_model_len = fixture()["max_model_len"].as_u64().unwrap() as usize;
    assert_eq!(max_model_len, 8192);
    let cache = CacheConfigInfo::new(16, 4096, true, "auto", 0.9);
    let m = Metrics::new(MODEL, max_model_len, &cache);
    parse(&m.render(&EngineSnapshot::default()))
}

fn sorted(v: Vec<String>) -> Vec<String> {
    v.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Label names of every sample named `name`, which must all agree and be non-empty.
fn label_names(exp: &Exposition, name: &str, strip: &[&str]) -> Vec<String> {
    let sets: BTreeSet<Vec<String>> = exp
        .samples_named(name)
        .map(|s| {
            s.label_names()
                .into_iter()
                .filter(|l| !strip.contains(&l.as_str()))
                .collect()
        })
        .collect();
    assert_eq!(
        sets.len(),
        1,
        "{name}: samples missing or with differing label sets: {sets:?}"
    );
    sets.into_iter().next().unwrap()
}

fn check_common_labels(exp: &Exposition, name: &str) {
    for s in exp.samples_named(name) {
        assert_eq!(s.labels["engine"], "0", "{name}");
        assert_eq!(s.labels["model_name"], MODEL, "{name}");
    }
}

#[test]
fn every_metric_matches_vllm() {
    let fix = fixture();
    let exp = rendered();
    let mut expected_families = BTreeSet::new();
    for m in fix["metrics"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let kind = m["type"].as_str().unwrap();
        let help = m["help"].as_str().unwrap();
        let labels = sorted(str_list(&m["labels"]));
        // The family as the text format names it: counters carry _total on # TYPE too.
        let family = match kind {
            "counter" => m["exposed_as"].as_str().unwrap().to_string(),
            _ => name.to_string(),
        };
        assert_eq!(
            exp.types.get(&family).map(String::as_str),
            Some(kind),
            "# TYPE of {family}"
        );
        assert_eq!(
            exp.helps.get(&family).map(String::as_str),
            Some(help),
            "# HELP of {family}"
        );
        expected_families.insert(family.clone());
        if let Some(created) = m.get("created_series").and_then(|v| v.as_str()) {
            assert_eq!(
                exp.types.get(created).map(String::as_str),
                Some("gauge"),
                "{created}"
            );
            assert_eq!(label_names(&exp, created, &[]), labels, "{created} labels");
            expected_families.insert(created.to_string());
        }
        match kind {
            "histogram" => check_histogram(&exp, m, name, &labels),
            _ => {
                assert_eq!(label_names(&exp, &family, &[]), labels, "{family} labels");
                if name != "vllm:cache_config_info" {
                    check_common_labels(&exp, &family);
                }
            }
        }
        if let Some(values) = m.get("label_values").and_then(|v| v.as_object()) {
            for (label, want) in values {
                let got: Vec<String> = exp
                    .samples_named(&family)
                    .map(|s| s.labels[label].clone())
                    .collect();
                assert_eq!(got, str_list(want), "{family} pre-created {label} children");
            }
        }
        if let Some(v) = m.get("value") {
            assert_eq!(
                exp.value(&family, &[]),
                v.as_f64().unwrap(),
                "{family} value"
            );
        }
    }
    let got: BTreeSet<String> = exp.types.keys().cloned().collect();
    assert_eq!(
        got, expected_families,
        "families beyond (or short of) the reference list"
    );
}

fn check_histogram(exp: &Exposition, m: &serde_json::Value, name: &str, labels: &[String]) {
    let bucket = format!("{name}_bucket");
    assert_eq!(
        label_names(exp, &bucket, &["le"]),
        labels,
        "{bucket} labels"
    );
    for suffix in ["_count", "_sum"] {
        let series = format!("{name}{suffix}");
        assert_eq!(label_names(exp, &series, &[]), labels, "{series} labels");
        check_common_labels(exp, &series);
    }
    check_common_labels(exp, &bucket);
    // The `le` texts, in order, exactly as vLLM prints them ...
    let le: Vec<String> = exp
        .samples_named(&bucket)
        .map(|s| s.labels["le"].clone())
        .collect();
    assert_eq!(le, str_list(&m["le"]), "{name} le texts");
    // ... and as numbers, against the bucket list the fixture records from vLLM.
    let mut bounds: Vec<f64> = m["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    bounds.push(f64::INFINITY);
    let got: Vec<f64> = le
        .iter()
        .map(|t| {
            if t == "+Inf" {
                f64::INFINITY
            } else {
                t.parse().unwrap()
            }
        })
        .collect();
    assert_eq!(got, bounds, "{name} bucket bounds");
}

#[test]
fn cache_config_info_labels_are_vllms_and_known_values_filled() {
    let exp = rendered();
    let s = exp.get("vllm:cache_config_info", &[]);
    let l = &s.labels;
    assert_eq!(l["engine"], "0");
    assert!(
        !l.contains_key("model_name"),
        "vLLM's cache_config_info has no model_name"
    );
    assert_eq!(l["block_size"], "16");
    assert_eq!(l["num_gpu_blocks"], "4096");
    assert_eq!(l["enable_prefix_caching"], "True");
    assert_eq!(l["cache_dtype"], "auto");
    assert_eq!(l["gpu_memory_utilization"], "0.9");
    assert_eq!(l["sliding_window"], "None");
    assert_eq!(l["num_cpu_blocks"], "None");
    assert_eq!(s.value_text, "1.0");
}
