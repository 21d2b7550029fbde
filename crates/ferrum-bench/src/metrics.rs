//! Per-request outcomes to benchmark totals, as vLLM's `calculate_metrics` computes them.

use anyhow::{Result, bail};

use crate::report;
use crate::stats;

/// What one request measured (vLLM's `RequestFuncOutput`). Times are seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestOutcome {
    pub success: bool,
    /// The prompt's token count: the dataset's, replaced by the server's `usage.prompt_tokens`
    /// when it reports one.
    pub prompt_len: usize,
    /// `usage.completion_tokens` from the stream; `None` (or 0) means "count the text".
    pub output_tokens: Option<usize>,
    /// Time to the first chunk carrying a choice.
    pub ttft: f64,
    /// Gaps between consecutive choice chunks (one per chunk after the first).
    pub itl: Vec<f64>,
    /// Send to last choice chunk.
    pub latency: f64,
    /// When the request was sent, on the benchmark's monotonic clock.
    pub start_time: f64,
    /// Time spent waiting for a `--max-concurrency` slot.
    pub client_queue_time: f64,
    pub generated_text: String,
    pub error: String,
}

/// The options that shape the report.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    pub max_concurrency: Option<usize>,
    /// Requests per second; `f64::INFINITY` when all are sent at once.
    pub request_rate: f64,
    /// Which of ttft, tpot, itl, e2el, client_queue_time, e2el_including_client_queue get a
    /// section.
    pub percentile_metrics: Vec<String>,
    /// Percentiles reported per metric (e.g. 99.0).
    pub metric_percentiles: Vec<f64>,
    /// Service level objectives in ms (ttft / tpot / e2el); empty: no goodput.
    pub goodput: Vec<(String, f64)>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            max_concurrency: None,
            request_rate: f64::INFINITY,
            percentile_metrics: ["ttft", "tpot", "itl"].map(String::from).to_vec(),
            metric_percentiles: vec![99.0],
            goodput: Vec::new(),
        }
    }
}

/// Mean, median, standard deviation and the selected percentiles of one metric, in ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricStats {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    /// (percentile, value) in `ReportConfig::metric_percentiles` order.
    pub percentiles: Vec<(f64, f64)>,
}

impl MetricStats {
    /// Stats of `values` in seconds, reported in ms (vLLM multiplies by 1000 after the
    /// numpy call, so do we, for identical rounding).
    pub fn from_seconds(values: &[f64], percentiles: &[f64]) -> MetricStats {
        MetricStats {
            mean: stats::mean(values) * 1000.0,
            median: stats::median(values) * 1000.0,
            std: stats::std(values) * 1000.0,
            percentiles: percentiles
                .iter()
                .map(|&p| (p, stats::percentile(values, p) * 1000.0))
                .collect(),
        }
    }
}

/// A benchmark run's totals and per-request lists (vLLM's result dict), with the printed
/// report.
#[derive(Debug, Clone, Default)]
pub struct BenchResult {
    pub completed: usize,
    pub failed: usize,
    pub total_input_tokens: usize,
    pub total_output_tokens: usize,
    pub duration_s: f64,
    pub request_throughput: f64,
    /// Good requests per second; `None` without `--goodput`.
    pub request_goodput: Option<f64>,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    /// Most choice chunks received within one wall-clock second bucket.
    pub max_output_tokens_per_s: f64,
    /// Most requests in flight at once (successful ones, half-open intervals).
    pub max_concurrent_requests: usize,
    // Per request, in dispatch order (failed requests included).
    pub input_lens: Vec<usize>,
    /// Output tokens per request; 0 for failed ones.
    pub output_lens: Vec<usize>,
    pub ttfts: Vec<f64>,
    pub itls: Vec<Vec<f64>>,
    pub latencies: Vec<f64>,
    pub start_times: Vec<f64>,
    pub queue_times: Vec<f64>,
    pub generated_texts: Vec<String>,
    pub errors: Vec<String>,
    pub ttft_ms: MetricStats,
    pub tpot_ms: MetricStats,
    pub itl_ms: MetricStats,
    pub e2el_ms: MetricStats,
    /// `mean_ttft_ms`, `median_ttft_ms`, `std_ttft_ms`, `p99_ttft_ms`, ... for the selected
    /// metrics, in the order vLLM adds them to its result JSON.
    pub metric_values: Vec<(String, f64)>,
    /// The "Serving Benchmark Result" block exactly as printed (lines joined with '\n',
    /// trailing newline included).
    pub report: String,
}

/// Computes the totals. `count_tokens` counts a generated text's tokens when the server
/// reported no usage (vLLM tokenizes without special tokens then).
pub fn compute_result(
    outcomes: &[RequestOutcome],
    duration_s: f64,
    cfg: &ReportConfig,
    count_tokens: &dyn Fn(&str) -> usize,
) -> BenchResult {
    let mut r = BenchResult {
        duration_s,
        ..BenchResult::default()
    };
    let (mut ttfts, mut tpots, mut all_tpots, mut itls, mut e2els) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for o in outcomes {
        if !o.success {
            r.output_lens.push(0);
            continue;
        }
        let output_len = match o.output_tokens {
            Some(n) if n > 0 => n,
            _ => count_tokens(&o.generated_text),
        };
        r.output_lens.push(output_len);
        r.total_input_tokens += o.prompt_len;
        // Requests with one output token have no TPOT; goodput counts them as 0.
        let mut tpot = 0.0;
        if output_len > 1 {
            tpot = (o.latency - o.ttft) / (output_len - 1) as f64;
            tpots.push(tpot);
        }
        all_tpots.push(tpot);
        itls.extend_from_slice(&o.itl);
        ttfts.push(o.ttft);
        e2els.push(o.latency);
        r.completed += 1;
    }
    r.failed = outcomes.len() - r.completed;
    r.total_output_tokens = r.output_lens.iter().sum();

    if !cfg.goodput.is_empty() {
        let good = (0..r.completed)
            .filter(|&i| {
                cfg.goodput.iter().all(|(name, slo_ms)| {
                    let v = match name.as_str() {
                        "ttft" => ttfts[i],
                        "tpot" => all_tpots[i],
                        _ => e2els[i],
                    };
                    slo_ms / 1000.0 >= v
                })
            })
            .count();
        r.request_goodput = Some(good as f64 / duration_s);
    }

    let ok: Vec<&RequestOutcome> = outcomes.iter().filter(|o| o.success).collect();
    (r.max_output_tokens_per_s, r.max_concurrent_requests) = peaks(&ok);

    r.request_throughput = r.completed as f64 / duration_s;
    r.output_throughput = r.total_output_tokens as f64 / duration_s;
    r.total_token_throughput = (r.total_input_tokens + r.total_output_tokens) as f64 / duration_s;
    let ps = &cfg.metric_percentiles;
    r.ttft_ms = MetricStats::from_seconds(&ttfts, ps);
    r.tpot_ms = MetricStats::from_seconds(&tpots, ps);
    r.itl_ms = MetricStats::from_seconds(&itls, ps);
    r.e2el_ms = MetricStats::from_seconds(&e2els, ps);

    r.input_lens = outcomes.iter().map(|o| o.prompt_len).collect();
    r.ttfts = outcomes.iter().map(|o| o.ttft).collect();
    r.itls = outcomes.iter().map(|o| o.itl.clone()).collect();
    r.latencies = outcomes.iter().map(|o| o.latency).collect();
    r.start_times = outcomes.iter().map(|o| o.start_time).collect();
    r.queue_times = outcomes.iter().map(|o| o.client_queue_time).collect();
    r.generated_texts = outcomes.iter().map(|o| o.generated_text.clone()).collect();
    r.errors = outcomes.iter().map(|o| o.error.clone()).collect();

    let (report, values) = report::render_block(&r, outcomes, cfg);
    r.report = report;
    r.metric_values = values;
    r
}

/// Peak chunks per one-second bucket (vLLM counts the first chunk at start + ttft and one
/// more per ITL entry) and peak concurrency by a sweep over [start, end) intervals.
fn peaks(ok: &[&RequestOutcome]) -> (f64, usize) {
    if ok.is_empty() {
        return (0.0, 0);
    }
    let min_start = ok
        .iter()
        .map(|o| o.start_time)
        .fold(f64::INFINITY, f64::min);
    let max_end = ok
        .iter()
        .map(|o| o.start_time + o.latency)
        .fold(f64::NEG_INFINITY, f64::max);
    let buckets = (max_end - min_start).ceil() as usize + 1;
    let mut per_second = vec![0u64; buckets];
    for o in ok {
        let mut t = o.start_time + o.ttft;
        let mut add = |t: f64| {
            let b = (t - min_start).trunc();
            if b >= 0.0 && (b as usize) < buckets {
                per_second[b as usize] += 1;
            }
        };
        add(t);
        for gap in &o.itl {
            t += gap;
            add(t);
        }
    }
    let mut events: Vec<(f64, i32)> = ok
        .iter()
        .flat_map(|o| [(o.start_time, 1), (o.start_time + o.latency, -1)])
        .collect();
    // Ties: a departure (-1) sorts before an arrival (+1).
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut cur, mut peak) = (0i32, 0i32);
    for (_, d) in events {
        cur += d;
        peak = peak.max(cur);
    }
    let max_tps = per_second.iter().copied().max().unwrap_or(0) as f64;
    (max_tps, peak as usize)
}

/// Parses `--goodput` pairs such as `ttft:200 tpot:50` (values in ms), with vLLM's checks.
pub fn parse_goodput(pairs: &[String]) -> Result<Vec<(String, f64)>> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for pair in pairs {
        let parsed = pair
            .split_once(':')
            .filter(|(_, v)| !v.contains(':'))
            .and_then(|(k, v)| Some((k.to_string(), v.trim().parse::<f64>().ok()?)));
        let Some((name, value)) = parsed else {
            bail!(
                "Invalid format found for service level objectives. Specify service level \
                 objectives for goodput as \"KEY:VALUE\" pairs, where the key is a metric \
                 name, and the value is a number in milliseconds."
            );
        };
        if !["ttft", "tpot", "e2el"].contains(&name.as_str()) {
            bail!(
                "Invalid metric name found, {name}: {value}. The service level objective name \
                 should be one of ['ttft', 'tpot', 'e2el']. "
            );
        }
        if value < 0.0 {
            bail!(
                "Invalid value found, {name}: {value}. The service level objective value \
                 should be non-negative."
            );
        }
        // Like a Python dict: a repeated key keeps its place and takes the new value.
        match out.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name, value)),
        }
    }
    Ok(out)
}

/// vLLM's note on failures, printed before the result block (at most 10 errors).
pub fn failure_summary(outcomes: &[RequestOutcome]) -> Option<String> {
    let failed: Vec<&RequestOutcome> = outcomes.iter().filter(|o| !o.success).collect();
    if failed.is_empty() {
        return None;
    }
    let mut s = String::from("Failed requests during benchmark run detected (capping to 10):\n");
    for (i, o) in failed.iter().take(10).enumerate() {
        s.push_str(&format!("Error {i}: {}\n", o.error));
    }
    Some(s)
}
