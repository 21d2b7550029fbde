//! The model's shape and hyper-parameters, read from a Hugging Face `config.json` or from GGUF
//! metadata into one struct that the forward reads.

use anyhow::{Context, Result, anyhow, bail};
use ferrum_backend::cpu::{RopeScaling, RopeStyle};
use ferrum_backend::{MoeDims, Routing};
use ferrum_gguf::GgufFile;
use serde_json::Value;

/// A mixture-of-experts feed-forward: which layers have it, and how tokens are routed.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub n_experts: usize,
    pub top_k: usize,
    /// Each routed expert's intermediate size.
    pub inter: usize,
    pub routing: Routing,
    /// Always-on experts beside the routed ones, as one MLP of `n_shared × inter` (GLM-4.5).
    pub n_shared: usize,
    /// The router has an `e_score_correction_bias` (GLM-4.5).
    pub correction_bias: bool,
    /// Per layer: routed experts (true) or the dense MLP of `intermediate_size` (false).
    pub sparse_layers: Vec<bool>,
}

impl MoeConfig {
    /// The backend's view of one MoE block of a model `hidden` wide.
    pub fn dims(&self, hidden: usize) -> MoeDims {
        MoeDims {
            n_experts: self.n_experts,
            top_k: self.top_k,
            hidden,
            inter: self.inter,
            n_shared: self.n_shared,
            routing: self.routing,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// The architecture's registry name (`llama`, `qwen3_moe`, ...).
    pub arch: &'static str,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub rope_style: RopeStyle,
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (Qwen2).
    pub qkv_bias: bool,
    /// RMSNorm over each head of q and k before rotary (Qwen3).
    pub qk_norm: bool,
    pub max_position_embeddings: usize,
    /// Dimensions of each head that rotate (GLM-4.5: half); the rest pass through.
    pub rotary_dim: usize,
    pub moe: Option<MoeConfig>,
    /// Block-FP8 checkpoints: the `weight_block_size` of their `quantization_config`.
    pub fp8_block: Option<(usize, usize)>,
}

impl ModelConfig {
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// From a Hugging Face `config.json`, through the architecture registry.
    pub fn from_hf(v: &Value) -> Result<ModelConfig> {
        crate::arch::from_hf(v)
    }

    /// From GGUF metadata, through the architecture registry.
    pub fn from_gguf(g: &GgufFile) -> Result<ModelConfig> {
        crate::arch::from_gguf(g)
    }

    /// The fields every decoder shares, from a Hugging Face `config.json` (transformers 4
    /// `rope_theta`/`rope_scaling` or transformers 5 `rope_parameters`), validated. Each
    /// architecture's file adds its own fields.
    pub(crate) fn dense_from_hf(v: &Value, arch: &'static str) -> Result<ModelConfig> {
        // `null` counts as absent (transformers writes `"head_dim": null`); any other non-integer
        // is an error rather than a silent fallback to the default.
        let opt = |k: &str| -> Result<Option<usize>> {
            match &v[k] {
                Value::Null => Ok(None),
                x => x.as_u64().map(|x| Some(x as usize)).with_context(|| {
                    format!("config.json: `{k}` must be a non-negative integer, got {x}")
                }),
            }
        };
        let req = |k: &str| -> Result<usize> {
            opt(k)?.with_context(|| format!("config.json: missing integer `{k}`"))
        };
        let hidden_size = req("hidden_size")?;
        let num_heads = req("num_attention_heads")?;
        let explicit_head_dim = opt("head_dim")?;
        // 0 when num_heads is 0: `check` below refuses that before anything divides by it
        let head_dim = explicit_head_dim.unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let rope = v
            .get("rope_parameters")
            .filter(|r| r.is_object())
            .or(v.get("rope_scaling").filter(|r| r.is_object()));
        let rope_theta = v["rope_theta"]
            .as_f64()
            .or_else(|| rope.and_then(|r| r["rope_theta"].as_f64()))
            .unwrap_or(10000.0);
        let rope_scaling = match rope.and_then(|r| r["rope_type"].as_str().or(r["type"].as_str())) {
            None | Some("default") => RopeScaling::None,
            Some("llama3") => {
                let r = rope.unwrap();
                let f = |k: &str| {
                    r[k].as_f64()
                        .with_context(|| format!("config.json: llama3 rope scaling lacks `{k}`"))
                };
                RopeScaling::Llama3 {
                    factor: f("factor")?,
                    low_freq_factor: f("low_freq_factor")?,
                    high_freq_factor: f("high_freq_factor")?,
                    original_max_position_embeddings: f("original_max_position_embeddings")?,
                }
            }
            Some(other) => {
                bail!("unsupported rope scaling type `{other}` (supported: default, llama3)")
            }
        };
        if v["use_sliding_window"].as_bool() == Some(true) {
            bail!("sliding-window attention (`use_sliding_window: true`) is not supported yet");
        }
        let cfg = ModelConfig {
            arch,
            hidden_size,
            intermediate_size: req("intermediate_size")?,
            num_layers: req("num_hidden_layers")?,
            num_heads,
            num_kv_heads: opt("num_key_value_heads")?.unwrap_or(num_heads),
            head_dim,
            vocab_size: req("vocab_size")?,
            rms_norm_eps: v["rms_norm_eps"].as_f64().unwrap_or(1e-6) as f32,
            rope_theta,
            rope_scaling,
            rope_style: RopeStyle::Neox,
            tie_word_embeddings: v["tie_word_embeddings"].as_bool().unwrap_or(false),
            qkv_bias: v["attention_bias"].as_bool() == Some(true),
            qk_norm: false,
            max_position_embeddings: v["max_position_embeddings"].as_u64().unwrap_or(4096) as usize,
            rotary_dim: head_dim,
            moe: None,
            fp8_block: None,
        };
        cfg.check("config.json", explicit_head_dim.is_some(), &|k| {
            k.to_string()
        })?;
        Ok(cfg)
    }

    /// The shared fields from GGUF metadata (`{a}.block_count`, ...), validated; `arch` is the
    /// registry name, `a` the GGUF architecture the keys are under.
    pub(crate) fn dense_from_gguf(
        g: &GgufFile,
        a: &str,
        arch: &'static str,
    ) -> Result<ModelConfig> {
        let key = |k: &str| format!("{a}.{k}");
        let req = |k: &str| -> Result<usize> {
            g.get_u64(&key(k))
                .map(|x| x as usize)
                .with_context(|| format!("GGUF metadata lacks `{}`", key(k)))
        };
        let hidden_size = req("embedding_length")?;
        let num_heads = req("attention.head_count")?;
        let explicit_head_dim = g.get_u64(&key("attention.key_length")).map(|x| x as usize);
        // 0 when num_heads is 0: `check` below refuses that before anything divides by it
        let head_dim = explicit_head_dim.unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| anyhow!("GGUF file lacks `token_embd.weight`"))?;
        // The vocabulary size may come from the embedding's shape, so check its rank first.
        if embd.dims.len() != 2 {
            bail!(
                "GGUF tensor `token_embd.weight` has rank {} (dims {:?}); expected rank 2 \
                 [hidden, vocab]",
                embd.dims.len(),
                embd.dims
            );
        }
        let vocab_size = g
            .get_u64(&key("vocab_size"))
            .map(|x| x as usize)
            .unwrap_or(embd.dims[1] as usize);
        let rope_scaling = match g.tensor("rope_freqs.weight") {
            Some(t) => RopeScaling::FreqFactors(g.dequantize(t)?),
            None => RopeScaling::None,
        };
        let cfg = ModelConfig {
            arch,
            hidden_size,
            intermediate_size: req("feed_forward_length")?,
            num_layers: req("block_count")?,
            num_heads,
            num_kv_heads: g
                .get_u64(&key("attention.head_count_kv"))
                .map(|x| x as usize)
                .unwrap_or(num_heads),
            head_dim,
            vocab_size,
            rms_norm_eps: g
                .get_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-6) as f32,
            rope_theta: g.get_f64(&key("rope.freq_base")).unwrap_or(10000.0),
            rope_scaling,
            rope_style: RopeStyle::Neox,
            tie_word_embeddings: g.tensor("output.weight").is_none(),
            qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
            qk_norm: g.tensor("blk.0.attn_q_norm.weight").is_some(),
            max_position_embeddings: g.get_u64(&key("context_length")).unwrap_or(4096) as usize,
            rotary_dim: head_dim,
            moe: None,
            fp8_block: None,
        };
        let gguf_key = |hf: &str| {
            let k = match hf {
                "hidden_size" => "embedding_length",
                "num_attention_heads" => "attention.head_count",
                "num_key_value_heads" => "attention.head_count_kv",
                "head_dim" => "attention.key_length",
                "num_hidden_layers" => "block_count",
                "intermediate_size" => "feed_forward_length",
                other => other, // vocab_size
            };
            key(k)
        };
        cfg.check("GGUF metadata", explicit_head_dim.is_some(), &gguf_key)?;
        // One factor per rotated pair: any other count would leave pairs unscaled or factors unused.
        if let RopeScaling::FreqFactors(f) = &cfg.rope_scaling
            && f.len() != cfg.head_dim / 2
        {
            bail!(
                "GGUF tensor `rope_freqs.weight` has {} values; expected head_dim / 2 = {}",
                f.len(),
                cfg.head_dim / 2
            );
        }
        Ok(cfg)
    }

    /// Refuses shapes the forward cannot run (it would divide by zero, index out of bounds or
    /// overflow), naming the offending keys as `source` spells them (`key` maps the Hugging Face
    /// name) and their values. `head_dim_given`: the source set head_dim rather than leaving it to
    /// be hidden_size / num_attention_heads.
    fn check(
        &self,
        source: &str,
        head_dim_given: bool,
        key: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("num_hidden_layers", self.num_layers),
            ("vocab_size", self.vocab_size),
            ("intermediate_size", self.intermediate_size),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("{source}: `{}` is 0; it must be at least 1", key(name));
            }
        }
        let (heads, kv_heads) = (key("num_attention_heads"), key("num_key_value_heads"));
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            bail!(
                "{source}: `{heads}` ({}) is not a multiple of `{kv_heads}` ({}); grouped-query \
                 attention shares each kv head among a whole number of query heads",
                self.num_heads,
                self.num_kv_heads
            );
        }
        if !head_dim_given && !self.hidden_size.is_multiple_of(self.num_heads) {
            bail!(
                "{source}: `{}` ({}) is not a multiple of `{heads}` ({}), and there is no `{}` \
                 to give the head size",
                key("hidden_size"),
                self.hidden_size,
                self.num_heads,
                key("head_dim")
            );
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            let what = if head_dim_given {
                format!("`{}`", key("head_dim"))
            } else {
                format!("the head size `{}` / `{heads}`", key("hidden_size"))
            };
            bail!(
                "{source}: {what} is {}; rotary embeddings need a positive, even head size",
                self.head_dim
            );
        }
        // Weight matrices are products of these sizes; their byte counts (f32, with q/k/v stacked
        // 3× at most and gate/up 2×) must not overflow.
        let matrices: [(&str, &[&str], usize); 3] = [
            (
                "q/k/v",
                &["num_attention_heads", "head_dim", "hidden_size"],
                3 * 4,
            ),
            ("embedding", &["vocab_size", "hidden_size"], 4),
            ("gate/up", &["intermediate_size", "hidden_size"], 2 * 4),
        ];
        for (matrix, dims, bytes) in matrices {
            let value = |k: &str| match k {
                "num_attention_heads" => self.num_heads,
                "head_dim" => self.head_dim,
                "hidden_size" => self.hidden_size,
                "vocab_size" => self.vocab_size,
                _ => self.intermediate_size,
            };
            if dims
                .iter()
                .try_fold(bytes, |n, k| n.checked_mul(value(k)))
                .is_none()
            {
                let named: Vec<String> = dims
                    .iter()
                    .map(|k| format!("`{}` ({})", key(k), value(k)))
                    .collect();
                bail!(
                    "{source}: the {matrix} weights ({}) are too large to address",
                    named.join(" × ")
                );
            }
        }
        Ok(())
    }
}
