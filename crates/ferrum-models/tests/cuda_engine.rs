//! The engine over the CUDA backend: 32 mixed greedy requests alone, batched, with chunked
//! prefill at a 16-token budget and preempted by a 40-block cache. cuBLAS and the GPU kernels
//! are not batch-invariant, so a request's tokens may differ between those runs: the rate is
//! reported (vLLM's case too), not required to be zero; what must hold is that every request
//! completes with its length, preemption and prefix-cache hits happen, and the same run twice
//! gives the same tokens.
//!
//! The model: `$FERRUM_GPU_MODEL` (a folder made on the GPU machine by
//! `scripts/fixtures/hf_reference.py --init-std 0.1`, whose argmax is meaningful), else the
//! Qwen3 fixture. Needs a GPU: `#[ignore]`d in the plain run; `scripts/gpu-check.sh` runs it, and
//! `scripts/cuda-emu.sh` (in CI) on the CPU through the CUDA emulator (`tools/cuda-emu`).

mod common;
use ferrum_backend::KvDtype;
use ferrum_backend::cuda::{CudaBackend, Half};
use ferrum_engine::{Engine, EngineConfig, EngineHandle, ExecutorInit, SamplingParams};
use ferrum_models::{LoadFormat, LoadOptions, Runner, RunnerLimits, inspect, load_files};

fn model_dir() -> std::path::PathBuf {
    std::env::var_os("FERRUM_GPU_MODEL")
        .map(|d| std::path::PathBuf::from(d).join("model"))
        .unwrap_or_else(|| common::hf_fixture("qwen3").join("model"))
}

fn engine(tweak: impl FnOnce(&mut EngineConfig)) -> EngineHandle {
    let opts = LoadOptions::new(LoadFormat::Auto, 0);
    let files = inspect(&model_dir(), &opts).unwrap();
    let mut cfg = EngineConfig::new(2048, 2048, files.cfg.vocab_size);
    tweak(&mut cfg);
    let mut limits = RunnerLimits::from_engine(&cfg);
    limits.kv_dtype = KvDtype::BF16;
    let factory = Box::new(move || {
        let be = CudaBackend::new(0, Half::Bf16)?;
        let loaded = load_files(files, &opts, &be)?;
        let runner = Runner::new(be, loaded.model, &limits)?;
        let num_blocks = runner.num_blocks;
        Ok(ExecutorInit {
            executor: Box::new(runner),
            num_blocks,
        })
    });
    Engine::start_with(cfg, factory, Box::new(|_| {}))
        .unwrap()
        .0
}

/// 32 prompts of 3..~200 tokens from a fixed stream, ids within the model's vocabulary.
fn requests() -> Vec<(Vec<u32>, SamplingParams)> {
    let opts = LoadOptions::new(LoadFormat::Auto, 0);
    let vocab = inspect(&model_dir(), &opts).unwrap().cfg.vocab_size as u32;
    let mut x = 12345u64;
    (0..32)
        .map(|i| {
            let len = 3 + (i * 37) % 190;
            let p = (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u32 % (vocab - 10) + 10
                })
                .collect();
            let sp = SamplingParams {
                max_tokens: Some(6 + i % 11),
                temperature: 0.0,
                ignore_eos: true,
                ..SamplingParams::default()
            };
            (p, sp)
        })
        .collect()
}

fn run(e: &EngineHandle, reqs: &[(Vec<u32>, SamplingParams)]) -> Vec<Vec<u32>> {
    let outs = common::run_all(e, reqs);
    for ((_, sp), o) in reqs.iter().zip(&outs) {
        assert_eq!(
            Some(o.len()),
            sp.max_tokens,
            "every request runs to its length"
        );
    }
    outs
}

fn differing(a: &[Vec<u32>], b: &[Vec<u32>]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh runs it"]
fn engine_on_cuda_completes_everything_and_reports_batch_variance() {
    let all = requests();
    let e = engine(|_| {});
    let alone: Vec<Vec<u32>> = all[..8]
        .iter()
        .map(|r| run(&e, std::slice::from_ref(r)).remove(0))
        .collect();
    let again: Vec<Vec<u32>> = all[..8]
        .iter()
        .map(|r| run(&e, std::slice::from_ref(r)).remove(0))
        .collect();
    assert_eq!(
        alone, again,
        "the same request alone twice (the second from the prefix cache)"
    );
    assert!(
        e.stats().prefix_cache_hits > 0,
        "prefix caching hit nothing"
    );
    let batched = run(&engine(|_| {}), &all);
    let chunked = run(&engine(|c| c.max_num_batched_tokens = 16), &all);
    let tight = engine(|c| {
        c.num_blocks = 40;
        c.enable_prefix_caching = false;
    });
    let preempted = run(&tight, &all);
    assert!(
        tight.stats().num_preemptions > 0,
        "expected preemptions with a 40-block cache"
    );
    let batched2 = run(&engine(|_| {}), &all);
    assert_eq!(batched, batched2, "the same batch twice");
    eprintln!(
        "greedy outputs differing from alone (of 8): batched {}, chunked prefill {}, preempted {}; \
         batched vs chunked (of 32): {}, batched vs preempted: {}",
        differing(&batched[..8], &alone),
        differing(&chunked[..8], &alone),
        differing(&preempted[..8], &alone),
        differing(&batched, &chunked),
        differing(&batched, &preempted),
    );
}
