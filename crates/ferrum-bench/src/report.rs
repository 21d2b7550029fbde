//! vLLM's printed result block and saved result JSON, reproduced line for line and key for
//! key (labels, `{:<40} {:<10}` columns, two decimals, section order).

use std::path::PathBuf;

use crate::metrics::{BenchResult, MetricStats, ReportConfig, RequestOutcome};
use crate::py::{PyJson, float_repr};

/// `"{:<40} {:<10}".format(label, value)`; Python pads the value too, so lines keep
/// their trailing spaces.
fn kv(label: &str, value: impl std::fmt::Display) -> String {
    format!("{:<40} {:<10}", label, value.to_string())
}

/// `"{:<40} {:<10.2f}".format(label, value)`.
fn kvf(label: &str, value: f64) -> String {
    kv(label, format!("{value:.2}"))
}

/// How vLLM names a percentile: `99` for 99.0, `99.9` otherwise.
pub fn percentile_word(p: f64) -> String {
    if p.fract() == 0.0 && p.is_finite() {
        format!("{}", p as i64)
    } else {
        float_repr(p)
    }
}

/// The block from the `=== Serving Benchmark Result ===` line to the closing `=` line, and
/// the per-metric values vLLM adds to its result dict while printing it.
pub(crate) fn render_block(
    r: &BenchResult,
    outcomes: &[RequestOutcome],
    cfg: &ReportConfig,
) -> (String, Vec<(String, f64)>) {
    let mut lines = vec![format!("{:=^50}", " Serving Benchmark Result ")];
    lines.push(kv("Successful requests:", r.completed));
    lines.push(kv("Failed requests:", r.failed));
    if let Some(mc) = cfg.max_concurrency {
        lines.push(kv("Maximum request concurrency:", mc));
    }
    if cfg.request_rate != f64::INFINITY {
        lines.push(kvf("Request rate configured (RPS):", cfg.request_rate));
    }
    lines.push(kvf("Benchmark duration (s):", r.duration_s));
    lines.push(kv("Total input tokens:", r.total_input_tokens));
    lines.push(kv("Total generated tokens:", r.total_output_tokens));
    lines.push(kvf("Request throughput (req/s):", r.request_throughput));
    if let Some(g) = r.request_goodput {
        lines.push(kvf("Request goodput (req/s):", g));
    }
    lines.push(kvf("Output token throughput (tok/s):", r.output_throughput));
    lines.push(kvf(
        "Peak output token throughput (tok/s):",
        r.max_output_tokens_per_s,
    ));
    // vLLM formats this integer with `.2f` too.
    lines.push(kvf(
        "Peak concurrent requests:",
        r.max_concurrent_requests as f64,
    ));
    lines.push(kvf(
        "Total token throughput (tok/s):",
        r.total_token_throughput,
    ));

    let mut values = Vec::new();
    let mut section = |attr: &str, name: &str, header: &str, s: &MetricStats| {
        if !cfg.percentile_metrics.iter().any(|m| m == attr) {
            return;
        }
        lines.push(format!("{header:-^50}"));
        lines.push(kvf(&format!("Mean {name} (ms):"), s.mean));
        lines.push(kvf(&format!("Median {name} (ms):"), s.median));
        values.push((format!("mean_{attr}_ms"), s.mean));
        values.push((format!("median_{attr}_ms"), s.median));
        values.push((format!("std_{attr}_ms"), s.std));
        for &(p, v) in &s.percentiles {
            let w = percentile_word(p);
            lines.push(kvf(&format!("P{w} {name} (ms):"), v));
            values.push((format!("p{w}_{attr}_ms"), v));
        }
    };
    section("ttft", "TTFT", "Time to First Token", &r.ttft_ms);
    section(
        "tpot",
        "TPOT",
        "Time per Output Token (excl. 1st token)",
        &r.tpot_ms,
    );
    section("itl", "ITL", "Inter-token Latency", &r.itl_ms);
    section("e2el", "E2EL", "End-to-end Latency", &r.e2el_ms);
    if cfg.max_concurrency.is_some() {
        let ok = || outcomes.iter().filter(|o| o.success);
        let queue: Vec<f64> = ok().map(|o| o.client_queue_time).collect();
        let s = MetricStats::from_seconds(&queue, &cfg.metric_percentiles);
        section(
            "client_queue_time",
            "Client Queue Time",
            "Client-side Queueing",
            &s,
        );
        if cfg.request_rate.is_finite() {
            let incl: Vec<f64> = ok().map(|o| o.latency + o.client_queue_time).collect();
            let s = MetricStats::from_seconds(&incl, &cfg.metric_percentiles);
            section(
                "e2el_including_client_queue",
                "E2EL incl. Client Queue",
                "Queue-inclusive End-to-end Latency",
                &s,
            );
        }
    }
    lines.push("=".repeat(50));
    let mut block = lines.join("\n");
    block.push('\n');
    (block, values)
}

/// The benchmark's own part of the result JSON (vLLM's `benchmark()` return value);
/// without `detailed`, the large per-request lists vLLM drops unless `--save-detailed`.
pub fn benchmark_json(r: &BenchResult, detailed: bool) -> Vec<(String, PyJson)> {
    let list = |v: &[f64]| PyJson::from(v);
    let mut out: Vec<(String, PyJson)> = vec![
        ("duration".into(), r.duration_s.into()),
        ("completed".into(), r.completed.into()),
        ("failed".into(), r.failed.into()),
        ("total_input_tokens".into(), r.total_input_tokens.into()),
        ("total_output_tokens".into(), r.total_output_tokens.into()),
        ("request_throughput".into(), r.request_throughput.into()),
        ("request_goodput".into(), r.request_goodput.into()),
        ("output_throughput".into(), r.output_throughput.into()),
        (
            "total_token_throughput".into(),
            r.total_token_throughput.into(),
        ),
    ];
    let per_request: Vec<(&str, PyJson)> = vec![
        ("input_lens", PyJson::from(&r.input_lens[..])),
        ("output_lens", PyJson::from(&r.output_lens[..])),
        ("ttfts", list(&r.ttfts)),
        (
            "itls",
            PyJson::List(r.itls.iter().map(|v| list(v)).collect()),
        ),
        ("latencies", list(&r.latencies)),
        ("start_times", list(&r.start_times)),
        ("queue_times", list(&r.queue_times)),
        ("generated_texts", PyJson::from(&r.generated_texts[..])),
        ("errors", PyJson::from(&r.errors[..])),
    ];
    const BULKY: [&str; 7] = [
        "input_lens",
        "output_lens",
        "start_times",
        "ttfts",
        "itls",
        "generated_texts",
        "errors",
    ];
    for (k, v) in per_request {
        if detailed || !BULKY.contains(&k) {
            out.push((k.into(), v));
        }
    }
    out.push((
        "max_output_tokens_per_s".into(),
        r.max_output_tokens_per_s.into(),
    ));
    out.push((
        "max_concurrent_requests".into(),
        r.max_concurrent_requests.into(),
    ));
    // Inverse real-time factor: only audio benchmarks have a non-zero one.
    out.push(("rtfx".into(), 0.0.into()));
    for (k, v) in &r.metric_values {
        out.push((k.clone(), (*v).into()));
    }
    out
}

/// vLLM's default result file name,
/// `{label}-{request_rate}qps[-concurrency{N}]-{model basename}-{date}.json`, unless
/// `--result-filename` names one; placed in `--result-dir` when given.
pub fn result_path(
    label: &str,
    request_rate: f64,
    max_concurrency: Option<usize>,
    model_id: &str,
    date: &str,
    result_filename: Option<&str>,
    result_dir: Option<&std::path::Path>,
) -> PathBuf {
    let base_model_id = model_id.rsplit('/').next().unwrap_or(model_id);
    let conc = max_concurrency.map_or(String::new(), |c| format!("-concurrency{c}"));
    let name = match result_filename {
        Some(f) => f.to_string(),
        None => format!(
            "{label}-{}qps{conc}-{base_model_id}-{date}.json",
            float_repr(request_rate)
        ),
    };
    match result_dir {
        Some(d) => d.join(name),
        None => PathBuf::from(name),
    }
}

/// `datetime.now().strftime("%Y%m%d-%H%M%S")`, in UTC (no time zone database here).
pub fn timestamp_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    timestamp(secs)
}

/// Formats Unix seconds as `%Y%m%d-%H%M%S` (UTC), via the days-to-civil-date algorithm.
pub fn timestamp(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "19700101-000000");
        // 2024-02-29 12:34:56 UTC
        assert_eq!(timestamp(1_709_210_096), "20240229-123456");
    }

    #[test]
    fn default_file_name() {
        let p = result_path(
            "openai",
            f64::INFINITY,
            Some(4),
            "/m/SmolLM2.gguf",
            "20240101-000000",
            None,
            None,
        );
        assert_eq!(
            p,
            PathBuf::from("openai-infqps-concurrency4-SmolLM2.gguf-20240101-000000.json")
        );
        let p = result_path("x", 10.0, None, "org/m", "d", None, None);
        assert_eq!(p, PathBuf::from("x-10.0qps-m-d.json"));
    }
}
