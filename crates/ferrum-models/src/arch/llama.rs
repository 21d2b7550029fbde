//! Llama (Llama-3.x, SmolLM2): the plain pre-norm decoder with grouped-query attention.

use super::ArchEntry;
use crate::config::ModelConfig;
use ferrum_backend::cpu::RopeStyle;

pub const ENTRY: ArchEntry = ArchEntry {
    name: "llama",
    hf: "LlamaForCausalLM",
    from_hf: |v| ModelConfig::dense_from_hf(v, "llama"),
    // llama.cpp's converter permutes Llama's q/k rows for its adjacent-pair rotary
    gguf: Some(("llama", |g| {
        let mut c = ModelConfig::dense_from_gguf(g, "llama", "llama")?;
        c.rope_style = RopeStyle::Interleaved;
        Ok(c)
    })),
};
