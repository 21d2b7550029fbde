//! vLLM's speculative-decoding counters (`SpecDecodingProm`): exposed only when speculative
//! decoding is configured, with vLLM's names, help texts and the `position` label.

mod common;

use common::parse;
use ferrum_metrics::{CacheConfigInfo, EngineSnapshot, Metrics, SpecDecodeSnapshot};

#[test]
fn spec_decode_counters_only_when_configured() {
    let m = Metrics::new(
        "m",
        8192,
        &CacheConfigInfo::new(16, 1000, true, "auto", 0.9),
    );
    let snap = EngineSnapshot::default();
    let plain = m.render(&snap);
    assert!(!plain.contains("spec_decode"));
    let spec = SpecDecodeSnapshot {
        num_drafts: 7,
        num_draft_tokens: 21,
        num_accepted_tokens: 9,
        num_accepted_tokens_per_pos: vec![5, 3, 1],
    };
    let text = m.render_with_spec(&snap, Some(&spec));
    for (name, help) in [
        (
            "vllm:spec_decode_num_drafts",
            "Number of spec decoding drafts.",
        ),
        (
            "vllm:spec_decode_num_draft_tokens",
            "Number of draft tokens.",
        ),
        (
            "vllm:spec_decode_num_accepted_tokens",
            "Number of accepted tokens.",
        ),
        (
            "vllm:spec_decode_num_accepted_tokens_per_pos",
            "Accepted tokens per draft position.",
        ),
    ] {
        assert!(
            text.contains(&format!(
                "# HELP {name}_total {help}\n# TYPE {name}_total counter\n"
            )),
            "{name}"
        );
    }
    let e = parse(&text);
    let base = [("model_name", "m"), ("engine", "0")];
    assert_eq!(e.value("vllm:spec_decode_num_drafts_total", &base), 7.0);
    assert_eq!(
        e.value("vllm:spec_decode_num_draft_tokens_total", &base),
        21.0
    );
    assert_eq!(
        e.value("vllm:spec_decode_num_accepted_tokens_total", &base),
        9.0
    );
    for (pos, v) in [("0", 5.0), ("1", 3.0), ("2", 1.0)] {
        assert_eq!(
            e.value(
                "vllm:spec_decode_num_accepted_tokens_per_pos_total",
                &[("model_name", "m"), ("engine", "0"), ("position", pos)]
            ),
            v
        );
    }
}
