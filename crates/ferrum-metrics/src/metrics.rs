//! The metric set and its rendering. Help texts, names, label sets and the family order are
//! vLLM 0.34.0's (`PrometheusStatLogger.__init__`), so a scrape of ferrum and one of vLLM
//! differ only in values.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::buckets;
use crate::cache_info::CacheConfigInfo;
use crate::histogram::Histogram;
use crate::text::{Labels, Writer};

/// vLLM's `FinishReason` strings; `vllm:request_success` has a pre-created child for each.
pub const FINISHED_REASONS: [&str; 5] = ["stop", "length", "abort", "error", "repetition"];

/// Engine state read at scrape time. The `u64` fields are cumulative since engine start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineSnapshot {
    /// Requests in the running batch.
    pub num_running: usize,
    /// Requests waiting to be scheduled (vLLM adds its deferred-waiting ones here too).
    pub num_waiting: usize,
    /// Fraction of KV blocks in use, 0..1.
    pub kv_cache_usage: f64,
    /// Prompt tokens looked up in the prefix cache, counted once per newly scheduled
    /// request (vLLM excludes re-lookups of preempted requests).
    pub prefix_cache_queries: u64,
    /// Of those, tokens found in the cache.
    pub prefix_cache_hits: u64,
    /// Preemption events.
    pub num_preemptions: u64,
    /// Prompt tokens of requests whose prefill completed, cached ones included.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generation_tokens: u64,
}

/// Speculative decoding's cumulative counters (vLLM's `SpecDecodingProm`, exposed only when
/// `--speculative-config` is set).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecDecodeSnapshot {
    pub num_drafts: u64,
    pub num_draft_tokens: u64,
    pub num_accepted_tokens: u64,
    /// One per draft position `0 .. num_speculative_tokens` (the `position` label).
    pub num_accepted_tokens_per_pos: Vec<u64>,
}

/// One finished sequence (vLLM's per-child `FinishedRequestStats`): with `n > 1` each of a
/// request's `n` sequences finishes, and is reported, on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedRequest {
    /// One of [`FINISHED_REASONS`].
    pub finished_reason: &'static str,
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    /// The request's `n`, passed on exactly one of its sequences (the last to finish, as
    /// vLLM does) and 0 on the others, so `vllm:request_params_n` counts requests.
    pub n: usize,
    /// The resolved `max_tokens` the sequence ran with (after the server capped it to the
    /// context left); 0 = none, which vLLM does not observe.
    pub max_tokens: usize,
    /// Arrival to finish.
    pub e2e_s: f64,
    /// First queued to first scheduled.
    pub queue_s: f64,
    /// First scheduled to first token.
    pub prefill_s: f64,
    /// First token to last token.
    pub decode_s: f64,
    /// First scheduled to last token.
    pub inference_s: f64,
    /// `decode_s / (generation_tokens - 1)`; `None` when fewer than 2 tokens, which is
    /// observed as 0 as vLLM 0.34.0 does.
    pub time_per_output_token_s: Option<f64>,
}

const HELP_PROMPT_TOKENS: &str = "Number of prefill tokens processed.";
const HELP_GENERATION_TOKENS: &str = "Number of generation tokens processed.";

/// Every metric of the list, shared by the engine, request and scrape threads.
#[derive(Debug)]
pub struct Metrics {
    model_name: String,
    /// Unix time of creation: the value of every `_created` series.
    created: f64,
    /// `cache_config_info` labels plus `engine`, rendered once (the config is fixed).
    cache_labels: Vec<(&'static str, String)>,
    request_success: [AtomicU64; FINISHED_REASONS.len()],
    request_prompt_tokens: Histogram,
    request_generation_tokens: Histogram,
    iteration_tokens: Histogram,
    request_params_n: Histogram,
    request_params_max_tokens: Histogram,
    ttft: Histogram,
    itl: Histogram,
    time_per_output_token: Histogram,
    e2e: Histogram,
    queue: Histogram,
    inference: Histogram,
    prefill: Histogram,
    decode: Histogram,
}

impl Metrics {
    /// `max_model_len` sets the token-count buckets (`build_1_2_5_buckets`), as in vLLM.
    pub fn new(model_name: &str, max_model_len: usize, cache: &CacheConfigInfo) -> Self {
        let tokens = || Histogram::new(buckets::one_two_five(max_model_len));
        let fixed = |b: &[f64]| Histogram::new(b.to_vec());
        let mut cache_labels = cache.labels();
        cache_labels.push(("engine", "0".to_string()));
        Self {
            model_name: model_name.to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            cache_labels,
            request_success: Default::default(),
            request_prompt_tokens: tokens(),
            request_generation_tokens: tokens(),
            iteration_tokens: fixed(buckets::ITERATION_TOKENS),
            request_params_n: fixed(buckets::REQUEST_PARAMS_N),
            request_params_max_tokens: tokens(),
            ttft: fixed(buckets::TIME_TO_FIRST_TOKEN),
            itl: fixed(buckets::INTER_TOKEN_LATENCY),
            time_per_output_token: fixed(buckets::INTER_TOKEN_LATENCY),
            e2e: fixed(buckets::REQUEST_LATENCY),
            queue: fixed(buckets::REQUEST_LATENCY),
            inference: fixed(buckets::REQUEST_LATENCY),
            prefill: fixed(buckets::REQUEST_LATENCY),
            decode: fixed(buckets::REQUEST_LATENCY),
        }
    }

    /// Once per engine step: tokens computed in the step (prefill + decode).
    pub fn observe_iteration_tokens(&self, n: usize) {
        self.iteration_tokens.observe(n as f64);
    }

    /// Once per sequence, when its first token is out: arrival to first token.
    pub fn observe_ttft(&self, seconds: f64) {
        self.ttft.observe(seconds);
    }

    /// Once per sequence per decode step after the first token (per token without
    /// speculative decoding): time since the sequence's previous output.
    pub fn observe_itl(&self, seconds: f64) {
        self.itl.observe(seconds);
    }

    /// Once per finished sequence.
    pub fn observe_finished(&self, r: &FinishedRequest) {
        match FINISHED_REASONS
            .iter()
            .position(|&x| x == r.finished_reason)
        {
            Some(i) => {
                self.request_success[i].fetch_add(1, Relaxed);
            }
            None => debug_assert!(false, "unknown finished_reason {:?}", r.finished_reason),
        }
        self.e2e.observe(r.e2e_s);
        self.queue.observe(r.queue_s);
        self.prefill.observe(r.prefill_s);
        self.inference.observe(r.inference_s);
        self.decode.observe(r.decode_s);
        self.request_prompt_tokens.observe(r.prompt_tokens as f64);
        self.request_generation_tokens
            .observe(r.generation_tokens as f64);
        self.time_per_output_token
            .observe(r.time_per_output_token_s.unwrap_or(0.0));
        if r.max_tokens > 0 {
            self.request_params_max_tokens.observe(r.max_tokens as f64);
        }
        if r.n > 0 {
            self.request_params_n.observe(r.n as f64);
        }
    }

    /// Prometheus text exposition: gauges and cumulative counters read from `snap` at
    /// scrape time, histograms from what was observed.
    pub fn render(&self, snap: &EngineSnapshot) -> String {
        self.render_with_spec(snap, None)
    }

    /// [`Self::render`] plus vLLM's `vllm:spec_decode_*` counters when speculative decoding
    /// is on (`spec` is `Some`), after `request_success` as vLLM registers them.
    pub fn render_with_spec(
        &self,
        snap: &EngineSnapshot,
        spec: Option<&SpecDecodeSnapshot>,
    ) -> String {
        let base: Labels = vec![("model_name", &self.model_name), ("engine", "0")];
        let one = |v: f64| [(base.clone(), v)];
        let mut w = Writer::default();
        let c = self.created;

        w.gauge(
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            &one(snap.num_running as f64),
        );
        w.gauge(
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            &one(snap.num_waiting as f64),
        );
        w.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            &one(snap.kv_cache_usage),
        );
        w.counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            &one(snap.prefix_cache_queries as f64),
            c,
        );
        w.counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            &one(snap.prefix_cache_hits as f64),
            c,
        );
        w.counter(
            "vllm:num_preemptions",
            "Cumulative number of preemption from the engine.",
            &one(snap.num_preemptions as f64),
            c,
        );
        w.counter(
            "vllm:prompt_tokens",
            HELP_PROMPT_TOKENS,
            &one(snap.prompt_tokens as f64),
            c,
        );
        w.counter(
            "vllm:generation_tokens",
            HELP_GENERATION_TOKENS,
            &one(snap.generation_tokens as f64),
            c,
        );
        let success: Vec<(Labels, f64)> = FINISHED_REASONS
            .iter()
            .zip(&self.request_success)
            .map(|(reason, n)| {
                let mut l = base.clone();
                l.push(("finished_reason", reason));
                (l, n.load(Relaxed) as f64)
            })
            .collect();
        w.counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            &success,
            c,
        );
        if let Some(sp) = spec {
            for (name, help, v) in [
                (
                    "vllm:spec_decode_num_drafts",
                    "Number of spec decoding drafts.",
                    sp.num_drafts,
                ),
                (
                    "vllm:spec_decode_num_draft_tokens",
                    "Number of draft tokens.",
                    sp.num_draft_tokens,
                ),
                (
                    "vllm:spec_decode_num_accepted_tokens",
                    "Number of accepted tokens.",
                    sp.num_accepted_tokens,
                ),
            ] {
                w.counter(name, help, &one(v as f64), c);
            }
            let positions: Vec<String> = (0..sp.num_accepted_tokens_per_pos.len())
                .map(|p| p.to_string())
                .collect();
            let per_pos: Vec<(Labels, f64)> = positions
                .iter()
                .zip(&sp.num_accepted_tokens_per_pos)
                .map(|(pos, &n)| {
                    let mut l = base.clone();
                    l.push(("position", pos));
                    (l, n as f64)
                })
                .collect();
            w.counter(
                "vllm:spec_decode_num_accepted_tokens_per_pos",
                "Accepted tokens per draft position.",
                &per_pos,
                c,
            );
        }

        let hists: [(&str, &str, &Histogram); 13] = [
            (
                "vllm:request_prompt_tokens",
                HELP_PROMPT_TOKENS,
                &self.request_prompt_tokens,
            ),
            (
                "vllm:request_generation_tokens",
                HELP_GENERATION_TOKENS,
                &self.request_generation_tokens,
            ),
            (
                "vllm:iteration_tokens_total",
                "Histogram of number of tokens per engine_step.",
                &self.iteration_tokens,
            ),
            (
                "vllm:request_params_n",
                "Histogram of the n request parameter.",
                &self.request_params_n,
            ),
            (
                "vllm:request_params_max_tokens",
                "Histogram of the max_tokens request parameter.",
                &self.request_params_max_tokens,
            ),
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                &self.ttft,
            ),
            (
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                &self.itl,
            ),
            (
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                &self.time_per_output_token,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                &self.e2e,
            ),
            (
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                &self.queue,
            ),
            (
                "vllm:request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
                &self.inference,
            ),
            (
                "vllm:request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                &self.prefill,
            ),
            (
                "vllm:request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
                &self.decode,
            ),
        ];
        for (name, help, h) in hists {
            w.histogram(name, help, &base, &h.snapshot(), c);
        }

        let cache: Labels = self
            .cache_labels
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        w.gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            &[(cache, 1.0)],
        );
        w.finish()
    }
}
