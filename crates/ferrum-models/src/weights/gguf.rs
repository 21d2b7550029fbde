//! GGUF tensors under Hugging Face names, dequantized to f32 on load.

use super::{WeightSource, check_shape};
use anyhow::{Context, Result};
use ferrum_backend::cpu::Weight;
use ferrum_gguf::{GgmlType, GgufFile, TensorInfo};
use std::sync::Arc;

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
        _ => return None,
    };
    Some(format!("blk.{layer}.{m}.{kind}"))
}

impl GgufSource<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<&TensorInfo> {
        let g = gguf_name(name).with_context(|| format!("no GGUF name for weight `{name}`"))?;
        let t = self
            .file
            .tensor(&g)
            .with_context(|| format!("GGUF file lacks tensor `{g}` (for `{name}`)"))?;
        // GGUF dims run fastest-first: the reverse of the row-major shape.
        let got: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        check_shape(&g, shape, &got)?;
        Ok(t)
    }
}

impl WeightSource for GgufSource<'_> {
    fn load(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(self.file.dequantize(self.tensor(name, shape)?)?)
    }

    /// Block-quantized matrices stay packed and are decoded row by row in the matmul.
    fn load_matrix(&self, name: &str, rows: usize, k: usize) -> Result<Weight> {
        let t = self.tensor(name, &[rows, k])?;
        let ty = t.ggml_type;
        if ty == GgmlType::BF16 {
            let v = self
                .file
                .tensor_bytes(t)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok(Weight::bf16(rows, k, v));
        }
        if matches!(ty, GgmlType::F32 | GgmlType::F16) || !ty.can_dequantize() {
            return Ok(Weight::f32(rows, k, self.file.dequantize(t)?));
        }
        let bytes = self.file.tensor_bytes(t)?.to_vec();
        match ty {
            GgmlType::Q4_1 => return Ok(Weight::q4_1(rows, k, bytes)),
            GgmlType::Q8_0 => return Ok(Weight::q8_0(rows, k, bytes)),
            _ => {}
        }
        let decode = Arc::new(move |src: &[u8], dst: &mut [f32]| {
            ferrum_gguf::dequantize(ty, src, dst).expect("row sizes were checked at load")
        });
        Ok(Weight::packed(rows, k, bytes, decode))
    }

    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.file.tensor(&g).is_some())
    }
}
