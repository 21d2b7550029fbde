//! Qwen2 / Qwen2.5: Llama with biases on the q/k/v projections.

use super::ArchEntry;
use crate::config::ModelConfig;

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen2",
    hf: "Qwen2ForCausalLM",
    from_hf: |v| {
        let mut c = ModelConfig::dense_from_hf(v, "qwen2")?;
        c.qkv_bias = true;
        Ok(c)
    },
    gguf: Some(("qwen2", |g| {
        ModelConfig::dense_from_gguf(g, "qwen2", "qwen2")
    })),
};
