//! Wiring: model + tokenizer + KV-cache sizing + engine thread, shared by every command.

use crate::args::{EngineArgs, ModelArgs};
use anyhow::{Context, Result, bail};
use ferrum_engine::{Engine, EngineConfig, EngineHandle, SchedulingPolicy};
use ferrum_models::{CpuRunner, KvCache, load};
use ferrum_tokenizer::Tokenizer;
use std::sync::Arc;

/// vLLM's CPU backend default KV-cache space (VLLM_CPU_KVCACHE_SPACE = 4 GiB). The cache is
/// allocated zeroed, so untouched blocks cost no resident memory.
const CPU_KV_CACHE_BYTES: u64 = 4 << 30;

pub struct Runtime {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub model_name: String,
}

pub fn start(m: &ModelArgs, e: &EngineArgs) -> Result<Runtime> {
    let path = match &m.model {
        Some(p) => p.clone(),
        None => {
            let p = ferrum_gguf::default_model_path();
            if !p.exists() {
                bail!(
                    "the default model is not at {}: run scripts/setup.sh to fetch it, or pass --model PATH",
                    p.display()
                );
            }
            p
        }
    };
    if e.gpu_memory_utilization.is_some() {
        bail!(
            "--gpu-memory-utilization sizes the KV cache on a GPU; this build runs on the CPU: use --kv-cache-memory-bytes"
        );
    }
    let policy = SchedulingPolicy::parse(&e.scheduling_policy).with_context(|| {
        format!(
            "--scheduling-policy `{}`: expected fcfs or priority",
            e.scheduling_policy
        )
    })?;
    let t0 = std::time::Instant::now();
    let loaded = load(&path, m.load_format, m.seed)?;
    let tokenizer = match (&loaded.gguf, &loaded.hf_dir) {
        (Some(g), _) => Tokenizer::from_gguf(g)?,
        (None, Some(dir)) => Tokenizer::from_hf_dir(dir)
            .with_context(|| format!("loading the tokenizer of {}", dir.display()))?,
        (None, None) => unreachable!("a model comes from a GGUF file or a folder"),
    };
    let cfg = loaded.config().clone();
    let max_model_len = m.max_model_len.unwrap_or(cfg.max_position_embeddings);
    let block_bytes = KvCache::bytes_per_block(&cfg, e.block_size) as u64;
    let num_blocks = match e.num_gpu_blocks_override {
        Some(n) => n,
        None => (e.kv_cache_memory_bytes.unwrap_or(CPU_KV_CACHE_BYTES) / block_bytes) as usize,
    };
    if num_blocks == 0 {
        bail!(
            "the KV cache holds no block: one block of {} tokens takes {block_bytes} bytes; raise --kv-cache-memory-bytes",
            e.block_size
        );
    }
    let mut ec = EngineConfig::new(num_blocks, max_model_len, cfg.vocab_size);
    ec.block_size = e.block_size;
    ec.max_num_seqs = e.max_num_seqs;
    ec.enable_chunked_prefill = e.chunked_prefill();
    ec.enable_prefix_caching = e.prefix_caching();
    ec.max_num_batched_tokens = e.max_num_batched_tokens.unwrap_or_else(|| {
        EngineConfig::default_max_num_batched_tokens(ec.enable_chunked_prefill, max_model_len)
    });
    ec.scheduling_policy = policy;
    ec.max_logprobs = e.max_logprobs;
    let model_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tokens = num_blocks * e.block_size;
    tracing::info!(
        "model {model_name} ({}, {} layers), weights {} computed in f32, KV cache {tokens} tokens ({num_blocks} blocks of {}), \
         max concurrency {:.2} at max-model-len {max_model_len}, loaded in {:.1}s",
        cfg.arch.name(),
        cfg.num_layers,
        loaded.weight_dtype,
        e.block_size,
        tokens as f64 / max_model_len as f64,
        t0.elapsed().as_secs_f64()
    );
    let runner = CpuRunner::new(loaded.decoder, num_blocks, e.block_size);
    let engine = Engine::start(ec, Box::new(runner));
    Ok(Runtime {
        engine,
        tokenizer: Arc::new(tokenizer),
        model_name,
    })
}
