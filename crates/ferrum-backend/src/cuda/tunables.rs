//! The kernel choices that have an A/B: each defaults to the measured winner, an environment
//! variable takes the other (`scripts/gpu-check.sh` compares them in one lease), and the op tests
//! and the kernel benchmark set them through `CudaBackend`'s setters.

use super::backend::CudaBackend;
use super::moe::MOE_DEVICE_GROUPED_MAX_TOKENS;

pub(super) struct Tunables {
    /// Half-weight linear layers of up to eight rows take our GEMV instead of cuBLAS with
    /// `FERRUM_CUDA_GEMV=1`: off by default, as on an H200 it ran at 1.5 TB/s where cuBLAS
    /// streams 3.8 (docs/BENCHMARKS.md).
    pub gemv: bool,
    /// One-row half-weight layers take our one-row GEMV (`gemv_half_row`, 32 registers) instead
    /// of cuBLAS; `FERRUM_CUDA_GEMV_ROW=0` takes cuBLAS. On an H100 the 8B's gate/up took 77.5
    /// µs against cuBLAS's 81.4, its down 40.8 against 43.6. (One-row FP8 layers always take
    /// `gemv_fp8_row`.)
    pub gemv_row: bool,
    /// Prefill attention on the tensor cores (`flash_attention`, head sizes 64 and 128; its
    /// `mma` on bf16 needs compute capability 8.0); `FERRUM_CUDA_MMA_ATTENTION=0` takes the f32
    /// tiled kernel instead. (On an H100 the one-pass kernel made the 8B's 2048-token prefill
    /// 35305 tok/s against 27744 with the two-pass WMMA kernel before it, Qwen3-30B-A3B FP8's
    /// 25880 against 17652; seventeenth session.)
    pub mma_attention: bool,
    /// Decode steps with at least this many (token, kv head) blocks take the kernel that reads
    /// K/V once per GQA group (`paged_attention_group`); the multiprocessor count by default,
    /// never with `FERRUM_CUDA_DECODE_GROUP=0`.
    pub decode_group_min_blocks: usize,
    /// Below that many blocks, the per-group kernel with the keys split into slices across
    /// more blocks; `FERRUM_CUDA_DECODE_SPLIT=head` takes the per-head kernel instead, split only
    /// past 1024 keys. On an H100 the per-group split took one token over 8192 keys in 18 µs a
    /// layer against 182, 16 over 8000 in 109 against 2100 (Qwen3-30B-A3B FP8 at 8k context:
    /// 5.16 against 16.4 ms a token).
    pub decode_group_split: bool,
    /// The fewest keys a slice of the per-group split decode takes: [`GROUP_SLICE_KEYS`] by
    /// default;
    /// `FERRUM_CUDA_GROUP_SLICE_KEYS=N` (a multiple of 16) for the A/B: fewer, longer slices
    /// leave a short context fewer slices to merge, each warp more tiles in turn. (On an H100,
    /// 22nd session, with a merge inside the split kernel since removed: Qwen3-30B-A3B FP8 at
    /// batch 1, 1–129 keys, 2.94 ms a token with 128 against 3.12 with 64, where the merge
    /// kernel after it took 3.00; not yet measured with the merge kernel.)
    pub group_slice_keys: usize,
    /// MoE steps of up to this many tokens group their pairs by expert on the device (`moe.rs`);
    /// `MOE_DEVICE_GROUPED_MAX_TOKENS` by default, `FERRUM_CUDA_MOE_DEVICE_GROUPED=N` to
    /// compare the paths.
    pub moe_device_grouped_max: usize,
    /// The device-grouped experts stream their weights through asynchronous copies in chunks
    /// of 64 columns (`moe_expert_pipe`) where the shapes allow (Qwen3-30B-A3B FP8 at 128
    /// sequences: 4175 tok/s against 3125 with `moe_expert_mma` on an H100);
    /// `FERRUM_CUDA_MOE_PIPE=0` takes `moe_expert_mma` everywhere.
    pub moe_pipe: bool,
    /// Block-FP8 device-grouped experts (scale blocks of 128, row lengths a multiple of 128) in
    /// W8A8 on the FP8 tensor cores (`moe_expert_w8a8`, compute capability 8.9 and up): their
    /// inputs quantized to e4m3 per 128 columns, the weights never converted;
    /// `FERRUM_CUDA_MOE_W8A8=0` takes `moe_expert_pipe`. On an H200 Qwen3-30B-A3B FP8's experts
    /// at 128 tokens took 297 µs a call against 514, 128 sequences of 512 in / 128 out 6540
    /// tok/s against 4238.
    pub moe_w8a8: bool,
    /// Kernels launched with programmatic dependent launch (compute capability 9.0 and up;
    /// `FERRUM_CUDA_PDL=0` off): each launch overlaps the tail of the kernel before it, and the
    /// decode GEMVs, `qkv_to_cache` and the decode attention load what no kernel of the step
    /// writes (weights, step metadata, rotary angles) before they wait for it. On an H100, one
    /// machine: the 8B at batch 1 5.86 against 6.09 ms, Qwen3-30B-A3B FP8 3.38 against 3.45 ms,
    /// at 128 sequences 4246 against 4198 tok/s. (Without the loads ahead, within noise of off.)
    pub pdl: bool,
    /// The W8A8 activation quantization a warp a row (`quant_row` in linear.cu: 16-byte loads,
    /// up to eight pairs of 128-column blocks in flight) instead of a warp per (row, block), from
    /// this many rows: eight a multiprocessor by default (every one a block of eight warps);
    /// `FERRUM_CUDA_QUANT_ROW=1` always, `=0` never. On an H100 (nineteenth session) the
    /// grouped quantization of Qwen3-30B-A3B FP8's prefill took 6.5 ms a step against 14.2, its
    /// 2048-token prefill 31363 tok/s against 30109; at 128 sequences (128 and 1024 rows) a warp
    /// a row left most of the GPU idle: 20.33 ms a step against 19.90.
    pub quant_by_row_min_rows: usize,
    /// An MoE block's shared expert (GLM-4.5's one, as wide as a routed expert) stacked after
    /// the routed ones: up to eight tokens the per-pair GEMVs take it as one more pair a token
    /// (weight 1; four launches fewer a layer, the weighted sum one rounding fewer), larger steps
    /// run it apart from the stack (`shared_apart` in moe.rs); `FERRUM_CUDA_MOE_SHARED_FOLD=0`
    /// leaves it to the model's own MLP. On an H100 GLM-4.5-Air-FP8's first 24 layers took 4.10
    /// ms a token at batch 1 against 4.23 (nineteenth session).
    pub moe_shared_fold: bool,
    /// How the MoE routers take their top-k (`route_top` in moe_route.cu; the same choices either
    /// way): by default ranked, the routing block's threads each counting the experts that beat
    /// its own; `FERRUM_CUDA_ROUTE_TOPK=rounds`: top_k rounds of warp shuffles, each waiting on
    /// the one before. On an H100 (twentieth session, one machine, two rounds) Qwen3-30B-A3B FP8
    /// at batch 1 2.98 / 2.99 ms a token against 3.16 / 3.16, GLM-4.5-Air-FP8's first 24
    /// layers 3.82 / 3.83 against 3.88 / 3.88.
    pub route_topk: RouteTopk,
    /// At one token the MoE router's GEMV (with its pre-norm) routes the token too, its last
    /// block to finish taking the routing (`gemv_norm_route` in moe_route.cu), one launch a
    /// layer fewer; `FERRUM_CUDA_ROUTE_FUSED=0` runs `moe_route` after the router. On an H100
    /// (21st session) Qwen3-30B-A3B FP8 at batch 1 took 2.97 ms against 3.03 (one machine),
    /// 2.99 / 3.02 against 3.06 / 3.08 (another); GLM-4.5-Air-FP8's 24 layers 3.82 against
    /// 3.82, 3.72 against 3.78.
    pub route_fused: bool,
    /// GEMVs of few rows take several warps a row (`gemv_split` in linear.rs);
    /// `FERRUM_CUDA_GEMV_SPLIT=0` takes one warp a row. On an H100 Qwen3-30B-A3B FP8's o_proj
    /// took 5.06 µs against 5.33, its router 1.91 against 2.23, a batch-1 token 3.52 against
    /// 3.58 ms.
    pub gemv_split: bool,
    /// A SwiGLU MLP's gate/up GEMV and `silu_mul` in one launch at one row (`gemv_swiglu`);
    /// opt-in (`FERRUM_CUDA_GEMV_SWIGLU=1`): on an H100 the 8B with the norms apart took 6.29
    /// ms with it and without, and dense layers now take the norm fused with gate/up instead
    /// (`norm_gemv`), so it serves the shared experts and `FERRUM_CUDA_NORM_GEMV=0` only.
    pub gemv_swiglu: bool,
    /// A block's pre-norm computed inside the one-row half-weight GEMV that reads it
    /// (`gemv_norm`: one launch for `add_rms_norm` and the layer); `FERRUM_CUDA_NORM_GEMV=0`
    /// takes the two. On an H100 the 8B's add_rms_norm and QKV took 20.95 µs against 24.85, a
    /// batch-1 token 6.21 against 6.29 ms (its input norm only).
    pub norm_gemv: bool,
    /// The same before block-FP8 weights: off by default (`FERRUM_CUDA_NORM_GEMV=all` on).
    /// Under PDL the norm as its own kernel lets the GEMV's weight loads run during it: on an
    /// H100 Qwen3-30B-A3B FP8's add_rms_norm and QKV took 6.31 µs apart against 7.12 fused, a
    /// batch-1 token 3.11 / 3.09 ms against 3.39 / 3.43 (every norm fused) and 3.24 / 3.25
    /// (every norm apart: the router's bf16 GEMV does better with its norm fused);
    /// GLM-4.5-Air-FP8 (24 layers) 4.41 / 4.38 against 4.49 / 4.50 (twelfth session, one
    /// machine, two rounds).
    pub norm_gemv_fp8: bool,
    /// The norm-fused GEMVs load the norm's weight ahead of their wait for the kernel before
    /// (`gemv_norm`); `FERRUM_CUDA_NORM_EARLY=0` after the sum of squares, one memory trip
    /// later. On an H100 (21st session, one machine, two rounds) the 8B at batch 1 took 5.53 /
    /// 5.53 ms against 5.60 / 5.62 for the commit before; this A/B on another (22nd session):
    /// the 8B 5.51 against 5.59, Qwen3-30B-A3B FP8 2.96 against 2.97, GLM-4.5-Air-FP8's 24
    /// layers 3.68 against 3.70.
    pub norm_early: bool,
    /// The kernels compiled on a thread of their own while the weights load, loaded at the
    /// first launch (`backend/modules.rs`); `FERRUM_CUDA_COMPILE_ASYNC=0` waits for them in
    /// `CudaBackend::new`. Not measured on a GPU yet (`serve_8b_cold*` in gpu-check).
    pub compile_async: bool,
    /// Kernels not launched at all (`FERRUM_CUDA_SKIP=name,name`, base names as `kernels.rs`
    /// lists them): for timing only, to see what each kernel costs inside a decode graph (the
    /// outputs are wrong; start-up says so).
    pub skip: Vec<String>,
}

/// The MoE routers' top-k methods (`ROUTE_ROUNDS`, `ROUTE_RANK` in moe_route.cu).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTopk {
    Rounds = 0,
    Rank = 1,
}

/// Whether a GPU of this compute capability has FP8 tensor cores (`mma` on e4m3: sm_89 and up),
/// which `moe_expert_w8a8` needs.
fn fp8_mma(capability: (i32, i32)) -> bool {
    capability >= (8, 9)
}

/// Whether environment variable `name` is set to `value`.
fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

/// The kernels `FERRUM_CUDA_SKIP` names, with a warning: a model run without them computes
/// nothing meaningful.
fn skipped() -> Vec<String> {
    let skip: Vec<String> = std::env::var("FERRUM_CUDA_SKIP")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !skip.is_empty() {
        tracing::warn!(
            "FERRUM_CUDA_SKIP: kernels {skip:?} are not launched; outputs are wrong (timing only)"
        );
    }
    skip
}

/// The per-group split decode's fewest keys a slice by default: a 16-key tile for each of a
/// block's four warps (`GQ_KEYS`, `ATTN_WARPS` in attention.cu).
const GROUP_SLICE_KEYS: usize = 64;

/// `FERRUM_CUDA_GROUP_SLICE_KEYS`: a multiple of 16 (whole tiles); anything else is refused with
/// a warning and the default kept.
fn group_slice_keys_from_env() -> usize {
    let Ok(v) = std::env::var("FERRUM_CUDA_GROUP_SLICE_KEYS") else {
        return GROUP_SLICE_KEYS;
    };
    match v.parse::<usize>() {
        Ok(n) if n >= 16 && n.is_multiple_of(16) => n,
        _ => {
            tracing::warn!(
                "FERRUM_CUDA_GROUP_SLICE_KEYS={v:?} is not a multiple of 16: slices of at least \
                 {GROUP_SLICE_KEYS} keys"
            );
            GROUP_SLICE_KEYS
        }
    }
}

impl Tunables {
    pub(super) fn from_env(sm_count: usize, capability: (i32, i32)) -> Tunables {
        Tunables {
            gemv: env_is("FERRUM_CUDA_GEMV", "1"),
            gemv_row: !env_is("FERRUM_CUDA_GEMV_ROW", "0"),
            mma_attention: capability >= (8, 0) && !env_is("FERRUM_CUDA_MMA_ATTENTION", "0"),
            decode_group_min_blocks: if env_is("FERRUM_CUDA_DECODE_GROUP", "0") {
                usize::MAX
            } else {
                sm_count
            },
            decode_group_split: !env_is("FERRUM_CUDA_DECODE_SPLIT", "head"),
            group_slice_keys: group_slice_keys_from_env(),
            moe_device_grouped_max: std::env::var("FERRUM_CUDA_MOE_DEVICE_GROUPED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(MOE_DEVICE_GROUPED_MAX_TOKENS),
            moe_pipe: !env_is("FERRUM_CUDA_MOE_PIPE", "0"),
            moe_w8a8: fp8_mma(capability) && !env_is("FERRUM_CUDA_MOE_W8A8", "0"),
            pdl: capability.0 >= 9 && !env_is("FERRUM_CUDA_PDL", "0"),
            quant_by_row_min_rows: match std::env::var("FERRUM_CUDA_QUANT_ROW").as_deref() {
                Ok("1") => 0,
                Ok("0") => usize::MAX,
                _ => 8 * sm_count,
            },
            moe_shared_fold: !env_is("FERRUM_CUDA_MOE_SHARED_FOLD", "0"),
            route_topk: if env_is("FERRUM_CUDA_ROUTE_TOPK", "rounds") {
                RouteTopk::Rounds
            } else {
                RouteTopk::Rank
            },
            route_fused: !env_is("FERRUM_CUDA_ROUTE_FUSED", "0"),
            gemv_split: !env_is("FERRUM_CUDA_GEMV_SPLIT", "0"),
            gemv_swiglu: env_is("FERRUM_CUDA_GEMV_SWIGLU", "1"),
            norm_gemv: !env_is("FERRUM_CUDA_NORM_GEMV", "0"),
            norm_gemv_fp8: env_is("FERRUM_CUDA_NORM_GEMV", "all"),
            norm_early: !env_is("FERRUM_CUDA_NORM_EARLY", "0"),
            compile_async: !env_is("FERRUM_CUDA_COMPILE_ASYNC", "0"),
            skip: skipped(),
        }
    }
}

impl CudaBackend {
    /// Whether half-weight layers of up to eight rows take our GEMV (`FERRUM_CUDA_GEMV=1`) rather
    /// than cuBLAS; the op tests check both.
    pub fn set_half_gemv(&mut self, on: bool) {
        self.tune.gemv = on;
    }

    /// Whether one-row half-weight layers take our one-row GEMV (the default) or cuBLAS
    /// (`FERRUM_CUDA_GEMV_ROW=0`); the op tests check both.
    pub fn set_gemv_row(&mut self, on: bool) {
        self.tune.gemv_row = on;
    }

    /// Whether MoE blocks stacked from here on take their shared expert among the routed ones
    /// (the default) or leave it to the model (`FERRUM_CUDA_MOE_SHARED_FOLD=0`); the op tests
    /// check both.
    pub fn set_moe_shared_fold(&mut self, on: bool) {
        self.tune.moe_shared_fold = on;
    }

    /// Whether MoE blocks stacked from here on take their shared expert.
    pub fn moe_shared_fold(&self) -> bool {
        self.tune.moe_shared_fold
    }

    /// How the MoE routers take their top-k (`FERRUM_CUDA_ROUTE_TOPK`); the op tests check that
    /// both choose the same.
    pub fn set_route_topk(&mut self, how: RouteTopk) {
        self.tune.route_topk = how;
    }

    /// How the MoE routers take their top-k.
    pub fn route_topk(&self) -> RouteTopk {
        self.tune.route_topk
    }

    /// The fewest keys a slice of the per-group split decode takes.
    pub fn group_slice_keys(&self) -> usize {
        self.tune.group_slice_keys
    }

    /// Sets it (a multiple of 16; `FERRUM_CUDA_GROUP_SLICE_KEYS`); the op tests check another.
    pub fn set_group_slice_keys(&mut self, keys: usize) {
        assert!(
            keys >= 16 && keys.is_multiple_of(16),
            "slices of whole 16-key tiles, not {keys}"
        );
        self.tune.group_slice_keys = keys;
    }

    /// Whether a one-token MoE router's GEMV routes the token too (`FERRUM_CUDA_ROUTE_FUSED`);
    /// the op tests check both.
    pub fn set_route_fused(&mut self, on: bool) {
        self.tune.route_fused = on;
    }

    /// Whether GEMVs of few rows take several warps a row (the default) or one
    /// (`FERRUM_CUDA_GEMV_SPLIT=0`); the op tests check both.
    pub fn set_gemv_split(&mut self, on: bool) {
        self.tune.gemv_split = on;
    }

    /// Whether a SwiGLU MLP's gate/up GEMV and `silu_mul` are one launch at one row
    /// (`FERRUM_CUDA_GEMV_SWIGLU=1`); the op tests check both.
    pub fn set_gemv_swiglu(&mut self, on: bool) {
        self.tune.gemv_swiglu = on;
    }

    /// Whether a block's pre-norm is computed inside the one-row GEMV after it (the default) or
    /// runs as its own kernel (`FERRUM_CUDA_NORM_GEMV=0`); the op tests check both.
    pub fn set_norm_gemv(&mut self, on: bool) {
        self.tune.norm_gemv = on;
        self.tune.norm_gemv_fp8 = on;
    }

    /// Whether the norm-fused GEMVs load the norm's weight before their wait (the default) or
    /// after the sum of squares (`FERRUM_CUDA_NORM_EARLY=0`); the op tests check both.
    pub fn set_norm_early(&mut self, on: bool) {
        self.tune.norm_early = on;
    }

    /// Whether prefill attention of head sizes 64 and 128 runs on the tensor cores (the default)
    /// or on the f32 tiled kernel; the op tests check both.
    pub fn set_mma_attention(&mut self, on: bool) {
        self.tune.mma_attention = on;
    }

    /// Whether the device-grouped experts stream their weights through asynchronous copies
    /// (`moe_expert_pipe`, the default) or take `moe_expert_mma`; the op tests check both.
    pub fn set_moe_pipe(&mut self, on: bool) {
        self.tune.moe_pipe = on;
    }

    /// Whether block-FP8 device-grouped experts run in W8A8 on the FP8 tensor cores (the
    /// default; never before compute capability 8.9) or dequantize (`FERRUM_CUDA_MOE_W8A8=0`);
    /// the op tests check both.
    pub fn set_moe_w8a8(&mut self, on: bool) {
        self.tune.moe_w8a8 = on && fp8_mma(self.gpu.capability);
    }

    /// Whether block-FP8 device-grouped experts run in W8A8 (off before compute capability 8.9,
    /// whatever was asked).
    pub fn moe_w8a8(&self) -> bool {
        self.tune.moe_w8a8
    }

    /// The most tokens of a MoE step whose pairs are grouped on the device (`None`: the
    /// default); above, one GEMM per expert (W8A8 through cuBLASLt for block-FP8 experts). The
    /// op tests compare the two paths.
    pub fn set_moe_device_grouped_max(&mut self, tokens: Option<usize>) {
        self.tune.moe_device_grouped_max = tokens.unwrap_or(MOE_DEVICE_GROUPED_MAX_TOKENS);
    }

    /// Whether decode steps of few (token, kv head) blocks take the per-group kernel with the keys
    /// split into slices (the default) or the per-head kernel (`FERRUM_CUDA_DECODE_SPLIT=head`);
    /// the op tests check both.
    pub fn set_decode_group_split(&mut self, on: bool) {
        self.tune.decode_group_split = on;
    }

    /// The fewest (token, kv head) blocks for which decode attention takes the kernel that reads
    /// K/V once per GQA group (default: the multiprocessor count); the op tests set 0 and
    /// `usize::MAX` to check both kernels.
    pub fn set_decode_group_min_blocks(&mut self, blocks: usize) {
        self.tune.decode_group_min_blocks = blocks;
    }
}
