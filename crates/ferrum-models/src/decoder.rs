//! The decoder-only transformer shared by Llama (Llama-3, SmolLM2), Qwen2 (q/k/v bias) and Qwen3
//! (q/k RMSNorm): pre-norm attention with grouped-query heads and rotary positions, then a SwiGLU
//! MLP, each added to the residual stream.

use crate::batch::ForwardBatch;
use crate::config::ModelConfig;
use crate::kv_cache::KvCache;
use crate::weights::WeightSource;
use anyhow::{Result, bail};
use ferrum_backend::cpu::{
    AttnSeq, AttnShape, Rope, Weight, add_inplace, matmul_t, paged_attention, rms_norm_rows,
    rms_norm_rows_inplace, silu_mul, write_kv,
};

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v projections stacked: (q_dim + 2·kv_dim) × hidden.
    wqkv: Weight,
    bqkv: Option<Vec<f32>>,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    wo: Weight,
    ffn_norm: Vec<f32>,
    /// gate and up projections stacked: 2·intermediate × hidden.
    w_gate_up: Weight,
    w_down: Weight,
}

pub struct Decoder {
    pub cfg: ModelConfig,
    rope: Rope,
    embed: Weight,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None` when tied to the embedding.
    lm_head: Option<Weight>,
}

/// Tensors the loader reads, for progress reporting.
pub fn tensor_count(cfg: &ModelConfig) -> usize {
    let per_layer = 9 + 3 * cfg.qkv_bias as usize + 2 * cfg.qk_norm as usize;
    2 + (!cfg.tie_word_embeddings) as usize + cfg.num_layers * per_layer
}

impl Decoder {
    pub fn load(
        cfg: ModelConfig,
        src: &dyn WeightSource,
        on_tensor: &dyn Fn(&str),
    ) -> Result<Decoder> {
        let (h, q, kv, i) = (
            cfg.hidden_size,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.intermediate_size,
        );
        let get = |name: &str, shape: &[usize]| {
            on_tensor(name);
            src.load(name, shape)
        };
        let mat = |name: &str, rows: usize, k: usize| {
            on_tensor(name);
            src.load_matrix(name, rows, k)
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            let wqkv = mat(&format!("{p}.self_attn.q_proj.weight"), q, h)?
                .stack(mat(&format!("{p}.self_attn.k_proj.weight"), kv, h)?)
                .stack(mat(&format!("{p}.self_attn.v_proj.weight"), kv, h)?);
            let bqkv = if cfg.qkv_bias {
                let mut b = get(&format!("{p}.self_attn.q_proj.bias"), &[q])?;
                b.extend(get(&format!("{p}.self_attn.k_proj.bias"), &[kv])?);
                b.extend(get(&format!("{p}.self_attn.v_proj.bias"), &[kv])?);
                Some(b)
            } else {
                None
            };
            let (q_norm, k_norm) = if cfg.qk_norm {
                let d = cfg.head_dim;
                (
                    Some(get(&format!("{p}.self_attn.q_norm.weight"), &[d])?),
                    Some(get(&format!("{p}.self_attn.k_norm.weight"), &[d])?),
                )
            } else {
                (None, None)
            };
            let w_gate_up = mat(&format!("{p}.mlp.gate_proj.weight"), i, h)?.stack(mat(
                &format!("{p}.mlp.up_proj.weight"),
                i,
                h,
            )?);
            layers.push(Layer {
                attn_norm: get(&format!("{p}.input_layernorm.weight"), &[h])?,
                wqkv,
                bqkv,
                q_norm,
                k_norm,
                wo: mat(&format!("{p}.self_attn.o_proj.weight"), h, q)?,
                ffn_norm: get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                w_gate_up,
                w_down: mat(&format!("{p}.mlp.down_proj.weight"), h, i)?,
            });
        }
        let embed = mat("model.embed_tokens.weight", cfg.vocab_size, h)?;
        let norm = get("model.norm.weight", &[h])?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(mat("lm_head.weight", cfg.vocab_size, h)?)
        };
        let rope = Rope::new(
            cfg.head_dim,
            cfg.head_dim,
            cfg.rope_theta,
            &cfg.rope_scaling,
            cfg.rope_style,
        );
        Ok(Decoder {
            cfg,
            rope,
            embed,
            layers,
            norm,
            lm_head,
        })
    }

    /// Bytes the weights occupy in memory as stored (packed, bf16 or f32).
    pub fn weight_bytes(&self) -> usize {
        let vec_bytes = |v: &[f32]| v.len() * 4;
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.wqkv.nbytes()
                    + l.wo.nbytes()
                    + l.w_gate_up.nbytes()
                    + l.w_down.nbytes()
                    + vec_bytes(&l.attn_norm)
                    + vec_bytes(&l.ffn_norm)
                    + l.bqkv.as_deref().map_or(0, vec_bytes)
                    + l.q_norm.as_deref().map_or(0, vec_bytes)
                    + l.k_norm.as_deref().map_or(0, vec_bytes)
            })
            .sum();
        layers
            + self.embed.nbytes()
            + vec_bytes(&self.norm)
            + self.lm_head.as_ref().map_or(0, Weight::nbytes)
    }

    /// Runs the batch, writing its K/V into `kv`, and returns `logits_rows.len() × vocab` logits.
    pub fn forward(&self, batch: &ForwardBatch, kv: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let t = batch.tokens.len();
        let positions = batch.positions();
        let slots = batch.slots(kv.block_size)?;
        let mut x = vec![0f32; t * h];
        let mut buf = vec![0f32; h];
        for (row, &tok) in x.chunks_mut(h).zip(&batch.tokens) {
            if tok as usize >= c.vocab_size {
                bail!(
                    "token id {tok} is out of range for a vocabulary of {}",
                    c.vocab_size
                );
            }
            row.copy_from_slice(self.embed.row(tok as usize, &mut buf));
        }
        let attn_seqs: Vec<AttnSeq> = batch
            .seqs
            .iter()
            .map(|s| AttnSeq {
                q_start: s.q_start,
                q_len: s.q_len,
                ctx_len: s.ctx_len,
                block_table: s.block_table,
            })
            .collect();
        let shape = AttnShape {
            n_heads: c.num_heads,
            n_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            block_size: kv.block_size,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let (mut normed, mut qkv) = (vec![0f32; t * h], vec![0f32; t * (qd + 2 * kvd)]);
        let (mut q, mut k, mut v) = (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        let (mut attn, mut proj) = (vec![0f32; t * qd], vec![0f32; t * h]);
        let (mut gate_up, mut act) = (vec![0f32; t * 2 * inter], vec![0f32; t * inter]);
        for (layer, cache) in self.layers.iter().zip(kv.layers.iter_mut()) {
            // attention block
            rms_norm_rows(&x, &layer.attn_norm, c.rms_norm_eps, &mut normed);
            matmul_t(&normed, t, &layer.wqkv, &mut qkv);
            for (r, row) in qkv.chunks(qd + 2 * kvd).enumerate() {
                let (rq, rest) = row.split_at(qd);
                let (rk, rv) = rest.split_at(kvd);
                q[r * qd..][..qd].copy_from_slice(rq);
                k[r * kvd..][..kvd].copy_from_slice(rk);
                v[r * kvd..][..kvd].copy_from_slice(rv);
                if let Some(b) = &layer.bqkv {
                    add_inplace(&mut q[r * qd..][..qd], &b[..qd]);
                    add_inplace(&mut k[r * kvd..][..kvd], &b[qd..qd + kvd]);
                    add_inplace(&mut v[r * kvd..][..kvd], &b[qd + kvd..]);
                }
            }
            if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                rms_norm_rows_inplace(&mut q, qn, c.rms_norm_eps);
                rms_norm_rows_inplace(&mut k, kn, c.rms_norm_eps);
            }
            self.rope.apply(&mut q, c.num_heads, &positions);
            self.rope.apply(&mut k, c.num_kv_heads, &positions);
            write_kv(&mut cache.k, &mut cache.v, &k, &v, &slots, kvd);
            paged_attention(&q, &cache.k, &cache.v, &attn_seqs, &shape, &mut attn);
            matmul_t(&attn, t, &layer.wo, &mut proj);
            add_inplace(&mut x, &proj);
            // MLP block
            rms_norm_rows(&x, &layer.ffn_norm, c.rms_norm_eps, &mut normed);
            matmul_t(&normed, t, &layer.w_gate_up, &mut gate_up);
            silu_mul(&gate_up, inter, &mut act);
            matmul_t(&act, t, &layer.w_down, &mut proj);
            add_inplace(&mut x, &proj);
        }
        let rows = batch.logits_rows.len();
        let mut last = Vec::with_capacity(rows * h);
        for &r in &batch.logits_rows {
            last.extend_from_slice(&x[r * h..][..h]);
        }
        let mut last_normed = vec![0f32; rows * h];
        rms_norm_rows(&last, &self.norm, c.rms_norm_eps, &mut last_normed);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let mut logits = vec![0f32; rows * c.vocab_size];
        matmul_t(&last_normed, rows, head, &mut logits);
        Ok(logits)
    }
}
