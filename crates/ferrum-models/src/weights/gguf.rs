//! GGUF tensors under Hugging Face names, as stored (block-quantized rows stay packed); the
//! experts of a layer are slices of llama.cpp's 3-D `ffn_*_exps` tensors.

use super::{WeightSource, check_shape};
use anyhow::{Context, Result, bail};
use ferrum_backend::{HostDtype, HostTensor};
use ferrum_gguf::GgufFile;
use std::borrow::Cow;

pub struct GgufSource<'a> {
    pub file: &'a GgufFile,
}

/// `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`, and the global tensors.
pub fn gguf_name(hf: &str) -> Option<String> {
    let global = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(g) = global {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, kind) = rest.rsplit_once('.')?;
    let m = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "mlp.gate" => "ffn_gate_inp",
        _ => return None,
    };
    Some(format!("blk.{layer}.{m}.{kind}"))
}

/// `model.layers.3.mlp.experts.7.up_proj.weight` → (`blk.3.ffn_up_exps.weight`, 7): llama.cpp
/// stacks the experts of a layer into one 3-D tensor.
fn gguf_expert(hf: &str) -> Option<(String, usize)> {
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once(".mlp.experts.")?;
    let (expert, proj) = rest.split_once('.')?;
    let m = match proj {
        "gate_proj.weight" => "ffn_gate_exps",
        "up_proj.weight" => "ffn_up_exps",
        "down_proj.weight" => "ffn_down_exps",
        _ => return None,
    };
    Some((format!("blk.{layer}.{m}.weight"), expert.parse().ok()?))
}

impl WeightSource for GgufSource<'_> {
    fn tensor(&self, name: &str, shape: &[usize], dry: bool) -> Result<HostTensor<'_>> {
        let (g, expert) = match gguf_expert(name) {
            Some((g, e)) => (g, Some(e)),
            None => (
                gguf_name(name).with_context(|| format!("no GGUF name for weight `{name}`"))?,
                None,
            ),
        };
        let t = self
            .file
            .tensor(&g)
            .with_context(|| format!("GGUF file lacks tensor `{g}` (for `{name}`)"))?;
        // GGUF dims run fastest-first: the reverse of the row-major shape.
        let got: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let dtype = HostDtype::Gguf(t.ggml_type);
        let all = if dry {
            &[][..]
        } else {
            self.file.tensor_bytes(t)?
        };
        let bytes = match expert {
            None => {
                check_shape(&g, shape, &got)?;
                all
            }
            Some(e) => {
                let n = got.first().copied().unwrap_or(0);
                let mut want = vec![n];
                want.extend_from_slice(shape);
                check_shape(&g, &want, &got)?;
                if e >= n {
                    bail!("`{name}`: expert {e} is beyond the {n} experts of GGUF tensor `{g}`");
                }
                if dry {
                    all
                } else {
                    let per = all.len() / n;
                    &all[e * per..(e + 1) * per]
                }
            }
        };
        Ok(HostTensor {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            bytes: Cow::Borrowed(bytes),
        })
    }

    fn contains(&self, name: &str) -> bool {
        let g = gguf_expert(name)
            .map(|(g, _)| g)
            .or_else(|| gguf_name(name));
        g.is_some_and(|g| self.file.tensor(&g).is_some())
    }
}
