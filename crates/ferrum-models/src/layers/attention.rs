//! Self-attention with grouped-query heads: stacked q/k/v projection (optional bias), optional
//! per-head q/k RMSNorm (Qwen3), rotary on the first `rotary_dim` of each head, paged K/V
//! write, varlen paged attention, output projection.

use crate::config::ModelConfig;
use crate::model::Workspace;
use crate::params::{ParamLoader, Split};
use anyhow::Result;
use ferrum_backend::{AttnDims, Backend, Weights};

pub struct Attention<W: Weights> {
    /// q, k and v projections stacked: (q_dim + 2·kv_dim) × hidden.
    qkv: W::Weight,
    qkv_bias: Option<W::Vector>,
    q_norm: Option<W::Vector>,
    k_norm: Option<W::Vector>,
    o: W::Weight,
    /// The checkpoint's FP8 KV-cache scales (`k_scale`, `v_scale`), when it has them.
    pub kv_scales: Option<(f32, f32)>,
}

impl<W: Weights> Attention<W> {
    pub fn load(l: &ParamLoader<W>, p: &str, c: &ModelConfig) -> Result<Self> {
        let (h, q, kv) = (c.hidden_size, c.q_dim(), c.kv_dim());
        let (qn, kn, vn) = (
            format!("{p}.q_proj"),
            format!("{p}.k_proj"),
            format!("{p}.v_proj"),
        );
        let qkv = l.stacked(&[(&qn, q), (&kn, kv), (&vn, kv)], h, Split::Rows)?;
        let qkv_bias = if c.qkv_bias {
            let names = [(qn, q), (kn, kv), (vn, kv)].map(|(n, d)| (format!("{n}.bias"), d));
            let refs: Vec<(&str, usize)> = names.iter().map(|(n, d)| (n.as_str(), *d)).collect();
            Some(l.vectors(&refs, Split::Rows)?)
        } else {
            None
        };
        let (q_norm, k_norm) = if c.qk_norm {
            let d = c.head_dim;
            (
                Some(l.vector(&format!("{p}.q_norm.weight"), d, Split::Whole)?),
                Some(l.vector(&format!("{p}.k_norm.weight"), d, Split::Whole)?),
            )
        } else {
            (None, None)
        };
        // vLLM's names: `self_attn.{k,v}_scale`, or the projections' `output_scale`
        let k_scale = l.scalar(&[format!("{p}.k_scale"), format!("{p}.k_proj.output_scale")])?;
        let v_scale = l.scalar(&[format!("{p}.v_scale"), format!("{p}.v_proj.output_scale")])?;
        let kv_scales = (k_scale.is_some() || v_scale.is_some())
            .then(|| (k_scale.unwrap_or(1.0), v_scale.unwrap_or(1.0)));
        Ok(Attention {
            qkv,
            qkv_bias,
            q_norm,
            k_norm,
            o: l.linear(&format!("{p}.o_proj"), h, q, Split::Cols)?,
            kv_scales,
        })
    }
}

impl<W: Weights> Attention<W> {
    /// The stacked q/k/v projection (the layer runs it together with the norm before it).
    pub fn qkv(&self) -> &W::Weight {
        &self.qkv
    }
}

impl<B: Backend> Attention<B> {
    /// Attends the step's projected q/k/v in `ws.qkv` (t rows) and leaves the output
    /// projection in `ws.proj`.
    pub fn forward(
        &self,
        be: &B,
        c: &ModelConfig,
        t: usize,
        layer: usize,
        kv: &mut B::Kv,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let dims = AttnDims::new(c.num_heads, c.num_kv_heads, c.head_dim);
        let qk_norm = match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => Some((qn, kn, c.rms_norm_eps)),
            _ => None,
        };
        be.qkv_to_cache(
            &ws.qkv,
            t,
            &dims,
            self.qkv_bias.as_ref(),
            qk_norm,
            &ws.rope,
            kv,
            layer,
            [&mut ws.q, &mut ws.k, &mut ws.v],
        );
        be.attention(&ws.q, kv, layer, &dims, &mut ws.attn);
        be.linear(&ws.attn, t, &self.o, &mut ws.proj);
        be.all_reduce(&mut ws.proj, t * c.hidden_size)
    }
}
