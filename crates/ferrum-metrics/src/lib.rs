//! vLLM-compatible Prometheus metrics.
//!
//! ferrum's `/metrics` must look like vLLM's so that Grafana dashboards, alerts and
//! inference gateways written for vLLM work unchanged: same metric names, types, help
//! texts, label names, histogram buckets, and the same text-format spelling. The reference
//! is vLLM 0.34.0 (`vllm/v1/metrics/loggers.py`, `PrometheusStatLogger`; commit
//! `62d4bc3c7`), recorded in `tests/fixtures/vllm_metrics.json` together with a scrape
//! of vLLM's own code fed a fixed scenario (`tests/fixtures/vllm_scenario_exposition.txt`);
//! the tests hold ferrum's output to both.
//!
//! # Exposition
//! vLLM serves `prometheus_client.generate_latest()` whatever the `Accept` header, so this
//! crate writes that format by hand (the `prometheus-client` crate writes OpenMetrics):
//! counters as `# TYPE vllm:x_total counter` plus a `vllm:x_created` gauge family (vLLM
//! does not disable `_created`; it is only absent in its multi-API-server multiprocess
//! mode), histograms as `_bucket`/`_count`/`_sum` plus `_created`, labels sorted by name,
//! numbers in Python's `floatToGoString` spelling. Every series carries
//! `model_name` and `engine="0"`, except `vllm:cache_config_info`, which in vLLM has only
//! the cache config fields and `engine`.
//!
//! # Semantics (as vLLM)
//! - `num_requests_running/waiting`, `kv_cache_usage_perc` (0..1): gauges, read from
//!   [`EngineSnapshot`] at scrape time.
//! - `prefix_cache_queries/hits` (tokens), `num_preemptions`, `prompt_tokens`,
//!   `generation_tokens`: counters, cumulative values read from the snapshot.
//! - `spec_decode_num_drafts`, `_num_draft_tokens`, `_num_accepted_tokens` and
//!   `_num_accepted_tokens_per_pos{position}` (counters; only with `--speculative-config`,
//!   as vLLM's `SpecDecodingProm`), from [`SpecDecodeSnapshot`].
//! - `request_success{finished_reason}`: one per finished *sequence*; children for stop,
//!   length, abort, error and repetition exist from the start at 0.
//! - Per finished sequence: `e2e_request_latency`, `request_queue_time`,
//!   `request_prefill_time`, `request_decode_time`, `request_inference_time`,
//!   `request_prompt_tokens`, `request_generation_tokens`,
//!   `request_time_per_output_token` (0 when under 2 tokens: vLLM observes 0, it does
//!   not skip), and `request_params_max_tokens` (the resolved max_tokens; not observed
//!   when 0/unset).
//! - Per request: `request_params_n` (see [`FinishedRequest::n`]).
//! - `time_to_first_token` once per sequence; `inter_token_latency` once per sequence per
//!   step after the first; `iteration_tokens_total` once per engine step.
//!
//! # Not matched
//! - vLLM observes `iteration_tokens_total` as (prompt tokens of requests whose prefill
//!   *completed* in the step, minus cache hits) + generated tokens; with chunked prefill
//!   that credits the whole prompt to its last chunk. ferrum observes whatever the caller
//!   passes, meant to be the tokens actually computed in the step.
//! - vLLM's `_created` value is each child's own creation time; here it is the time of
//!   [`Metrics::new`] for all.
//! - Metrics outside the list are not exposed: among those vLLM always shows are
//!   `num_requests_waiting_by_reason`, `engine_sleep_state`, `prompt_tokens_by_source`,
//!   `prompt_tokens_cached(_by_source)`, `external_prefix_cache_*`, `mm_cache_*`,
//!   `admission_rejections`, `request_max_num_generation_tokens`,
//!   `request_num_preemptions`, `request_prefill_kv_computed_tokens`, and the Python
//!   process/GC and HTTP instrumentator series.
//! - vLLM exposes `cache_config_info` only once the engine is up; ferrum from the start.
//! - vLLM's `--custom-histogram-buckets` override is not supported.
//! - A `_count`/`_sum` pair read during concurrent observations may be off by the
//!   observations in flight (lock-free updates; prometheus_client takes a lock).

mod buckets;
mod cache_info;
mod histogram;
mod metrics;
mod text;

pub use cache_info::CacheConfigInfo;
pub use metrics::{EngineSnapshot, FINISHED_REASONS, FinishedRequest, Metrics, SpecDecodeSnapshot};

/// The content type vLLM 0.34.0 sends with `/metrics` (prometheus_client 0.26's
/// `CONTENT_TYPE_LATEST`). The body is also valid as `version=0.0.4`: every name here is
/// a legacy Prometheus name, so the two text versions print it identically.
pub const CONTENT_TYPE: &str = "text/plain; version=1.0.0; charset=utf-8";
