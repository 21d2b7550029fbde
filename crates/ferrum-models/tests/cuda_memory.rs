//! Nothing runs out of GPU memory after start-up under any load the limits admit: the KV cache
//! is sized from `--gpu-memory-utilization` after a profiling forward at the largest step, then
//! every one of `--max-num-seqs` sequences is filled to `--max-model-len` at once (prefills
//! chunked at `--max-num-batched-tokens`, then decodes), and every request must finish at its
//! full length.
//!
//! On the GPU machine (`scripts/gpu-check.sh`) the device's own memory is the limit; on the CUDA
//! emulator (`scripts/cuda-emu.sh`, CI) the device is held to 0.5 GiB, so the 2 % that
//! `--gpu-memory-utilization 0.98` leaves is 10 MiB and any allocation after start-up past it
//! fails the run. The model: `$FERRUM_GPU_MODEL`, else the Qwen3 fixture.

mod common;
use ferrum_backend::KvDtype;
use ferrum_backend::cuda::{CudaBackend, Half};
use ferrum_engine::{Engine, EngineConfig, ExecutorInit, SamplingParams};
use ferrum_models::{LoadFormat, LoadOptions, Runner, RunnerLimits, inspect, load_files};

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh runs it"]
fn max_num_seqs_at_max_model_len_never_run_out_of_memory() {
    // read by the CUDA emulator's allocator (a GPU ignores it); set before any thread starts
    // SAFETY: the test's first statement, no other thread reads the environment yet.
    unsafe { std::env::set_var("FERRUM_EMU_MEM_GIB", "0.5") };
    let dir = std::env::var_os("FERRUM_GPU_MODEL")
        .map(|d| std::path::PathBuf::from(d).join("model"))
        .unwrap_or_else(|| common::hf_fixture("qwen3").join("model"));
    let opts = LoadOptions::new(LoadFormat::Auto, 0);
    let files = inspect(&dir, &opts).unwrap();
    let vocab = files.cfg.vocab_size;
    let (max_num_seqs, max_model_len) = (8usize, 256usize);
    let mut cfg = EngineConfig::new(1, max_model_len, vocab);
    cfg.max_num_seqs = max_num_seqs;
    cfg.max_num_batched_tokens = 512;
    let limits = RunnerLimits {
        block_size: cfg.block_size,
        max_num_batched_tokens: cfg.max_num_batched_tokens,
        max_num_seqs,
        kv_dtype: KvDtype::BF16,
        kv_cache_memory_bytes: None,
        num_blocks_override: None,
        gpu_memory_utilization: Some(0.98),
        num_speculative_tokens: 0,
        max_model_len,
        // decode graphs too: their capture and replays must also fit
        graph_sizes: vec![1, 2, 4, 8],
    };
    let factory = Box::new(move || {
        let be = CudaBackend::new(0, Half::Bf16)?;
        let loaded = load_files(files, &opts, &be)?;
        let runner = Runner::new(be, loaded.model, &limits)?;
        let num_blocks = runner.num_blocks;
        eprintln!("KV cache: {num_blocks} blocks of 16 tokens");
        Ok(ExecutorInit {
            executor: Box::new(runner),
            num_blocks,
        })
    });
    let e = Engine::start_with(cfg, factory, Box::new(|_| {}))
        .unwrap()
        .0;
    // every sequence at max_model_len: a prompt of max_model_len - 16 tokens and 16 to generate
    let out_len = 16;
    let mut x = 7u64;
    let reqs: Vec<(Vec<u32>, SamplingParams)> = (0..max_num_seqs)
        .map(|_| {
            let p = (0..max_model_len - out_len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u32 % (vocab as u32 - 10) + 10
                })
                .collect();
            let sp = SamplingParams {
                max_tokens: Some(out_len),
                temperature: 0.0,
                ignore_eos: true,
                ..SamplingParams::default()
            };
            (p, sp)
        })
        .collect();
    let outs = common::run_all(&e, &reqs);
    for o in &outs {
        assert_eq!(o.len(), out_len, "every sequence reaches max_model_len");
    }
    eprintln!("{max_num_seqs} sequences of {max_model_len} tokens at once: all completed");
    // the engine thread releases the GPU before the process exits
    e.shutdown();
}
