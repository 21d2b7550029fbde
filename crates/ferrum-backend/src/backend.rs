//! The backend layer: what a device must provide for the models to run on it. Models are written
//! once over these traits; the CPU backend (`cpu::CpuBackend`) is the reference every other is
//! checked against, op by op.
//!
//! Memory belongs to the backend: weights are converted or uploaded from host views
//! ([`Weights`]), the paged KV cache is allocated by it ([`Backend::alloc_kv`]), and the
//! activations live in buffers the model allocates once, for the largest step, through
//! [`Backend::alloc`]. A forward then allocates nothing on the device, so a GPU backend can
//! capture it as a graph. Per-step metadata (positions, cache slots, block tables) is handed over
//! once per step by [`Backend::begin_step`]; the ops read it from there.

use crate::cpu::{RopeScaling, RopeStyle};
use crate::host::{HostLinear, HostTensor};
use anyhow::Result;

/// Turning host views into the backend's own weights. A format the backend cannot run is refused
/// here, naming the format and the backend.
pub trait Weights {
    /// A linear layer's weight (`[out, in]`), in whatever format the backend keeps it.
    type Weight;
    /// A small per-channel parameter (norm weight, bias, router correction bias).
    type Vector;
    /// The routed experts of one MoE block.
    type Experts;

    fn backend_name(&self) -> &'static str;
    fn upload_linear(&self, w: HostLinear<'_>) -> Result<Self::Weight>;
    fn upload_vector(&self, t: HostTensor<'_>) -> Result<Self::Vector>;
    /// Rows of several weights stacked into one (q/k/v, gate/up): one matmul instead of several.
    fn stack(&self, parts: Vec<Self::Weight>) -> Result<Self::Weight>;
    /// `(gate_up, down)` per routed expert, in expert order, and the block's shared expert
    /// where it has one (GLM-4.5: every token's output plus the shared MLP's). A backend may run
    /// the shared expert among the routed ones, as one more that every token takes with weight 1
    /// (fewer launches at small batches), and then keeps it; otherwise it comes back, for the
    /// model to run as an MLP of its own.
    #[allow(clippy::type_complexity)]
    fn experts(
        &self,
        routed: Vec<(Self::Weight, Self::Weight)>,
        shared: Option<(Self::Weight, Self::Weight)>,
    ) -> Result<(Self::Experts, Option<(Self::Weight, Self::Weight)>)>;
}

/// Sizes without data: the model is built once over this to count its tensors and the bytes it
/// will need on the target backend, and to refuse unsupported formats, before anything is read
/// or allocated.
pub struct DryRun<'b, B: ?Sized> {
    pub target: &'b B,
    /// Bytes the weights uploaded so far take on the target.
    pub bytes: std::cell::Cell<usize>,
}

impl<'b, B: ?Sized> DryRun<'b, B> {
    pub fn new(target: &'b B) -> Self {
        DryRun {
            target,
            bytes: std::cell::Cell::new(0),
        }
    }
}

/// Bytes a backend needs to keep a weight in its format (the dry run's arithmetic); an error for
/// a format it cannot run.
pub trait WeightBytes {
    fn linear_bytes(&self, w: &HostLinear<'_>) -> Result<usize>;
}

impl<B: Weights + WeightBytes + ?Sized> Weights for DryRun<'_, B> {
    type Weight = ();
    type Vector = ();
    type Experts = ();
    fn backend_name(&self) -> &'static str {
        self.target.backend_name()
    }
    fn upload_linear(&self, w: HostLinear<'_>) -> Result<()> {
        self.bytes
            .set(self.bytes.get() + self.target.linear_bytes(&w)?);
        Ok(())
    }
    fn upload_vector(&self, t: HostTensor<'_>) -> Result<()> {
        self.bytes.set(self.bytes.get() + 4 * t.numel());
        Ok(())
    }
    fn stack(&self, _parts: Vec<()>) -> Result<()> {
        Ok(())
    }
    fn experts(
        &self,
        _routed: Vec<((), ())>,
        shared: Option<((), ())>,
    ) -> Result<((), Option<((), ())>)> {
        Ok(((), shared))
    }
}

/// The dtype of the KV cache (`--kv-cache-dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvDtype {
    F32,
    BF16,
    F16,
    Fp8E4M3,
}

impl KvDtype {
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::BF16 | KvDtype::F16 => 2,
            KvDtype::Fp8E4M3 => 1,
        }
    }
}

/// The paged K/V cache of every layer: per layer, `num_blocks × block_size` slots of `kv_dim`
/// values for K and for V.
#[derive(Clone, Copy, Debug)]
pub struct KvSpec {
    pub num_layers: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub kv_dim: usize,
    pub dtype: KvDtype,
}

impl KvSpec {
    /// Bytes of the whole cache (all layers).
    pub fn bytes(&self) -> usize {
        2 * self.num_layers * self.num_blocks * self.block_size * self.kv_dim * self.dtype.bytes()
    }
}

/// One sequence of a step, as attention sees it.
#[derive(Clone, Debug)]
pub struct StepSeq {
    /// Index of its first new token in the flattened batch.
    pub q_start: usize,
    pub q_len: usize,
    /// Tokens in context once this step's are written.
    pub ctx_len: usize,
    /// Its blocks: `block_tables[table.clone()]` of the step.
    pub table: std::ops::Range<usize>,
}

/// Everything a forward needs besides weights and activations, for one step.
#[derive(Clone, Debug, Default)]
pub struct StepMeta {
    pub tokens: Vec<u32>,
    /// Rotary position of each token.
    pub positions: Vec<usize>,
    /// Cache slot each token's K/V goes to.
    pub slots: Vec<usize>,
    pub seqs: Vec<StepSeq>,
    /// Every sequence's block table, concatenated.
    pub block_tables: Vec<u32>,
    pub block_size: usize,
}

/// Rotary embedding of one model: the first `rotary_dim` of each head's `head_dim` rotate.
#[derive(Clone, Debug)]
pub struct RopeConfig {
    pub head_dim: usize,
    pub rotary_dim: usize,
    pub theta: f64,
    pub scaling: RopeScaling,
    pub style: RopeStyle,
}

impl RopeConfig {
    /// The rotary dimension must be even, positive and at most the head size.
    pub fn validate(&self) -> Result<()> {
        if self.rotary_dim == 0
            || !self.rotary_dim.is_multiple_of(2)
            || self.rotary_dim > self.head_dim
        {
            anyhow::bail!(
                "rotary dimension {} must be even, positive and at most the head size {}",
                self.rotary_dim,
                self.head_dim
            );
        }
        Ok(())
    }
}

/// Head layout for attention.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
}

impl AttnDims {
    /// The layout with the usual softmax scale, 1 / √head_dim.
    pub fn new(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Self {
        AttnDims {
            n_heads,
            n_kv_heads,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }
}

/// How an MoE block picks experts for a token (the CPU reference: `cpu/moe.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Routing {
    /// Qwen3-MoE / Qwen2-MoE / Mixtral: softmax over all experts, top-k, optionally renormalized.
    Softmax { norm_topk_prob: bool },
    /// GLM-4.5 / DeepSeek-V3 (`noaux_tc`): sigmoid scores + correction bias for the choice,
    /// group-limited top-k (`n_group = topk_group = 1`: no limit), the un-biased scores as
    /// weights (optionally renormalized), times a scaling factor.
    SigmoidGroupLimited {
        n_group: usize,
        topk_group: usize,
        norm_topk_prob: bool,
        routed_scaling_factor: f32,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct MoeDims {
    pub n_experts: usize,
    pub top_k: usize,
    pub hidden: usize,
    /// Each expert's intermediate size.
    pub inter: usize,
    /// Shared experts (GLM-4.5: one, as wide as a routed expert): a backend that folds them
    /// into its routed experts ([`Weights::experts`]) sizes its scratch for them.
    pub n_shared: usize,
    pub routing: Routing,
}

/// An MoE block's router as [`Backend::norm_router`] takes it: its weight, the sigmoid
/// router's correction bias, and the experts it routes to.
pub struct MoeRouter<'a, W: Weights + ?Sized> {
    pub weight: &'a W::Weight,
    pub correction_bias: Option<&'a W::Vector>,
    pub experts: &'a W::Experts,
    pub dims: &'a MoeDims,
}

/// Device memory as the backend sees it, for sizing the KV cache and refusing what cannot fit.
#[derive(Clone, Copy, Debug)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

/// The compute side. Buffers are flat; `rows` says how much of one is in use this step.
pub trait Backend: Weights {
    /// Activations (f32 on the CPU).
    type Buf;
    /// One layer's paged K/V cache.
    type Kv;
    /// Precomputed rotary tables.
    type Rope;
    /// Preallocated workspace of an MoE block.
    type MoeScratch;

    fn device_name(&self) -> String;
    fn memory(&self) -> MemInfo;
    /// Bytes the KV cache may take when no flag sets its size, after weights and workspace are
    /// in place (a GPU: `--gpu-memory-utilization` of the total minus what is in use).
    fn kv_cache_budget(&self, gpu_memory_utilization: Option<f64>) -> Result<u64>;
    /// Whether the runner should run one forward at the largest step before sizing the KV cache
    /// from [`Backend::kv_cache_budget`]: a GPU's libraries (cuBLAS) allocate their workspaces on
    /// first use, and that memory must be counted before the cache takes the rest (vLLM's
    /// profiling run). The CPU allocates nothing on the way.
    fn profile_before_kv_sizing(&self) -> bool {
        false
    }

    /// Whether this backend replays captured forwards (CUDA graphs). The rest of this group is
    /// only called when it does.
    fn supports_graphs(&self) -> bool {
        false
    }
    /// Allocates the step metadata's device buffers for steps of up to `tokens` tokens and
    /// `table_entries` block-table entries, and freezes their addresses (a captured graph holds
    /// them): a larger step is an error from then on.
    fn reserve_step(&mut self, _tokens: usize, _table_entries: usize) -> Result<()> {
        Ok(())
    }
    /// Starts recording the ops that follow instead of running them.
    fn capture_begin(&mut self) -> Result<()> {
        anyhow::bail!("this backend captures no graphs")
    }
    /// Ends the recording into graph `key`; an op that failed while recording fails it.
    fn capture_end(&mut self, _key: usize) -> Result<()> {
        anyhow::bail!("this backend captures no graphs")
    }
    /// Runs graph `key` over the step metadata of the last [`Backend::begin_step`].
    fn replay(&mut self, _key: usize) -> Result<()> {
        anyhow::bail!("this backend captures no graphs")
    }
    /// A buffer of `len` values, committed now (the workspace for the largest step is in place
    /// before the server says ready, not grown under load).
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// The whole KV cache, every layer's, as one allocation (one device pool; on the CPU one
    /// mapping whose pages the kernel commits as blocks are first written).
    fn alloc_kv(&self, spec: &KvSpec) -> Result<Self::Kv>;
    /// `layer`'s scales of an FP8 KV cache (stored = value / scale; 1.0 until set): from the
    /// checkpoint's `k_scale` / `v_scale`, as vLLM takes them.
    fn set_kv_scales(
        &self,
        kv: &mut Self::Kv,
        layer: usize,
        k_scale: f32,
        v_scale: f32,
    ) -> Result<()>;
    fn rope(&self, r: &RopeConfig) -> Result<Self::Rope>;
    fn moe_scratch(&self, max_tokens: usize, d: &MoeDims) -> Result<Self::MoeScratch>;

    /// Hands over this step's metadata (a GPU backend copies it into preallocated buffers).
    fn begin_step(&mut self, meta: &StepMeta) -> Result<()>;

    /// `out[t] = table[token t]` for the step's tokens.
    fn embedding(&self, table: &Self::Weight, out: &mut Self::Buf) -> Result<()>;
    /// RMSNorm of `rows` rows of `w`'s width.
    fn rms_norm(&self, x: &Self::Buf, w: &Self::Vector, eps: f32, rows: usize, out: &mut Self::Buf);
    /// In place (per-head q/k norms: `rows` = tokens × heads).
    fn rms_norm_inplace(&self, x: &mut Self::Buf, w: &Self::Vector, eps: f32, rows: usize);
    /// `sum = x + y` (the residual stream and a block's output), then `out = rms_norm(sum)`.
    #[allow(clippy::too_many_arguments)]
    fn add_rms_norm(
        &self,
        x: &Self::Buf,
        y: &Self::Buf,
        w: &Self::Vector,
        eps: f32,
        rows: usize,
        sum: &mut Self::Buf,
        out: &mut Self::Buf,
    );
    /// A block's pre-norm and its first linear layer: `sum = x + y` (with a `y`; without, `x`
    /// is normed as it is and `sum` left alone), `normed = rms_norm(sum)` with weight `g`, then
    /// `out = normed · wᵀ`. The default is the two ops; a backend may fuse them (the CUDA one at
    /// one row before half weights: each block computes the norm, then its rows).
    #[allow(clippy::too_many_arguments)]
    fn norm_linear(
        &self,
        x: &Self::Buf,
        y: Option<&Self::Buf>,
        g: &Self::Vector,
        eps: f32,
        rows: usize,
        sum: &mut Self::Buf,
        normed: &mut Self::Buf,
        w: &Self::Weight,
        out: &mut Self::Buf,
    ) {
        norm_then_linear(self, x, y, g, eps, rows, sum, normed, w, out);
    }
    /// An MoE block's pre-norm and router: [`Backend::norm_linear`] with the router's weight
    /// into `logits`. A backend may route the tokens in the same launch, into `scratch`, for the
    /// [`Backend::moe`] call over these logits that must follow, which then does not route them
    /// again (the CUDA one at one token: the router's last block to finish routes).
    #[allow(clippy::too_many_arguments)]
    fn norm_router(
        &self,
        x: &Self::Buf,
        y: Option<&Self::Buf>,
        g: &Self::Vector,
        eps: f32,
        rows: usize,
        sum: &mut Self::Buf,
        normed: &mut Self::Buf,
        router: &MoeRouter<'_, Self>,
        _scratch: &mut Self::MoeScratch,
        logits: &mut Self::Buf,
    ) {
        self.norm_linear(x, y, g, eps, rows, sum, normed, router.weight, logits);
    }
    /// `acc[..len] += x[..len]`.
    fn add(&self, acc: &mut Self::Buf, x: &Self::Buf, len: usize);
    /// `out = x · wᵀ` for `rows` rows.
    fn linear(&self, x: &Self::Buf, rows: usize, w: &Self::Weight, out: &mut Self::Buf);
    /// Splits stacked q|k|v rows (`q_dim + 2·kv_dim` wide) into q, k, v, adding the stacked bias.
    #[allow(clippy::too_many_arguments)]
    fn split_qkv(
        &self,
        qkv: &Self::Buf,
        rows: usize,
        q_dim: usize,
        kv_dim: usize,
        bias: Option<&Self::Vector>,
        q: &mut Self::Buf,
        k: &mut Self::Buf,
        v: &mut Self::Buf,
    );
    /// Rotates `rows` tokens × `n_heads` heads at the step's positions.
    fn apply_rope(&self, rope: &Self::Rope, x: &mut Self::Buf, rows: usize, n_heads: usize);
    /// Writes the step's K and V rows into their cache slots of `layer`.
    fn write_kv(&self, kv: &mut Self::Kv, layer: usize, k: &Self::Buf, v: &Self::Buf);
    /// The attention's input in one op: splits the stacked projection (`split_qkv`, with
    /// `bias`), normalizes each q and k head (`qk_norm`: their RMSNorm weights and eps, as
    /// `rms_norm_inplace`), rotates q and k (`apply_rope`) and writes k and v into `layer`'s cache
    /// (`write_kv`), leaving q in `qkv_out[0]` (`[1]` and `[2]` are scratch for k and v). The
    /// default runs those ops in turn; a GPU backend fuses them into one launch.
    #[allow(clippy::too_many_arguments)]
    fn qkv_to_cache(
        &self,
        qkv: &Self::Buf,
        rows: usize,
        d: &AttnDims,
        bias: Option<&Self::Vector>,
        qk_norm: Option<(&Self::Vector, &Self::Vector, f32)>,
        rope: &Self::Rope,
        kv: &mut Self::Kv,
        layer: usize,
        qkv_out: [&mut Self::Buf; 3],
    ) {
        qkv_to_cache_op_by_op(self, qkv, rows, d, bias, qk_norm, rope, kv, layer, qkv_out);
    }
    /// Causal paged attention over the step's sequences (prefill chunks and decodes together)
    /// against `layer`'s cache.
    fn attention(
        &self,
        q: &Self::Buf,
        kv: &Self::Kv,
        layer: usize,
        d: &AttnDims,
        out: &mut Self::Buf,
    );
    /// `out = silu(gate) * up` for `rows` rows of `[gate | up]` (2·inter wide).
    fn silu_mul(&self, gate_up: &Self::Buf, rows: usize, inter: usize, out: &mut Self::Buf);
    /// A SwiGLU MLP's first half: `gate_up = x · wᵀ` (w stacks the gate and up projections,
    /// 2·inter rows), then `act = silu(gate) * up`. A backend may fuse the two (the CUDA one at
    /// one row, `FERRUM_CUDA_GEMV_SWIGLU=1`), leaving `gate_up` unwritten.
    fn linear_swiglu(
        &self,
        x: &Self::Buf,
        rows: usize,
        w: &Self::Weight,
        inter: usize,
        gate_up: &mut Self::Buf,
        act: &mut Self::Buf,
    ) {
        self.linear(x, rows, w, gate_up);
        self.silu_mul(gate_up, rows, inter, act);
    }
    /// Routed experts: routing from `router_logits` (`rows × n_experts`), the chosen experts'
    /// SwiGLU MLPs, and their weighted sum into `out`.
    #[allow(clippy::too_many_arguments)]
    fn moe(
        &self,
        x: &Self::Buf,
        rows: usize,
        router_logits: &Self::Buf,
        correction_bias: Option<&Self::Vector>,
        experts: &Self::Experts,
        d: &MoeDims,
        scratch: &mut Self::MoeScratch,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// `out[i] = x[rows[i]]` (`width` wide): the rows whose logits are wanted.
    fn gather_rows(&self, x: &Self::Buf, width: usize, rows: &[usize], out: &mut Self::Buf);
    /// Sum over the tensor-parallel group; identity at one rank.
    fn all_reduce(&self, _x: &mut Self::Buf, _len: usize) -> Result<()> {
        Ok(())
    }
    /// Copies `out.len()` values to the host.
    fn read(&self, x: &Self::Buf, out: &mut [f32]) -> Result<()>;

    /// Samples (or scores, for prompt logprobs) the logits rows of `logits` (`vocab` wide) that
    /// `rows` describe, in order (a [`LogitsRow::Verify`] takes several consecutive rows). The default copies the rows to the host (`host` holds them) and
    /// runs the engine's reference sampler, which is exact; a GPU backend samples on the device
    /// and copies only token ids, and logprobs when asked.
    fn sample(
        &self,
        logits: &Self::Buf,
        vocab: usize,
        rows: &[LogitsRow<'_, '_>],
        host: &mut [f32],
    ) -> Result<Vec<RowOutput>> {
        host_sample(self, logits, vocab, rows, host)
    }
}

/// [`Backend::qkv_to_cache`] as its separate ops (the default, and a fused backend's fallback).
#[allow(clippy::too_many_arguments)]
pub fn qkv_to_cache_op_by_op<B: Backend + ?Sized>(
    be: &B,
    qkv: &B::Buf,
    rows: usize,
    d: &AttnDims,
    bias: Option<&B::Vector>,
    qk_norm: Option<(&B::Vector, &B::Vector, f32)>,
    rope: &B::Rope,
    kv: &mut B::Kv,
    layer: usize,
    qkv_out: [&mut B::Buf; 3],
) {
    let [q, k, v] = qkv_out;
    let (qd, kvd) = (d.n_heads * d.head_dim, d.n_kv_heads * d.head_dim);
    be.split_qkv(qkv, rows, qd, kvd, bias, q, k, v);
    if let Some((qn, kn, eps)) = qk_norm {
        be.rms_norm_inplace(q, qn, eps, rows * d.n_heads);
        be.rms_norm_inplace(k, kn, eps, rows * d.n_kv_heads);
    }
    be.apply_rope(rope, q, rows, d.n_heads);
    be.apply_rope(rope, k, rows, d.n_kv_heads);
    be.write_kv(kv, layer, k, v);
}

/// The reference sampler on the host: copies the rows to `host` and runs the engine's exact
/// sampler on each ([`Backend::sample`]'s default, and a GPU backend's fallback).
pub fn host_sample<B: Backend + ?Sized>(
    be: &B,
    logits: &B::Buf,
    vocab: usize,
    rows: &[LogitsRow<'_, '_>],
    host: &mut [f32],
) -> Result<Vec<RowOutput>> {
    let n: usize = rows.iter().map(LogitsRow::num_rows).sum();
    let host = &mut host[..n * vocab];
    be.read(logits, host)?;
    let mut rest = &mut host[..];
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let (row, tail) = std::mem::take(&mut rest).split_at_mut(r.num_rows() * vocab);
        rest = tail;
        out.push(match *r {
            LogitsRow::Prompt { target, k } => {
                RowOutput::Prompt(ferrum_engine::token_logprobs(row, target, k))
            }
            LogitsRow::Sample(seq) => RowOutput::Sampled(ferrum_engine::sample(row, seq)),
            LogitsRow::Constrained { seq, mask } => {
                RowOutput::Sampled(ferrum_engine::sample_masked(row, seq, Some(mask)))
            }
            LogitsRow::Verify { seq, masks } => {
                RowOutput::Verified(ferrum_engine::sampling::verify(row, vocab, seq, masks))
            }
        });
    }
    Ok(out)
}

/// What a logits row is for.
#[derive(Clone, Copy, Debug)]
pub enum LogitsRow<'s, 'a> {
    /// The logprob of prompt token `target` and the `k` most likely.
    Prompt { target: u32, k: usize },
    /// The next token of this sequence, under its sampling parameters.
    Sample(&'s ferrum_engine::StepSeq<'a>),
    /// [`LogitsRow::Sample`] under structured output's token bitmask (bit `t % 32` of
    /// `mask[t / 32]`: token `t` allowed; `ceil(vocab / 32)` words), applied before every other
    /// logits processor ([`ferrum_engine::sample_masked`]). A GPU backend uploads it and
    /// applies it in its sampling kernel.
    Constrained {
        seq: &'s ferrum_engine::StepSeq<'a>,
        mask: &'s [u32],
    },
    /// Speculative decoding: `1 + seq.draft.len()` consecutive rows (the last new token, then
    /// each draft position) verified together ([`ferrum_engine::sampling::verify`]);
    /// `masks[j]`: structured output's token bitmask for row `j` (empty: unconstrained).
    Verify {
        seq: &'s ferrum_engine::StepSeq<'a>,
        masks: &'s [Option<&'s [u32]>],
    },
}

impl LogitsRow<'_, '_> {
    /// How many logits rows this entry takes.
    pub fn num_rows(&self) -> usize {
        match self {
            LogitsRow::Verify { seq, .. } => 1 + seq.draft.len(),
            _ => 1,
        }
    }
}

#[derive(Clone, Debug)]
pub enum RowOutput {
    Prompt(ferrum_engine::TokenLogprobs),
    Sampled(ferrum_engine::Sampled),
    /// The accepted drafts plus one token.
    Verified(Vec<ferrum_engine::Sampled>),
}

/// [`Backend::norm_linear`] as its two ops (the default, and where a fusing backend can't).
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_then_linear<B: Backend + ?Sized>(
    be: &B,
    x: &B::Buf,
    y: Option<&B::Buf>,
    g: &B::Vector,
    eps: f32,
    rows: usize,
    sum: &mut B::Buf,
    normed: &mut B::Buf,
    w: &B::Weight,
    out: &mut B::Buf,
) {
    match y {
        Some(y) => be.add_rms_norm(x, y, g, eps, rows, sum, normed),
        None => be.rms_norm(x, g, eps, rows, normed),
    }
    be.linear(normed, rows, w, out);
}
