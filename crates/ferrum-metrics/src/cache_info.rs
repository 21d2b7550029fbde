//! `vllm:cache_config_info`: vLLM exposes its whole `CacheConfig` as the labels of a gauge
//! fixed at 1 (`CacheConfig.metrics_info()` = every attribute, `str()`-ed). The label set
//! below is that of vLLM 0.34.0; values use Python's spelling (`None`, `True`, `0.9`) so
//! queries written against vLLM match.

use crate::text::{py_bool, py_float, py_str_list};

/// What ferrum knows of its KV cache, in vLLM's `CacheConfig` terms. The first five fields
/// are always known; every other one is `None` unless the caller knows better, and a `None`
/// is rendered as the string `"None"` exactly as vLLM renders an unset attribute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheConfigInfo {
    /// Tokens per KV block.
    pub block_size: usize,
    /// KV blocks allocated on the accelerator.
    pub num_gpu_blocks: usize,
    pub enable_prefix_caching: bool,
    /// vLLM's `--kv-cache-dtype` value: `"auto"`, `"bfloat16"`, `"fp8"`, ...
    pub cache_dtype: String,
    /// Fraction of device memory the engine may use (0..1].
    pub gpu_memory_utilization: f64,
    pub user_specified_block_size: Option<bool>,
    pub kv_cache_layout: Option<String>,
    pub prefix_match_unit: Option<usize>,
    pub is_attention_free: Option<bool>,
    pub num_gpu_blocks_override: Option<usize>,
    pub sliding_window: Option<usize>,
    pub prefix_caching_hash_algo: Option<String>,
    pub prefix_cache_retention_interval: Option<usize>,
    pub kv_cache_dtype_skip_layers: Option<Vec<String>>,
    pub mamba_page_size_padded: Option<usize>,
    pub skip_page_size_padded: Option<usize>,
    pub mamba_block_size: Option<usize>,
    pub mamba_cache_dtype: Option<String>,
    pub mamba_ssm_cache_dtype: Option<String>,
    pub mamba_cache_mode: Option<String>,
    pub enable_mamba_shared_prefix_checkpoint: Option<bool>,
    pub replayssm_buffer_len: Option<usize>,
    pub use_replayssm: Option<bool>,
    pub use_kda_recoverssm: Option<bool>,
    pub num_cpu_blocks: Option<usize>,
    pub simple_cpu_offload_num_blocks: Option<usize>,
    pub effective_attention_block_size: Option<usize>,
    /// KV cache capacity in tokens.
    pub kv_cache_size_tokens: Option<usize>,
    /// How many `max_model_len` requests fit in the KV cache at once.
    pub kv_cache_max_concurrency: Option<f64>,
    pub hash_block_size: Option<usize>,
    pub cache_hit_alignment_tokens: Option<usize>,
    pub kv_sharing_fast_prefill: Option<bool>,
    pub swa_bounded_replay: Option<bool>,
    pub kv_cache_memory_bytes: Option<u64>,
    pub enable_extensible_kv_cache: Option<bool>,
    /// GiB.
    pub kv_offloading_size: Option<f64>,
    pub kv_offloading_backend: Option<String>,
}

impl CacheConfigInfo {
    /// The always-known fields; everything else `None`.
    pub fn new(
        block_size: usize,
        num_gpu_blocks: usize,
        enable_prefix_caching: bool,
        cache_dtype: impl Into<String>,
        gpu_memory_utilization: f64,
    ) -> Self {
        Self {
            block_size,
            num_gpu_blocks,
            enable_prefix_caching,
            cache_dtype: cache_dtype.into(),
            gpu_memory_utilization,
            ..Self::default()
        }
    }

    /// `(label, value)` for every `CacheConfig` attribute vLLM 0.34.0 exposes, in its
    /// declaration order (the exposition sorts them anyway).
    pub(crate) fn labels(&self) -> Vec<(&'static str, String)> {
        fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> String) -> String {
            v.as_ref().map_or_else(|| "None".to_string(), f)
        }
        let s = |v: &Option<String>| opt(v, Clone::clone);
        let n = |v: &Option<usize>| opt(v, ToString::to_string);
        let b = |v: &Option<bool>| opt(v, |x| py_bool(*x));
        let f = |v: &Option<f64>| opt(v, |x| py_float(*x));
        vec![
            ("block_size", self.block_size.to_string()),
            (
                "user_specified_block_size",
                b(&self.user_specified_block_size),
            ),
            ("kv_cache_layout", s(&self.kv_cache_layout)),
            ("prefix_match_unit", n(&self.prefix_match_unit)),
            (
                "gpu_memory_utilization",
                py_float(self.gpu_memory_utilization),
            ),
            ("cache_dtype", self.cache_dtype.clone()),
            ("is_attention_free", b(&self.is_attention_free)),
            ("num_gpu_blocks_override", n(&self.num_gpu_blocks_override)),
            ("sliding_window", n(&self.sliding_window)),
            ("enable_prefix_caching", py_bool(self.enable_prefix_caching)),
            (
                "prefix_caching_hash_algo",
                s(&self.prefix_caching_hash_algo),
            ),
            (
                "prefix_cache_retention_interval",
                n(&self.prefix_cache_retention_interval),
            ),
            (
                "kv_cache_dtype_skip_layers",
                opt(&self.kv_cache_dtype_skip_layers, |v| py_str_list(v)),
            ),
            ("mamba_page_size_padded", n(&self.mamba_page_size_padded)),
            ("skip_page_size_padded", n(&self.skip_page_size_padded)),
            ("mamba_block_size", n(&self.mamba_block_size)),
            ("mamba_cache_dtype", s(&self.mamba_cache_dtype)),
            ("mamba_ssm_cache_dtype", s(&self.mamba_ssm_cache_dtype)),
            ("mamba_cache_mode", s(&self.mamba_cache_mode)),
            (
                "enable_mamba_shared_prefix_checkpoint",
                b(&self.enable_mamba_shared_prefix_checkpoint),
            ),
            ("replayssm_buffer_len", n(&self.replayssm_buffer_len)),
            ("use_replayssm", b(&self.use_replayssm)),
            ("use_kda_recoverssm", b(&self.use_kda_recoverssm)),
            ("num_gpu_blocks", self.num_gpu_blocks.to_string()),
            ("num_cpu_blocks", n(&self.num_cpu_blocks)),
            (
                "simple_cpu_offload_num_blocks",
                n(&self.simple_cpu_offload_num_blocks),
            ),
            (
                "effective_attention_block_size",
                n(&self.effective_attention_block_size),
            ),
            ("kv_cache_size_tokens", n(&self.kv_cache_size_tokens)),
            (
                "kv_cache_max_concurrency",
                f(&self.kv_cache_max_concurrency),
            ),
            ("hash_block_size", n(&self.hash_block_size)),
            (
                "cache_hit_alignment_tokens",
                n(&self.cache_hit_alignment_tokens),
            ),
            ("kv_sharing_fast_prefill", b(&self.kv_sharing_fast_prefill)),
            ("swa_bounded_replay", b(&self.swa_bounded_replay)),
            (
                "kv_cache_memory_bytes",
                opt(&self.kv_cache_memory_bytes, ToString::to_string),
            ),
            (
                "enable_extensible_kv_cache",
                b(&self.enable_extensible_kv_cache),
            ),
            ("kv_offloading_size", f(&self.kv_offloading_size)),
            ("kv_offloading_backend", s(&self.kv_offloading_backend)),
            // Guards of vLLM's config validators, both True once a served VllmConfig is
            // built; they leak into vLLM's labels, so they are part of the label set.
            ("_block_size_resolved", py_bool(true)),
            ("_extensible_kv_cache_resolved", py_bool(true)),
        ]
    }
}
