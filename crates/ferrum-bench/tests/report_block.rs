//! The printed result block for a fixed set of request outcomes, against the block
//! derived by hand from vLLM's format code (`"{:<40} {:<10}"` / `"{:<40} {:<10.2f}"`
//! lines, `"{s:{c}^{n}}"` headers) — trailing spaces included.

use ferrum_bench::metrics::failure_summary;
use ferrum_bench::py::PyJson;
use ferrum_bench::report::benchmark_json;
use ferrum_bench::{ReportConfig, RequestOutcome, compute_result};

fn ok(
    start: f64,
    ttft: f64,
    itl: &[f64],
    latency: f64,
    tokens: Option<usize>,
    prompt_len: usize,
    queue: f64,
) -> RequestOutcome {
    RequestOutcome {
        success: true,
        prompt_len,
        output_tokens: tokens,
        ttft,
        itl: itl.to_vec(),
        latency,
        start_time: start,
        client_queue_time: queue,
        generated_text: "a b c".into(),
        error: String::new(),
    }
}

/// Four successes and one failure, over a 2 s run:
/// - A: sent at 0.0, 4 chunks (ttft 50 ms, gaps 20 ms), 4 tokens, e2e 110 ms
/// - B: sent at 0.5, 2 chunks (100 ms, 50 ms), 2 tokens, e2e 150 ms, queued 100 ms
/// - C: sent at 1.0, 1 chunk (200 ms), 1 token (so no TPOT), e2e 200 ms
/// - D: sent at 1.2 (as C ends), 3 chunks (80 ms, 40, 40), no usage: counted from the
///   text as 3 tokens, e2e 160 ms, queued 200 ms
/// - E: failed
fn outcomes() -> Vec<RequestOutcome> {
    vec![
        ok(0.0, 0.05, &[0.02, 0.02, 0.02], 0.11, Some(4), 10, 0.0),
        ok(0.5, 0.1, &[0.05], 0.15, Some(2), 20, 0.1),
        ok(1.0, 0.2, &[], 0.2, Some(1), 30, 0.0),
        ok(1.2, 0.08, &[0.04, 0.04], 0.16, None, 40, 0.2),
        RequestOutcome {
            prompt_len: 50,
            error: "Internal Server Error".into(),
            ..RequestOutcome::default()
        },
    ]
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[test]
fn full_block_matches_vllm_line_for_line() {
    let cfg = ReportConfig {
        max_concurrency: Some(4),
        request_rate: 8.0,
        percentile_metrics: ["ttft", "tpot", "itl", "e2el", "client_queue_time"]
            .map(String::from)
            .to_vec(),
        metric_percentiles: vec![50.0, 99.0],
        goodput: vec![("ttft".into(), 100.0), ("tpot".into(), 30.0)],
    };
    let r = compute_result(&outcomes(), 2.0, &cfg, &words);

    // By hand: input 10+20+30+40 (successes only); output 4+2+1+3; goodput: only A meets
    // ttft <= 100 ms and tpot <= 30 ms (B's tpot is 50, C's ttft 200, D's tpot 40), so 1 / 2 s.
    // Peak tokens: 6 chunks in second 0 (A's 4, B's 2), 4 in second 1. Peak concurrency 1:
    // C's end and D's start coincide and a departure sorts first.
    // TTFT ms [50, 100, 200, 80]: mean 107.5, median 90, p99 = 100 + 0.97 * 100 = 197.
    // TPOT ms [20, 50, 40]: mean 36.67, median 40, p99 = 40 + 0.98 * 10 = 49.8.
    // ITL ms [20, 20, 20, 50, 40, 40]: mean 31.67, median 30, p99 = 40 + 0.95 * 10 = 49.5.
    // E2EL ms [110, 150, 200, 160]: mean 155, median 155, p99 = 160 + 0.97 * 40 = 198.8.
    // Queue ms [0, 100, 0, 200]: mean 75, median 50, p99 = 100 + 0.97 * 100 = 197.
    let want = [
        "============ Serving Benchmark Result ============",
        "Successful requests:                     4         ",
        "Failed requests:                         1         ",
        "Maximum request concurrency:             4         ",
        "Request rate configured (RPS):           8.00      ",
        "Benchmark duration (s):                  2.00      ",
        "Total input tokens:                      100       ",
        "Total generated tokens:                  10        ",
        "Request throughput (req/s):              2.00      ",
        "Request goodput (req/s):                 0.50      ",
        "Output token throughput (tok/s):         5.00      ",
        "Peak output token throughput (tok/s):    6.00      ",
        "Peak concurrent requests:                1.00      ",
        "Total token throughput (tok/s):          55.00     ",
        "---------------Time to First Token----------------",
        "Mean TTFT (ms):                          107.50    ",
        "Median TTFT (ms):                        90.00     ",
        "P50 TTFT (ms):                           90.00     ",
        "P99 TTFT (ms):                           197.00    ",
        "-----Time per Output Token (excl. 1st token)------",
        "Mean TPOT (ms):                          36.67     ",
        "Median TPOT (ms):                        40.00     ",
        "P50 TPOT (ms):                           40.00     ",
        "P99 TPOT (ms):                           49.80     ",
        "---------------Inter-token Latency----------------",
        "Mean ITL (ms):                           31.67     ",
        "Median ITL (ms):                         30.00     ",
        "P50 ITL (ms):                            30.00     ",
        "P99 ITL (ms):                            49.50     ",
        "----------------End-to-end Latency----------------",
        "Mean E2EL (ms):                          155.00    ",
        "Median E2EL (ms):                        155.00    ",
        "P50 E2EL (ms):                           155.00    ",
        "P99 E2EL (ms):                           198.80    ",
        "---------------Client-side Queueing---------------",
        "Mean Client Queue Time (ms):             75.00     ",
        "Median Client Queue Time (ms):           50.00     ",
        "P50 Client Queue Time (ms):              50.00     ",
        "P99 Client Queue Time (ms):              197.00    ",
        "==================================================",
    ];
    let got: Vec<&str> = r.report.lines().collect();
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "line {i}");
    }
    assert_eq!(got.len(), want.len());
    assert!(r.report.ends_with("=\n"));

    assert_eq!((r.completed, r.failed), (4, 1));
    assert_eq!((r.total_input_tokens, r.total_output_tokens), (100, 10));
    assert_eq!(r.output_lens, vec![4, 2, 1, 3, 0]);
    assert_eq!(r.input_lens, vec![10, 20, 30, 40, 50]);
    assert_eq!(r.errors[4], "Internal Server Error");
    assert_eq!(
        failure_summary(&outcomes()).unwrap(),
        "Failed requests during benchmark run detected (capping to 10):\n\
         Error 0: Internal Server Error\n"
    );
}

#[test]
fn default_block_omits_optional_lines() {
    let r = compute_result(&outcomes(), 2.0, &ReportConfig::default(), &words);
    let labels: Vec<&str> = r
        .report
        .lines()
        .map(|l| l.split("  ").next().unwrap_or(l))
        .collect();
    for absent in [
        "Maximum request concurrency:",
        "Request rate configured (RPS):",
        "Request goodput (req/s):",
        "Mean E2EL (ms):",
    ] {
        assert!(!labels.contains(&absent), "{absent}");
    }
    assert_eq!(r.report.lines().count(), 1 + 10 + 3 * 4 + 1);
    assert!(
        r.report
            .contains("P99 TTFT (ms):                           197.00    \n")
    );

    // The saved JSON: vLLM's keys in vLLM's order; the bulky per-request lists only with
    // --save-detailed; goodput is null without --goodput.
    let keys = |detailed| -> Vec<String> {
        benchmark_json(&r, detailed)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    let want = "duration completed failed total_input_tokens total_output_tokens \
        request_throughput request_goodput output_throughput total_token_throughput \
        latencies queue_times max_output_tokens_per_s max_concurrent_requests rtfx \
        mean_ttft_ms median_ttft_ms std_ttft_ms p99_ttft_ms mean_tpot_ms median_tpot_ms \
        std_tpot_ms p99_tpot_ms mean_itl_ms median_itl_ms std_itl_ms p99_itl_ms";
    assert_eq!(
        keys(false).join(" "),
        want.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let detailed = keys(true);
    let at = |k: &str| detailed.iter().position(|x| x == k).unwrap();
    assert!(at("input_lens") < at("output_lens") && at("errors") < at("max_output_tokens_per_s"));
    let json = PyJson::Dict(benchmark_json(&r, false));
    assert_eq!(json.get("request_goodput"), Some(&PyJson::Null));
    assert_eq!(json.get("completed"), Some(&PyJson::Int(4)));
    assert!(
        json.dumps()
            .starts_with("{\"duration\": 2.0, \"completed\": 4, \"failed\": 1, ")
    );
}
