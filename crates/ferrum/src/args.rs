//! Command-line arguments shared by the commands, with vLLM's names, defaults and meaning.

use clap::Args;
use std::path::PathBuf;

/// What every command that runs a model takes: the model and the engine's flags.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A GGUF file or a Hugging Face model folder; default: SmolLM2-135M-Instruct (Q4_1 GGUF)
    /// fetched by scripts/setup.sh.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// auto | safetensors | gguf | dummy (random weights from config.json, as vLLM).
    #[arg(long, default_value = "auto")]
    pub load_format: ferrum_models::LoadFormat,
    /// Model context length (prompt + output); default: the model's own.
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// A tokenizer (Hugging Face folder with tokenizer.json) other than the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// A JSON object merged into the model's config.json (vLLM's `--hf-overrides`), e.g.
    /// '{"num_hidden_layers": 2}'.
    #[arg(long)]
    pub hf_overrides: Option<String>,
    /// Seed for dummy weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Default sampling parameters: `auto` takes temperature, top_p, top_k, min_p,
    /// repetition_penalty and max_new_tokens from the model folder's generation_config.json (as
    /// vLLM does), `vllm` uses vLLM's built-in defaults, a folder path reads its
    /// generation_config.json.
    #[arg(long, default_value = "auto")]
    pub generation_config: String,
    /// auto | cuda | cpu. `cuda` runs on the first visible GPU; `auto` too when one is visible
    /// (and `--dtype` is not float32), else the CPU.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// auto | float32 (float) | bfloat16 | float16 (half): the compute dtype, as vLLM's. The CPU
    /// backend computes in f32; the CUDA backend in bf16 or f16 (auto: the checkpoint's f16, else
    /// bf16).
    #[arg(long, default_value = "auto")]
    pub dtype: Dtype,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    Auto,
    #[value(name = "float32", alias = "float")]
    Float32,
    #[value(name = "bfloat16")]
    Bfloat16,
    #[value(name = "float16", alias = "half")]
    Float16,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCacheDtype {
    Auto,
    Fp8,
    #[value(name = "fp8_e4m3")]
    Fp8E4m3,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Auto,
    Cuda,
    Cpu,
}

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Maximum sequences in one step.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Token budget of one step (prefill chunks + decodes); default 8192 with chunked prefill,
    /// else max(max-model-len, 2048).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    #[arg(long, overrides_with = "no_enable_chunked_prefill")]
    pub enable_chunked_prefill: bool,
    #[arg(long)]
    pub no_enable_chunked_prefill: bool,
    /// fcfs | priority (lower `priority` first).
    #[arg(long, default_value = "fcfs")]
    pub scheduling_policy: String,
    /// KV-cache size in bytes (suffixes K, M, G, Ki, Mi, Gi accepted). CPU default: 4 GiB.
    #[arg(long, value_parser = parse_bytes)]
    pub kv_cache_memory_bytes: Option<u64>,
    /// auto | fp8 | fp8_e4m3. auto: the compute dtype (f32 on the CPU, the model's bf16/f16 on a
    /// GPU); fp8 (= fp8_e4m3): e4m3 with per-layer scales, the checkpoint's `k_scale`/`v_scale`
    /// where it has them and 1.0 elsewhere, as vLLM.
    #[arg(long, default_value = "auto")]
    pub kv_cache_dtype: KvCacheDtype,
    /// Number of KV-cache blocks, overriding the memory budget.
    #[arg(long)]
    pub num_gpu_blocks_override: Option<usize>,
    /// Fraction of GPU memory to use (GPU backend; the CPU backend sizes the cache from
    /// --kv-cache-memory-bytes and refuses this flag rather than ignore it).
    #[arg(long)]
    pub gpu_memory_utilization: Option<f64>,
    /// Run every step eagerly: capture no CUDA graphs (the GPU backend captures decode steps by
    /// default, as vLLM).
    #[arg(long)]
    pub enforce_eager: bool,
    /// The largest decode batch captured as a CUDA graph. The sizes captured are vLLM's: 1, 2,
    /// 4, multiples of 8 below 256, then of 16, up to this and --max-num-seqs.
    #[arg(long, default_value_t = 512)]
    pub max_cudagraph_capture_size: usize,
    /// Largest `logprobs` / `prompt_logprobs` a request may ask for.
    #[arg(long, default_value_t = 20)]
    pub max_logprobs: usize,
    /// Speculative decoding, as vLLM's JSON: `{"method": "ngram", "num_speculative_tokens": K,
    /// "prompt_lookup_max": N, "prompt_lookup_min": M}` (n-gram drafts from the sequence's own
    /// tokens; the only method ferrum implements).
    #[arg(long, value_parser = crate::speculative::parse_speculative_config)]
    pub speculative_config: Option<ferrum_engine::SpeculativeConfig>,
}

impl EngineArgs {
    /// Decode batch sizes to capture as graphs (empty with `--enforce-eager`).
    pub fn graph_sizes(&self) -> Vec<usize> {
        if self.enforce_eager {
            return Vec::new();
        }
        let cap = self.max_cudagraph_capture_size.min(self.max_num_seqs);
        [1, 2, 4]
            .into_iter()
            .chain((8..256).step_by(8))
            .chain((256..=cap.max(256)).step_by(16))
            .filter(|&b| b <= cap)
            .collect()
    }

    pub fn prefix_caching(&self) -> bool {
        !self.no_enable_prefix_caching
    }
    pub fn chunked_prefill(&self) -> bool {
        !self.no_enable_chunked_prefill
    }
}

/// "4GiB", "512M", "1000000" → bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count (e.g. 4GiB, 512M, 1000000)"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown byte unit `{other}` (use K, M, G, Ki, Mi, Gi)"
            ));
        }
    };
    Ok((n * mult as f64) as u64)
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate at most (`generate`: 16, vLLM's offline default; `chat`: until the
    /// end of the turn or of the context).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    #[arg(long)]
    pub min_tokens: Option<usize>,
    /// 0 = greedy.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// 0 or -1 = off.
    #[arg(long, allow_negative_numbers = true)]
    pub top_k: Option<i32>,
    #[arg(long, allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub repetition_penalty: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub presence_penalty: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub frequency_penalty: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop string (repeatable); excluded from the output.
    #[arg(long)]
    pub stop: Vec<String>,
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// These flags over `d` (the model's defaults).
    pub fn to_params(&self, d: &ferrum_engine::SamplingParams) -> ferrum_engine::SamplingParams {
        let d = d.clone();
        ferrum_engine::SamplingParams {
            max_tokens: self.max_tokens.or(d.max_tokens),
            min_tokens: self.min_tokens.unwrap_or(d.min_tokens),
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            top_k: self.top_k.unwrap_or(d.top_k),
            min_p: self.min_p.unwrap_or(d.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(d.repetition_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            seed: self.seed,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_sizes() {
        assert_eq!(super::parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(super::parse_bytes("512M"), Ok(512_000_000));
        assert_eq!(super::parse_bytes("1000"), Ok(1000));
        assert!(super::parse_bytes("12 parsecs").is_err());
    }

    #[test]
    fn decode_graph_sizes_are_vllms_and_enforce_eager_empties_them() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            e: super::EngineArgs,
        }
        let sizes = |argv: &str| T::parse_from(argv.split_whitespace()).e.graph_sizes();
        let all = sizes("t");
        assert_eq!(&all[..6], &[1, 2, 4, 8, 16, 24]);
        assert_eq!(all.last(), Some(&256), "capped by --max-num-seqs 256");
        assert!(all.contains(&248) && !all.contains(&252));
        assert_eq!(sizes("t --max-num-seqs 20"), [1, 2, 4, 8, 16]);
        assert_eq!(sizes("t --max-cudagraph-capture-size 8"), [1, 2, 4, 8]);
        assert_eq!(
            sizes("t --max-num-seqs 512").last(),
            Some(&512),
            "multiples of 16 from 256 up to 512"
        );
        assert!(sizes("t --enforce-eager").is_empty());
    }
}
