//! Values: after a fixed scenario of observations and a snapshot, the numbers in the text
//! are the expected ones, both hand-computed and as vLLM 0.34.0 itself printed them for the
//! same scenario (tests/fixtures/vllm_scenario_exposition.txt, produced by running vLLM's
//! PrometheusStatLogger.record() with equivalent stats).

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::parse;
use ferrum_metrics::{CacheConfigInfo, EngineSnapshot, FinishedRequest, Metrics};

/// The cache config of the vLLM run: vLLM's defaults with block_size 16, 0.9 memory
/// utilization and 1000 GPU blocks.
fn vllm_default_cache() -> CacheConfigInfo {
    CacheConfigInfo {
        user_specified_block_size: Some(true),
        is_attention_free: Some(false),
        prefix_caching_hash_algo: Some("sha256".into()),
        prefix_cache_retention_interval: Some(0),
        kv_cache_dtype_skip_layers: Some(vec![]),
        mamba_cache_dtype: Some("auto".into()),
        mamba_ssm_cache_dtype: Some("auto".into()),
        mamba_cache_mode: Some("none".into()),
        enable_mamba_shared_prefix_checkpoint: Some(false),
        replayssm_buffer_len: Some(16),
        use_replayssm: Some(false),
        use_kda_recoverssm: Some(false),
        kv_sharing_fast_prefill: Some(false),
        swa_bounded_replay: Some(true),
        kv_offloading_backend: Some("native".into()),
        ..CacheConfigInfo::new(16, 1000, true, "auto", 0.9)
    }
}

fn finished(reason: &'static str, prompt: usize, generated: usize) -> FinishedRequest {
    FinishedRequest {
        finished_reason: reason,
        prompt_tokens: prompt,
        generation_tokens: generated,
        n: 1,
        max_tokens: 0,
        e2e_s: 0.0,
        queue_s: 0.0,
        prefill_s: 0.0,
        decode_s: 0.0,
        inference_s: 0.0,
        time_per_output_token_s: None,
    }
}

/// The scenario the vLLM fixture was recorded with; returns the rendered text.
fn scenario() -> String {
    let m = Metrics::new("m", 8192, &vllm_default_cache());
    for t in [0.05, 0.3, 3000.0] {
        m.observe_ttft(t);
    }
    for t in [0.02, 0.02, 0.03, 0.01] {
        m.observe_itl(t);
    }
    for n in [57, 1, 8192, 20000] {
        m.observe_iteration_tokens(n);
    }
    m.observe_finished(&FinishedRequest {
        max_tokens: 100,
        e2e_s: 1.2,
        queue_s: 0.1,
        prefill_s: 0.2,
        inference_s: 1.0,
        ..finished("stop", 30, 1)
    });
    m.observe_finished(&FinishedRequest {
        n: 2,
        max_tokens: 192,
        e2e_s: 10.0,
        queue_s: 0.5,
        prefill_s: 1.5,
        decode_s: 8.0,
        inference_s: 9.5,
        time_per_output_token_s: Some(8.0 / 191.0),
        ..finished("length", 8000, 192)
    });
    // An aborted sibling sequence: not the one carrying n, no max_tokens.
    m.observe_finished(&FinishedRequest {
        n: 0,
        e2e_s: 0.3,
        queue_s: 0.3,
        ..finished("abort", 5, 0)
    });
    m.render(&EngineSnapshot {
        num_running: 3,
        num_waiting: 2,
        kv_cache_usage: 0.25,
        prefix_cache_queries: 100,
        prefix_cache_hits: 40,
        num_preemptions: 1,
        prompt_tokens: 50 + 8192 + 19000,
        generation_tokens: 7 + 1 + 1000,
    })
}

#[test]
fn same_text_as_vllm_for_the_same_scenario() {
    let want = include_str!("fixtures/vllm_scenario_exposition.txt");
    let got = scenario();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let (want_lines, got_lines): (Vec<_>, Vec<_>) = (want.lines().collect(), got.lines().collect());
    for (i, (w, g)) in want_lines.iter().zip(&got_lines).enumerate() {
        // `_created` holds the creation time: compare the series, and that ours is now-ish.
        let created = |l: &str| {
            !l.starts_with('#') && l.split(['{', ' ']).next().unwrap().ends_with("_created")
        };
        if created(w) {
            let (w_series, _) = w.rsplit_once(' ').unwrap();
            let (g_series, g_value) = g.rsplit_once(' ').unwrap();
            assert_eq!(g_series, w_series, "line {}", i + 1);
            let t: f64 = g_value.parse().unwrap();
            assert!(
                (now - 600.0..=now + 1.0).contains(&t),
                "line {}: created {t}",
                i + 1
            );
        } else {
            assert_eq!(*g, *w, "line {}", i + 1);
        }
    }
    assert_eq!(got_lines.len(), want_lines.len(), "line count");
}

#[test]
fn hand_computed_values() {
    let exp = parse(&scenario());
    let v = |name: &str, with: &[(&str, &str)]| exp.value(name, with);
    // Gauges and counters come straight from the snapshot.
    assert_eq!(v("vllm:num_requests_running", &[]), 3.0);
    assert_eq!(v("vllm:num_requests_waiting", &[]), 2.0);
    assert_eq!(v("vllm:kv_cache_usage_perc", &[]), 0.25);
    assert_eq!(v("vllm:prefix_cache_queries_total", &[]), 100.0);
    assert_eq!(v("vllm:prefix_cache_hits_total", &[]), 40.0);
    assert_eq!(v("vllm:num_preemptions_total", &[]), 1.0);
    assert_eq!(v("vllm:prompt_tokens_total", &[]), 27242.0);
    assert_eq!(v("vllm:generation_tokens_total", &[]), 1008.0);
    for (reason, n) in [
        ("stop", 1.0),
        ("length", 1.0),
        ("abort", 1.0),
        ("error", 0.0),
        ("repetition", 0.0),
    ] {
        assert_eq!(
            v("vllm:request_success_total", &[("finished_reason", reason)]),
            n,
            "{reason}"
        );
    }
    // TTFT 0.05, 0.3, 3000: cumulative buckets and the sum.
    let ttft = "vllm:time_to_first_token_seconds";
    assert_eq!(v(&format!("{ttft}_bucket"), &[("le", "0.04")]), 0.0);
    assert_eq!(v(&format!("{ttft}_bucket"), &[("le", "0.06")]), 1.0);
    assert_eq!(v(&format!("{ttft}_bucket"), &[("le", "0.5")]), 2.0);
    assert_eq!(v(&format!("{ttft}_bucket"), &[("le", "2560.0")]), 2.0);
    assert_eq!(v(&format!("{ttft}_bucket"), &[("le", "+Inf")]), 3.0);
    assert_eq!(v(&format!("{ttft}_count"), &[]), 3.0);
    assert_eq!(v(&format!("{ttft}_sum"), &[]), 0.05 + 0.3 + 3000.0);
    // ITL 0.02, 0.02, 0.03, 0.01: a value equal to a bound falls in that bucket.
    let itl = "vllm:inter_token_latency_seconds";
    assert_eq!(v(&format!("{itl}_bucket"), &[("le", "0.01")]), 1.0);
    assert_eq!(v(&format!("{itl}_bucket"), &[("le", "0.025")]), 3.0);
    assert_eq!(v(&format!("{itl}_count"), &[]), 4.0);
    assert!((v(&format!("{itl}_sum"), &[]) - 0.08).abs() < 1e-12);
    // Iteration tokens 57, 1, 8192, 20000.
    let it = "vllm:iteration_tokens_total";
    assert_eq!(v(&format!("{it}_bucket"), &[("le", "1.0")]), 1.0);
    assert_eq!(v(&format!("{it}_bucket"), &[("le", "64.0")]), 2.0);
    assert_eq!(v(&format!("{it}_bucket"), &[("le", "16384.0")]), 3.0);
    assert_eq!(v(&format!("{it}_count"), &[]), 4.0);
    assert_eq!(v(&format!("{it}_sum"), &[]), 28250.0);
    // Per finished sequence.
    assert_eq!(v("vllm:e2e_request_latency_seconds_count", &[]), 3.0);
    assert_eq!(v("vllm:e2e_request_latency_seconds_sum", &[]), 11.5);
    assert_eq!(
        v("vllm:request_queue_time_seconds_sum", &[]),
        0.1 + 0.5 + 0.3
    );
    assert_eq!(v("vllm:request_prefill_time_seconds_sum", &[]), 1.7);
    assert_eq!(v("vllm:request_decode_time_seconds_sum", &[]), 8.0);
    assert_eq!(v("vllm:request_inference_time_seconds_sum", &[]), 10.5);
    assert_eq!(v("vllm:request_prompt_tokens_sum", &[]), 8035.0);
    assert_eq!(
        v("vllm:request_prompt_tokens_bucket", &[("le", "5.0")]),
        1.0
    );
    assert_eq!(
        v("vllm:request_prompt_tokens_bucket", &[("le", "5000.0")]),
        2.0
    );
    assert_eq!(
        v("vllm:request_prompt_tokens_bucket", &[("le", "+Inf")]),
        3.0
    );
    assert_eq!(v("vllm:request_generation_tokens_sum", &[]), 193.0);
    // Time per output token: the sequences under 2 tokens count as 0, as in vLLM.
    let tpot = "vllm:request_time_per_output_token_seconds";
    assert_eq!(v(&format!("{tpot}_count"), &[]), 3.0);
    assert_eq!(v(&format!("{tpot}_bucket"), &[("le", "0.01")]), 2.0);
    assert_eq!(v(&format!("{tpot}_sum"), &[]), 8.0 / 191.0);
    // max_tokens only where set; n once per request.
    assert_eq!(v("vllm:request_params_max_tokens_count", &[]), 2.0);
    assert_eq!(v("vllm:request_params_max_tokens_sum", &[]), 292.0);
    assert_eq!(v("vllm:request_params_n_count", &[]), 2.0);
    assert_eq!(v("vllm:request_params_n_sum", &[]), 3.0);
    assert_eq!(v("vllm:request_params_n_bucket", &[("le", "1.0")]), 1.0);
}

#[test]
fn shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Metrics>();
    let m = Arc::new(Metrics::new(
        "m",
        2048,
        &CacheConfigInfo::new(16, 10, false, "auto", 0.5),
    ));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    m.observe_itl(0.02);
                    m.observe_finished(&finished("stop", 3, 2));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let exp = parse(&m.render(&EngineSnapshot::default()));
    assert_eq!(
        exp.value("vllm:inter_token_latency_seconds_count", &[]),
        2000.0
    );
    assert_eq!(
        exp.value("vllm:request_success_total", &[("finished_reason", "stop")]),
        2000.0
    );
    assert_eq!(exp.value("vllm:request_prompt_tokens_sum", &[]), 6000.0);
    // 2048 caps the 1-2-5 token buckets at 2000.
    assert_eq!(
        exp.value("vllm:request_prompt_tokens_bucket", &[("le", "2000.0")]),
        2000.0
    );
    assert_eq!(
        exp.samples_named("vllm:request_prompt_tokens_bucket")
            .count(),
        12
    );
}
