//! GLM-4.5 / GLM-4.5-Air (`Glm4MoeForCausalLM`): partial rotary (half of each head), q/k/v
//! biases, optional q/k norm; the first `first_k_dense_replace` layers dense, the rest routed by
//! a sigmoid router with a score-correction bias and group-limited top-k (DeepSeek-V3's
//! `noaux_tc`), scaled by `routed_scaling_factor`, plus always-on shared experts.

use super::{ArchEntry, check_moe, fields, one};
use crate::config::{ModelConfig, MoeConfig};
use anyhow::{Result, bail};
use ferrum_backend::Routing;
use serde::Deserialize;
use serde_json::Value;

pub const ENTRY: ArchEntry = ArchEntry {
    name: "glm4_moe",
    hf: "Glm4MoeForCausalLM",
    gguf: None,
    from_hf,
};

/// The fields GLM-4.5 adds to the shared ones (transformers' defaults).
#[derive(Deserialize)]
struct Glm4MoeFields {
    n_routed_experts: usize,
    num_experts_per_tok: usize,
    moe_intermediate_size: usize,
    #[serde(default = "one")]
    n_shared_experts: usize,
    #[serde(default = "one")]
    first_k_dense_replace: usize,
    #[serde(default = "one")]
    n_group: usize,
    #[serde(default = "one")]
    topk_group: usize,
    #[serde(default = "one_f")]
    routed_scaling_factor: f32,
    #[serde(default = "yes")]
    norm_topk_prob: bool,
    #[serde(default)]
    use_qk_norm: bool,
    partial_rotary_factor: Option<f64>,
}

fn one_f() -> f32 {
    1.0
}
fn yes() -> bool {
    true
}

fn from_hf(v: &Value) -> Result<ModelConfig> {
    let mut c = ModelConfig::dense_from_hf(v, "glm4_moe")?;
    let f: Glm4MoeFields = fields(v, "Glm4MoeForCausalLM")?;
    check_moe(
        f.n_routed_experts,
        f.num_experts_per_tok,
        f.moe_intermediate_size,
        [
            "n_routed_experts",
            "num_experts_per_tok",
            "moe_intermediate_size",
        ],
    )?;
    if f.n_group == 0 || !f.n_routed_experts.is_multiple_of(f.n_group) {
        bail!(
            "config.json: `n_routed_experts` ({}) must split into `n_group` ({}) equal groups",
            f.n_routed_experts,
            f.n_group
        );
    }
    if f.topk_group == 0 || f.topk_group > f.n_group {
        bail!(
            "config.json: `topk_group` ({}) must be between 1 and `n_group` ({})",
            f.topk_group,
            f.n_group
        );
    }
    if f.num_experts_per_tok > f.topk_group * (f.n_routed_experts / f.n_group) {
        bail!(
            "config.json: `num_experts_per_tok` ({}) exceeds the experts in `topk_group` ({}) groups",
            f.num_experts_per_tok,
            f.topk_group
        );
    }
    // transformers 5 keeps it in rope_parameters; older configs at the top level
    let factor = f
        .partial_rotary_factor
        .or_else(|| v["rope_parameters"]["partial_rotary_factor"].as_f64())
        .unwrap_or(0.5);
    let rotary_dim = (c.head_dim as f64 * factor) as usize;
    if !(factor > 0.0 && factor <= 1.0) || rotary_dim < 2 || !rotary_dim.is_multiple_of(2) {
        bail!(
            "config.json: `partial_rotary_factor` {factor} gives a rotary dimension of {rotary_dim} for heads of {}; it must be even and positive",
            c.head_dim
        );
    }
    c.rotary_dim = rotary_dim;
    c.qk_norm = f.use_qk_norm;
    c.moe = Some(MoeConfig {
        n_experts: f.n_routed_experts,
        top_k: f.num_experts_per_tok,
        inter: f.moe_intermediate_size,
        routing: Routing::SigmoidGroupLimited {
            n_group: f.n_group,
            topk_group: f.topk_group,
            norm_topk_prob: f.norm_topk_prob,
            routed_scaling_factor: f.routed_scaling_factor,
        },
        n_shared: f.n_shared_experts,
        correction_bias: true,
        sparse_layers: (0..c.num_layers)
            .map(|l| l >= f.first_k_dense_replace)
            .collect(),
    });
    Ok(c)
}
