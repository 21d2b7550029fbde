//! The decoder-only causal LM every architecture is: embedding, decoder layers, final norm,
//! LM head. Written once over the `Backend` trait; the architecture files only configure it.

use crate::config::ModelConfig;
use crate::layers::DecoderLayer;
use crate::params::{ParamLoader, Split};
use anyhow::{Result, bail};
use ferrum_backend::{Backend, MoeRouter, RopeConfig, Weights};

pub struct CausalLm<W: Weights> {
    pub cfg: ModelConfig,
    embed: W::Weight,
    layers: Vec<DecoderLayer<W>>,
    norm: W::Vector,
    /// `None` when tied to the embedding.
    lm_head: Option<W::Weight>,
}

/// The buffer a [`Workspace::norm_linear`] writes.
#[derive(Clone, Copy)]
pub enum NormOut {
    Qkv,
    GateUp,
}

impl<W: Weights> CausalLm<W> {
    /// Loads every parameter through `l` (which counts them and checks formats).
    pub fn load(cfg: ModelConfig, l: &ParamLoader<W>) -> Result<Self> {
        let (h, vocab) = (cfg.hidden_size, cfg.vocab_size);
        let layers = (0..cfg.num_layers)
            .map(|i| DecoderLayer::load(l, i, &cfg))
            .collect::<Result<Vec<_>>>()?;
        let embed = l.linear("model.embed_tokens", vocab, h, Split::Whole)?;
        let norm = l.vector("model.norm.weight", h, Split::Whole)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(l.linear("lm_head", vocab, h, Split::Whole)?)
        };
        Ok(CausalLm {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
        })
    }
}

/// Every activation buffer of a forward, allocated once for the largest step (`max_tokens`
/// tokens, `max_logits` logits rows at a time), so a forward allocates nothing.
pub struct Workspace<B: Backend> {
    pub max_tokens: usize,
    pub max_logits: usize,
    /// The residual stream; an add writes the sum into `x_next`, and [`Self::advance`] makes it
    /// the stream (so that a fused add and the GEMV reading it never write what others read).
    pub x: B::Buf,
    pub x_next: B::Buf,
    /// Whether `x` and `x_next` are swapped from where the forward's embedding wrote.
    flipped: bool,
    pub normed: B::Buf,
    pub qkv: B::Buf,
    pub q: B::Buf,
    pub k: B::Buf,
    pub v: B::Buf,
    pub attn: B::Buf,
    pub proj: B::Buf,
    pub shared: B::Buf,
    pub gate_up: B::Buf,
    pub act: B::Buf,
    pub router_logits: B::Buf,
    pub moe: Option<B::MoeScratch>,
    pub last: B::Buf,
    pub last_normed: B::Buf,
    pub logits: B::Buf,
    pub rope: B::Rope,
}

impl<B: Backend> Workspace<B> {
    /// Buffers for steps of up to `max_tokens` tokens and `max_logits` logits rows of `model`:
    /// sized by the layers it loaded (a model whose every layer is MoE has no dense MLP, and a
    /// shared expert the backend stacks with the routed ones needs no buffers of the model's).
    pub fn new(be: &B, model: &CausalLm<B>, max_tokens: usize, max_logits: usize) -> Result<Self> {
        let c = &model.cfg;
        let t = max_tokens.max(1);
        let r = max_logits.clamp(1, t);
        let (h, qd, kvd) = (c.hidden_size, c.q_dim(), c.kv_dim());
        let moe_dims = c.moe.as_ref().map(|m| m.dims(h));
        // the widest MLP run through gate_up / act: dense layers, or shared experts apart
        let mlps = model.workspace_mlps();
        let inter = mlps.iter().map(|&(w, _)| w).max().unwrap_or(0);
        let shared = mlps.iter().any(|&(_, shared)| shared);
        let n_experts = c.moe.as_ref().map_or(0, |m| m.n_experts);
        let rope = be.rope(&RopeConfig {
            head_dim: c.head_dim,
            rotary_dim: c.rotary_dim,
            theta: c.rope_theta,
            scaling: c.rope_scaling.clone(),
            style: c.rope_style,
        })?;
        Ok(Workspace {
            max_tokens: t,
            max_logits: r,
            x: be.alloc(t * h)?,
            x_next: be.alloc(t * h)?,
            flipped: false,
            normed: be.alloc(t * h)?,
            qkv: be.alloc(t * (qd + 2 * kvd))?,
            q: be.alloc(t * qd)?,
            k: be.alloc(t * kvd)?,
            v: be.alloc(t * kvd)?,
            attn: be.alloc(t * qd)?,
            proj: be.alloc(t * h)?,
            shared: be.alloc(if shared { t * h } else { 0 })?,
            gate_up: be.alloc(t * 2 * inter)?,
            act: be.alloc(t * inter)?,
            router_logits: be.alloc(t * n_experts)?,
            moe: moe_dims.map(|d| be.moe_scratch(t, &d)).transpose()?,
            last: be.alloc(r * h)?,
            last_normed: be.alloc(r * h)?,
            logits: be.alloc(r * c.vocab_size)?,
            rope,
        })
    }

    /// The sum just written into `x_next` becomes the residual stream.
    pub fn advance(&mut self) {
        std::mem::swap(&mut self.x, &mut self.x_next);
        self.flipped = !self.flipped;
    }

    /// Back to the buffers a forward starts from: every forward (and every captured graph)
    /// then walks the same buffers in the same order, and the logits read the stream it left.
    fn restart(&mut self) {
        if self.flipped {
            self.advance();
        }
    }

    /// A block's pre-norm and first linear layer ([`Backend::norm_linear`]): `normed` =
    /// RMSNorm of the stream, with the previous block's output in `proj` added first (`add`),
    /// and `out = normed · wᵀ`.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_linear(
        &mut self,
        be: &B,
        g: &B::Vector,
        eps: f32,
        t: usize,
        add: bool,
        w: &B::Weight,
        out: NormOut,
    ) {
        let Workspace {
            x,
            x_next,
            normed,
            proj,
            qkv,
            gate_up,
            ..
        } = self;
        let out = match out {
            NormOut::Qkv => qkv,
            NormOut::GateUp => gate_up,
        };
        be.norm_linear(x, add.then_some(&*proj), g, eps, t, x_next, normed, w, out);
        if add {
            self.advance();
        }
    }

    /// An MoE block's pre-norm and router ([`Backend::norm_router`]), the attention's output in
    /// `proj` added first: the logits into `router_logits` and, where the backend routes in the
    /// same launch, the routing into the MoE scratch for the block's `moe` call.
    pub fn norm_router(&mut self, be: &B, g: &B::Vector, eps: f32, t: usize, r: &MoeRouter<'_, B>) {
        let Workspace {
            x,
            x_next,
            normed,
            proj,
            router_logits,
            moe,
            ..
        } = self;
        let scratch = moe.as_mut().expect("an MoE model has MoE scratch");
        be.norm_router(
            x,
            Some(&*proj),
            g,
            eps,
            t,
            x_next,
            normed,
            r,
            scratch,
            router_logits,
        );
        self.advance();
    }

    /// Bytes of activations per token of the largest step, f32 (the profile of a forward: it
    /// allocates nothing beyond this workspace).
    pub fn bytes_per_token(c: &ModelConfig) -> usize {
        let (h, qd, kvd) = (c.hidden_size, c.q_dim(), c.kv_dim());
        let inter = c
            .moe
            .as_ref()
            .map_or(0, |m| m.inter * m.n_shared.max(1) * m.top_k.max(1))
            .max(c.intermediate_size);
        4 * (7 * h + 3 * qd + 4 * kvd + 3 * inter + c.moe.as_ref().map_or(0, |m| m.n_experts))
    }
}

impl<W: Weights> CausalLm<W> {
    /// The MLPs its layers run through the workspace: (width, whether a shared experts' MLP).
    fn workspace_mlps(&self) -> Vec<(usize, bool)> {
        self.layers
            .iter()
            .filter_map(DecoderLayer::workspace_mlp)
            .collect()
    }

    /// Per layer, the checkpoint's FP8 KV-cache scales `(k_scale, v_scale)`, if it has them.
    pub fn kv_scales(&self) -> Vec<Option<(f32, f32)>> {
        self.layers.iter().map(DecoderLayer::kv_scales).collect()
    }
}

impl<B: Backend> CausalLm<B> {
    /// Runs the step handed to `be.begin_step` (`t` tokens), writing each layer's K/V into
    /// `kv`, and leaves the final hidden states in `ws.x`; [`Self::logits`] then gives logits.
    pub fn forward(&self, be: &B, t: usize, kv: &mut B::Kv, ws: &mut Workspace<B>) -> Result<()> {
        if t > ws.max_tokens {
            bail!(
                "a step of {t} tokens exceeds the workspace of {} (--max-num-batched-tokens)",
                ws.max_tokens
            );
        }
        ws.restart();
        be.embedding(&self.embed, &mut ws.x)?;
        for (i, layer) in self.layers.iter().enumerate() {
            layer.forward(be, &self.cfg, t, i, kv, ws)?;
        }
        be.add(&mut ws.x, &ws.proj, t * self.cfg.hidden_size);
        Ok(())
    }

    /// Logits of the given token rows (at most `ws.max_logits`) into `ws.logits`.
    pub fn logits(&self, be: &B, rows: &[usize], ws: &mut Workspace<B>) -> Result<()> {
        if rows.len() > ws.max_logits {
            bail!(
                "{} logits rows exceed the workspace's {}",
                rows.len(),
                ws.max_logits
            );
        }
        let c = &self.cfg;
        be.gather_rows(&ws.x, c.hidden_size, rows, &mut ws.last);
        be.rms_norm(
            &ws.last,
            &self.norm,
            c.rms_norm_eps,
            rows.len(),
            &mut ws.last_normed,
        );
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        be.linear(&ws.last_normed, rows.len(), head, &mut ws.logits);
        Ok(())
    }
}
