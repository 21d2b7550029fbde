//! Wiring: model + tokenizer + KV-cache sizing + engine thread, shared by every command.

use crate::args::{EngineArgs, ModelArgs};
use anyhow::{Context, Result, bail};
use ferrum_engine::{
    Engine, EngineConfig, EngineHandle, SamplingParams, SchedulingPolicy, StepObserver,
};
use ferrum_models::{CpuRunner, KvCache, load};
use ferrum_tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// vLLM's CPU backend default KV-cache space (VLLM_CPU_KVCACHE_SPACE = 4 GiB). The cache is
/// allocated zeroed, so untouched blocks cost no resident memory.
const CPU_KV_CACHE_BYTES: u64 = 4 << 30;

pub struct Runtime {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub model_name: String,
    /// Sampling defaults requests start from (`--generation-config`).
    pub defaults: SamplingParams,
    pub model_path: PathBuf,
    pub max_model_len: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    /// The start-up summary (model, architecture, dtype, device, KV cache, concurrency).
    pub summary: String,
}

/// vLLM's `--generation-config`: the sampling fields of generation_config.json become defaults.
fn generation_defaults(mode: &str, model_dir: Option<&Path>) -> Result<SamplingParams> {
    let mut p = SamplingParams::default();
    let dir = match mode {
        "vllm" => return Ok(p),
        "auto" => match model_dir {
            Some(d) => d.to_path_buf(),
            None => return Ok(p), // GGUF files carry no generation config
        },
        path => PathBuf::from(path),
    };
    let file = dir.join("generation_config.json");
    if !file.exists() {
        if mode == "auto" {
            return Ok(p);
        }
        bail!(
            "--generation-config {mode}: {} does not exist",
            file.display()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)
        .with_context(|| format!("{} is not valid JSON", file.display()))?;
    let f = |k: &str| v[k].as_f64().map(|x| x as f32);
    if let Some(x) = f("temperature") {
        p.temperature = x;
    }
    if let Some(x) = f("top_p") {
        p.top_p = x;
    }
    if let Some(x) = v["top_k"].as_i64() {
        p.top_k = x as i32;
    }
    if let Some(x) = f("min_p") {
        p.min_p = x;
    }
    if let Some(x) = f("repetition_penalty") {
        p.repetition_penalty = x;
    }
    if let Some(x) = v["max_new_tokens"].as_u64() {
        p.max_tokens = Some(x as usize);
    }
    Ok(p)
}

pub fn start(m: &ModelArgs, e: &EngineArgs) -> Result<Runtime> {
    start_observed(m, e, Box::new(|_| {}))
}

/// [`start`] with a callback on the engine thread after every step (the server's metrics).
pub fn start_observed(m: &ModelArgs, e: &EngineArgs, observer: StepObserver) -> Result<Runtime> {
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
    let defaults = generation_defaults(&m.generation_config, loaded.hf_dir.as_deref())?;
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
    let summary = format!(
        "model {model_name} ({}, {} layers), weights {} ({:.0} MB in memory) computed in f32 on the CPU, KV cache {tokens} tokens ({num_blocks} blocks of {}), \
         max concurrency {:.2} at max-model-len {max_model_len}, loaded in {:.1}s",
        cfg.arch.name(),
        cfg.num_layers,
        loaded.weight_dtype,
        loaded.decoder.weight_bytes() as f64 / 1e6,
        e.block_size,
        tokens as f64 / max_model_len as f64,
        t0.elapsed().as_secs_f64()
    );
    tracing::info!("{summary}");
    let runner = CpuRunner::new(loaded.decoder, num_blocks, e.block_size);
    let engine = Engine::start_observed(ec, Box::new(runner), observer);
    Ok(Runtime {
        engine,
        tokenizer: Arc::new(tokenizer),
        model_name,
        defaults,
        model_path: path,
        max_model_len,
        num_blocks,
        block_size: e.block_size,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::generation_defaults;
    use std::path::Path;

    #[test]
    fn generation_config_sets_sampling_defaults_like_vllm() {
        // Qwen3-8B's generation_config.json, kept in the repository (see tests/fixtures/README.md)
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3-8b");
        let p = generation_defaults("auto", Some(&dir)).unwrap();
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.max_tokens),
            (0.6, 0.95, 20, None)
        );
        let v = generation_defaults("vllm", Some(&dir)).unwrap();
        assert_eq!((v.temperature, v.top_p, v.top_k), (1.0, 1.0, 0));
        assert_eq!(generation_defaults("auto", None).unwrap().temperature, 1.0);
        assert_eq!(
            generation_defaults(dir.to_str().unwrap(), None)
                .unwrap()
                .top_k,
            20
        );
        assert!(
            generation_defaults("/nonexistent", None)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }
}
