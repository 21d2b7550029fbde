//! One pre-norm decoder layer: `x += attn(norm(x))`, then `x += ffn(norm(x))`, the FFN a dense
//! MLP or an MoE block. The residual add is fused with the next norm.

use super::{Attention, MoeBlock, mlp::Mlp};
use crate::config::ModelConfig;
use crate::model::{NormOut, Workspace};
use crate::params::{ParamLoader, Split};
use anyhow::Result;
use ferrum_backend::{Backend, Weights};

pub enum Ffn<W: Weights> {
    Dense(Mlp<W>),
    Moe(MoeBlock<W>),
}

pub struct DecoderLayer<W: Weights> {
    input_norm: W::Vector,
    attn: Attention<W>,
    post_norm: W::Vector,
    ffn: Ffn<W>,
}

impl<W: Weights> DecoderLayer<W> {
    /// The widest MLP this layer runs through the workspace (its dense MLP, or its MoE block's
    /// shared experts where the model runs them), and whether that is a shared experts' MLP;
    /// `None`: none (the routed experts use the backend's own scratch).
    pub fn workspace_mlp(&self) -> Option<(usize, bool)> {
        match &self.ffn {
            Ffn::Dense(mlp) => Some((mlp.inter(), false)),
            Ffn::Moe(m) => m.shared_mlp().map(|mlp| (mlp.inter(), true)),
        }
    }

    /// The checkpoint's FP8 KV-cache scales of this layer, if any.
    pub fn kv_scales(&self) -> Option<(f32, f32)> {
        self.attn.kv_scales
    }

    pub fn load(l: &ParamLoader<W>, layer: usize, c: &ModelConfig) -> Result<Self> {
        let p = format!("model.layers.{layer}");
        let h = c.hidden_size;
        let input_norm = l.vector(&format!("{p}.input_layernorm.weight"), h, Split::Whole)?;
        let attn = Attention::load(l, &format!("{p}.self_attn"), c)?;
        let post_norm = l.vector(
            &format!("{p}.post_attention_layernorm.weight"),
            h,
            Split::Whole,
        )?;
        let ffn = match &c.moe {
            Some(m) if m.sparse_layers[layer] => {
                Ffn::Moe(MoeBlock::load(l, &format!("{p}.mlp"), h, m)?)
            }
            _ => Ffn::Dense(Mlp::load(l, &format!("{p}.mlp"), h, c.intermediate_size)?),
        };
        Ok(DecoderLayer {
            input_norm,
            attn,
            post_norm,
            ffn,
        })
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// Layer `index` (its slice of the KV cache). The first layer's `ws.x` is fresh from the
    /// embedding; otherwise the previous layer's FFN output in `ws.proj` is still to be added to
    /// it. Each add is fused with the norm after it, and each norm with the linear layer that
    /// reads it (q/k/v; gate/up or the router). Leaves this layer's FFN output in
    /// `ws.proj`.
    pub fn forward(
        &self,
        be: &B,
        c: &ModelConfig,
        t: usize,
        index: usize,
        kv: &mut B::Kv,
        ws: &mut Workspace<B>,
    ) -> Result<()> {
        let eps = c.rms_norm_eps;
        let qkv = self.attn.qkv();
        ws.norm_linear(be, &self.input_norm, eps, t, index > 0, qkv, NormOut::Qkv);
        self.attn.forward(be, c, t, index, kv, ws)?;
        match &self.ffn {
            Ffn::Dense(mlp) => mlp.forward_normed(be, t, c.hidden_size, &self.post_norm, eps, ws),
            Ffn::Moe(moe) => {
                ws.norm_router(be, &self.post_norm, eps, t, &moe.router());
                moe.forward(be, t, ws)
            }
        }
    }
}
