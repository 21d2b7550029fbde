//! Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (q/k norm), and routed experts
//! chosen by a softmax router, top-k, renormalized when `norm_topk_prob`.

use super::{ArchEntry, check_moe, fields, one};
use crate::config::{ModelConfig, MoeConfig};
use anyhow::{Context, Result};
use ferrum_backend::Routing;
use ferrum_gguf::GgufFile;
use serde::Deserialize;
use serde_json::Value;

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen3_moe",
    hf: "Qwen3MoeForCausalLM",
    gguf: Some(("qwen3moe", from_gguf)),
    from_hf,
};

/// The fields Qwen3-MoE adds to the shared ones (transformers' defaults).
#[derive(Deserialize)]
struct Qwen3MoeFields {
    num_experts: usize,
    num_experts_per_tok: usize,
    moe_intermediate_size: usize,
    #[serde(default)]
    norm_topk_prob: bool,
    #[serde(default = "one")]
    decoder_sparse_step: usize,
    #[serde(default)]
    mlp_only_layers: Option<Vec<usize>>,
}

const KEYS: [&str; 3] = [
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
];

fn from_hf(v: &Value) -> Result<ModelConfig> {
    let mut c = ModelConfig::dense_from_hf(v, "qwen3_moe")?;
    let f: Qwen3MoeFields = fields(v, "Qwen3MoeForCausalLM")?;
    check_moe(
        f.num_experts,
        f.num_experts_per_tok,
        f.moe_intermediate_size,
        KEYS,
    )?;
    if f.decoder_sparse_step == 0 {
        anyhow::bail!("config.json: `decoder_sparse_step` is 0; it must be at least 1");
    }
    let dense = f.mlp_only_layers.unwrap_or_default();
    c.qk_norm = true;
    c.moe = Some(MoeConfig {
        n_experts: f.num_experts,
        top_k: f.num_experts_per_tok,
        inter: f.moe_intermediate_size,
        routing: Routing::Softmax {
            norm_topk_prob: f.norm_topk_prob,
        },
        n_shared: 0,
        correction_bias: false,
        // transformers: MoE unless listed in mlp_only_layers, on every decoder_sparse_step-th layer
        sparse_layers: (0..c.num_layers)
            .map(|l| !dense.contains(&l) && (l + 1).is_multiple_of(f.decoder_sparse_step))
            .collect(),
    });
    Ok(c)
}

/// llama.cpp's `qwen3moe`: every layer routed, weights always renormalized.
fn from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let mut c = ModelConfig::dense_from_gguf(g, "qwen3moe", "qwen3_moe")?;
    let get = |k: &str| {
        g.get_u64(&format!("qwen3moe.{k}"))
            .map(|x| x as usize)
            .with_context(|| format!("GGUF metadata lacks `qwen3moe.{k}`"))
    };
    let (n, k, inter) = (
        get("expert_count")?,
        get("expert_used_count")?,
        get("expert_feed_forward_length")?,
    );
    check_moe(
        n,
        k,
        inter,
        [
            "qwen3moe.expert_count",
            "qwen3moe.expert_used_count",
            "qwen3moe.expert_feed_forward_length",
        ],
    )
    .map_err(|e| anyhow::anyhow!("{}", e.to_string().replace("config.json", "GGUF metadata")))?;
    c.qk_norm = true;
    c.moe = Some(MoeConfig {
        n_experts: n,
        top_k: k,
        inter,
        routing: Routing::Softmax {
            norm_topk_prob: true,
        },
        n_shared: 0,
        correction_bias: false,
        sparse_layers: vec![true; c.num_layers],
    });
    Ok(c)
}
