//! Qwen3 (dense): Llama with an RMSNorm over each head of q and k before rotary.

use super::ArchEntry;
use crate::config::ModelConfig;

pub const ENTRY: ArchEntry = ArchEntry {
    name: "qwen3",
    hf: "Qwen3ForCausalLM",
    from_hf: |v| {
        let mut c = ModelConfig::dense_from_hf(v, "qwen3")?;
        c.qk_norm = true;
        Ok(c)
    },
    gguf: Some(("qwen3", |g| {
        let mut c = ModelConfig::dense_from_gguf(g, "qwen3", "qwen3")?;
        c.qk_norm = true;
        Ok(c)
    })),
};
