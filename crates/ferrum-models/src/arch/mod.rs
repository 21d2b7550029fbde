//! The architecture registry: one file per architecture turns its `config.json` (and, where
//! llama.cpp defines one, its GGUF metadata) into a validated [`ModelConfig`]. The forward is
//! shared (`model.rs` over `layers/`); an architecture only says which components, with which
//! options, at which layers. Adding one = a new file here + a line in [`REGISTRY`].

mod glm4_moe;
mod llama;
mod qwen2;
mod qwen3;
mod qwen3_moe;

use crate::config::ModelConfig;
use anyhow::{Context, Result, anyhow, bail};
use ferrum_gguf::GgufFile;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Reads an architecture's GGUF metadata.
pub type FromGguf = fn(&GgufFile) -> Result<ModelConfig>;

pub struct ArchEntry {
    /// The name ferrum reports (`ModelConfig::arch`).
    pub name: &'static str,
    /// `architectures[0]` in a Hugging Face config.json.
    pub hf: &'static str,
    /// `general.architecture` in GGUF files and how to read its metadata, where llama.cpp has
    /// the architecture.
    pub gguf: Option<(&'static str, FromGguf)>,
    pub from_hf: fn(&Value) -> Result<ModelConfig>,
}

pub const REGISTRY: &[ArchEntry] = &[
    llama::ENTRY,
    qwen2::ENTRY,
    qwen3::ENTRY,
    qwen3_moe::ENTRY,
    glm4_moe::ENTRY,
];

pub fn supported_hf() -> String {
    REGISTRY.iter().map(|a| a.hf).collect::<Vec<_>>().join(", ")
}

pub fn supported_gguf() -> String {
    REGISTRY
        .iter()
        .filter_map(|a| a.gguf.map(|g| g.0))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn from_hf(v: &Value) -> Result<ModelConfig> {
    let name = v["architectures"]
        .get(0)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("config.json has no `architectures` list"))?;
    let Some(entry) = REGISTRY.iter().find(|a| a.hf == name) else {
        bail!(
            "unsupported architecture `{name}`; supported: {}",
            supported_hf()
        );
    };
    let mut cfg = (entry.from_hf)(v)?;
    cfg.fp8_block = quantization(v)?;
    Ok(cfg)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelConfig> {
    let a = g
        .architecture()
        .ok_or_else(|| anyhow!("GGUF file has no `general.architecture`"))?;
    match REGISTRY.iter().filter_map(|e| e.gguf).find(|e| e.0 == a) {
        Some((_, from_gguf)) => from_gguf(g),
        None => bail!(
            "unsupported GGUF architecture `{a}`; supported: {}",
            supported_gguf()
        ),
    }
}

/// An architecture's own config.json fields (serde: a missing or mistyped field is named).
fn fields<T: DeserializeOwned>(v: &Value, arch: &str) -> Result<T> {
    serde_json::from_value(v.clone()).with_context(|| format!("config.json ({arch})"))
}

/// `quantization_config`: block-FP8 (`quant_method: fp8` with `weight_block_size`) is read; any
/// other method is refused by name rather than loaded as if it were float.
fn quantization(v: &Value) -> Result<Option<(usize, usize)>> {
    let q = match &v["quantization_config"] {
        Value::Null => return Ok(None),
        q => q,
    };
    let method = q["quant_method"].as_str().unwrap_or("(none)");
    if method != "fp8" {
        bail!(
            "config.json: quantization method `{method}` is not supported yet (supported: fp8 with weight_block_size)"
        );
    }
    if let Some(fmt) = q["fmt"].as_str()
        && fmt != "e4m3"
    {
        bail!("config.json: fp8 format `{fmt}` is not supported (supported: e4m3)");
    }
    let b = q["weight_block_size"]
        .as_array()
        .filter(|b| b.len() == 2)
        .and_then(|b| Some((b[0].as_u64()? as usize, b[1].as_u64()? as usize)))
        .filter(|&(r, c)| r > 0 && c > 0)
        .ok_or_else(|| {
            anyhow!(
                "config.json: fp8 `quantization_config` needs `weight_block_size` [rows, cols] (per-tensor fp8 is not supported yet)"
            )
        })?;
    Ok(Some(b))
}

/// serde defaults shared by the architectures' own config structs.
fn one() -> usize {
    1
}

/// Routed-expert counts every MoE architecture must satisfy.
fn check_moe(n_experts: usize, top_k: usize, inter: usize, keys: [&str; 3]) -> Result<()> {
    for (k, v) in keys.iter().zip([n_experts, top_k, inter]) {
        if v == 0 {
            bail!("config.json: `{k}` is 0; it must be at least 1");
        }
    }
    if top_k > n_experts {
        bail!(
            "config.json: `{}` ({top_k}) exceeds `{}` ({n_experts})",
            keys[1],
            keys[0]
        );
    }
    Ok(())
}
