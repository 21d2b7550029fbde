//! Wiring: config + tokenizer on the caller's thread, then the engine thread builds the backend,
//! loads the model and the runner sizes the KV cache; shared by every command.

use crate::args::{Device, Dtype, EngineArgs, KvCacheDtype, ModelArgs};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use ferrum_backend::cuda::{self, CudaBackend, Half};
use ferrum_backend::{Backend, CpuBackend, KvDtype, WeightBytes};
use ferrum_engine::{
    Engine, EngineConfig, EngineHandle, ExecutorFactory, ExecutorInit, SamplingParams,
    SchedulingPolicy, StepObserver,
};
use ferrum_models::{
    LoadOptions, ModelFiles, Runner, RunnerLimits, Workspace, inspect, kv_bytes_per_block,
    load_files,
};
use ferrum_tokenizer::Tokenizer;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// `--hf-overrides`: a JSON object merged into config.json.
fn hf_overrides(m: &ModelArgs) -> Result<Option<serde_json::Value>> {
    let Some(s) = &m.hf_overrides else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(s).with_context(|| {
        format!("--hf-overrides takes a JSON object, e.g. '{{\"num_hidden_layers\": 2}}'; got {s}")
    })?;
    if !v.is_object() {
        bail!("--hf-overrides takes a JSON object; got {s}");
    }
    Ok(Some(v))
}

/// What the runner reports from the engine thread once it is built.
struct Built {
    weight_bytes: usize,
    device: String,
}

/// Where the model runs: `--device cpu`, `--device cuda` (the first GPU, or an error saying why
/// there is none), or `auto`: the first GPU when one is visible, else the CPU.
enum Target {
    Cpu,
    Cuda { ordinal: usize, dtype: Half },
}

fn target(device: Device, asked: Dtype, weight_dtype: &str) -> Result<Target> {
    let cpu = || match asked {
        Dtype::Auto | Dtype::Float32 => Ok(Target::Cpu),
        other => bail!(
            "--dtype {}: the CPU backend computes in float32 (use --dtype auto or float32, or --device cuda)",
            other
                .to_possible_value()
                .map_or("?".into(), |v| v.get_name().to_string())
        ),
    };
    let dtype = match asked {
        Dtype::Bfloat16 => Half::Bf16,
        Dtype::Float16 => Half::F16,
        Dtype::Auto if weight_dtype.contains("f16") && !weight_dtype.contains("bf16") => Half::F16,
        Dtype::Auto => Half::Bf16,
        Dtype::Float32 if device == Device::Cuda => bail!(
            "--dtype float32: the CUDA backend computes in bfloat16 or float16 (use --dtype auto, bfloat16 or float16)"
        ),
        Dtype::Float32 => Half::Bf16,
    };
    match device {
        Device::Cpu => cpu(),
        Device::Cuda => Ok(Target::Cuda {
            ordinal: cuda::require_gpu()?.ordinal,
            dtype,
        }),
        // the first visible GPU, unless float32 was asked for (which only the CPU computes in)
        Device::Auto => match cuda::probe() {
            Ok(gpus) if !gpus.is_empty() && asked != Dtype::Float32 => Ok(Target::Cuda {
                ordinal: gpus[0].ordinal,
                dtype,
            }),
            Ok(_) => cpu(),
            Err(e) => {
                tracing::warn!("looking for a GPU failed ({e:#}): running on the CPU");
                cpu()
            }
        },
    }
}

/// Loads the model onto `be` and builds its runner (on the engine thread).
fn build_runner<B: Backend + WeightBytes + 'static>(
    be: B,
    files: ModelFiles,
    opts: &LoadOptions,
    limits: &RunnerLimits,
    report: &Mutex<Option<Built>>,
) -> Result<ExecutorInit> {
    let loaded = load_files(files, opts, &be)?;
    let device = be.device_name();
    let runner = Runner::new(be, loaded.model, limits)?;
    let num_blocks = runner.num_blocks;
    *report.lock().unwrap() = Some(Built {
        weight_bytes: loaded.weight_bytes,
        device,
    });
    Ok(ExecutorInit {
        executor: Box::new(runner),
        num_blocks,
    })
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
    let policy = SchedulingPolicy::parse(&e.scheduling_policy).with_context(|| {
        format!(
            "--scheduling-policy `{}`: expected fcfs or priority",
            e.scheduling_policy
        )
    })?;
    let t0 = std::time::Instant::now();
    let mut opts = LoadOptions::new(m.load_format, m.seed);
    opts.hf_overrides = hf_overrides(m)?;
    let files = inspect(&path, &opts)?;
    let tokenizer = match (&m.tokenizer, &files.gguf, &files.hf_dir) {
        (Some(dir), _, _) => Tokenizer::from_hf_dir(dir)
            .with_context(|| format!("loading the tokenizer of --tokenizer {}", dir.display()))?,
        (None, Some(g), _) => Tokenizer::from_gguf(g)?,
        (None, None, Some(dir)) => Tokenizer::from_hf_dir(dir)
            .with_context(|| format!("loading the tokenizer of {}", dir.display()))?,
        (None, None, None) => unreachable!("a model comes from a GGUF file or a folder"),
    };
    let defaults = generation_defaults(&m.generation_config, files.hf_dir.as_deref())?;
    let cfg = files.cfg.clone();
    let weight_dtype = files.weight_dtype.clone();
    let target = target(m.device, m.dtype, &weight_dtype)?;
    let (compute_kv, compute) = match &target {
        Target::Cpu => (KvDtype::F32, "f32"),
        Target::Cuda {
            dtype: Half::Bf16, ..
        } => (KvDtype::BF16, "bf16"),
        Target::Cuda {
            dtype: Half::F16, ..
        } => (KvDtype::F16, "f16"),
    };
    let (kv_dtype, kv_name) = match e.kv_cache_dtype {
        KvCacheDtype::Auto => (compute_kv, compute),
        KvCacheDtype::Fp8 | KvCacheDtype::Fp8E4m3 => (KvDtype::Fp8E4M3, "fp8 e4m3"),
    };
    let max_model_len = m.max_model_len.unwrap_or(cfg.max_position_embeddings);
    // the engine's block count comes from the runner; this one is a placeholder
    let mut ec = EngineConfig::new(1, max_model_len, cfg.vocab_size);
    ec.block_size = e.block_size;
    ec.max_num_seqs = e.max_num_seqs;
    ec.enable_chunked_prefill = e.chunked_prefill();
    ec.enable_prefix_caching = e.prefix_caching();
    ec.max_num_batched_tokens = e.max_num_batched_tokens.unwrap_or_else(|| {
        EngineConfig::default_max_num_batched_tokens(ec.enable_chunked_prefill, max_model_len)
    });
    ec.scheduling_policy = policy;
    ec.max_logprobs = e.max_logprobs;
    ec.speculative = e.speculative_config;
    let limits = RunnerLimits {
        block_size: e.block_size,
        max_num_batched_tokens: ec.max_num_batched_tokens,
        max_num_seqs: e.max_num_seqs,
        kv_dtype,
        kv_cache_memory_bytes: e.kv_cache_memory_bytes,
        num_blocks_override: e.num_gpu_blocks_override,
        gpu_memory_utilization: e.gpu_memory_utilization,
        num_speculative_tokens: e.speculative_config.map_or(0, |c| c.num_speculative_tokens),
        max_model_len,
        graph_sizes: e.graph_sizes(),
    };
    // Refused before any weight is read if weights + workspace + one max-model-len sequence of
    // KV cache do not fit.
    opts.reserve_bytes = (Workspace::<CpuBackend>::bytes_per_token(&cfg)
        * ec.max_num_batched_tokens
        + kv_bytes_per_block(&cfg, e.block_size, kv_dtype) * max_model_len.div_ceil(e.block_size))
        as u64;
    let built = Arc::new(Mutex::new(None));
    let report = built.clone();
    // The runner is built on the engine's thread (a device context belongs to one thread).
    let factory: ExecutorFactory = Box::new(move || match target {
        Target::Cpu => build_runner(CpuBackend::new(), files, &opts, &limits, &report),
        Target::Cuda { ordinal, dtype } => {
            let be = CudaBackend::new(ordinal, dtype)?;
            build_runner(be, files, &opts, &limits, &report)
        }
    });
    let (engine, num_blocks) = Engine::start_with(ec, factory, observer)?;
    let Built {
        weight_bytes,
        device,
    } = built
        .lock()
        .unwrap()
        .take()
        .expect("the factory reports before the engine is ready");
    let model_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tokens = num_blocks * e.block_size;
    let summary = format!(
        "model {model_name} ({}, {} layers), weights {weight_dtype} ({:.0} MB in memory) computed in {compute} on the {device}, KV cache {tokens} tokens in {kv_name} ({num_blocks} blocks of {}), \
         max concurrency {:.2} at max-model-len {max_model_len}, loaded in {:.1}s",
        cfg.arch,
        cfg.num_layers,
        weight_bytes as f64 / 1e6,
        e.block_size,
        tokens as f64 / max_model_len as f64,
        t0.elapsed().as_secs_f64()
    );
    tracing::info!("{summary}");
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
