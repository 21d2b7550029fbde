//! Decode-path kernels on the GPU, one at a time, at the shapes of the target models (llm.c's
//! `dev/cuda` benchmarks, beside the op tests that check them): each op is captured 32 times
//! into a CUDA graph, as a decode step runs it, and the graph replayed; the time per call, and
//! the weight (or K/V) bytes it must read over that time. Compare the rate with the copy
//! bandwidth that `scripts/gpu-check.sh` measures in the same lease (its `ceilings` step). A/B of
//! the kernels that have one (our half GEMV or cuBLAS, the one-row GEMVs, per-head or per-group
//! split decode attention, the MoE expert kernels) in the same run.
//!
//!   cargo bench -p ferrum-backend --bench cuda_kernels   (a GPU; on the CUDA emulator with
//!                                                         FERRUM_KERNEL_BENCH_SMALL=1: shapes / 8)
//!
//! Prints a table; exits non-zero if an op fails.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use anyhow::Result;
use common::{Up, W, gpu, rand_vec, tensor};
use ferrum_backend::cuda::CudaBackend;
use ferrum_backend::{
    AttnDims, Backend, KvDtype, KvSpec, MoeDims, Routing, StepMeta, StepSeq, Weights,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The GPU backend and how each op is timed: `calls` calls a graph, `replays` timed replays (after
/// one untimed); on the emulator 2 and 1.
struct Bench {
    be: CudaBackend,
    calls: usize,
    replays: usize,
    /// A one-value buffer whose read waits for the stream.
    sync: <CudaBackend as Backend>::Buf,
    key: usize,
}

impl Bench {
    /// Times `op` (replayed from a graph over the step `meta`) and prints a row: `label`, µs a
    /// call, and `bytes` a call over that time.
    fn run(
        &mut self,
        label: &str,
        bytes: usize,
        meta: &StepMeta,
        mut op: impl FnMut(&mut CudaBackend) -> Result<()>,
    ) -> Result<()> {
        let be = &mut self.be;
        self.key += 1;
        be.begin_step(meta)?;
        op(be)?; // the first call outside the graph: kernels compiled, scratch grown
        be.capture_begin()?;
        let mut recorded = Ok(());
        for _ in 0..self.calls {
            recorded = recorded.and_then(|()| op(be));
        }
        be.capture_end(self.key)?;
        recorded?;
        let mut host = [0f32; 1];
        be.replay(self.key)?;
        be.read(&self.sync, &mut host)?;
        let t = Instant::now();
        for _ in 0..self.replays {
            be.replay(self.key)?;
        }
        be.read(&self.sync, &mut host)?;
        let secs = t.elapsed().as_secs_f64() / (self.replays * self.calls) as f64;
        println!(
            "{label:<80} {:>9.2} µs/call {:>8.0} GB/s",
            secs * 1e6,
            bytes as f64 / secs / 1e9
        );
        Ok(())
    }
}

/// A decode step's metadata: `rows` sequences of one new token each, every one `ctx` tokens into
/// its context (consecutive cache blocks of 16).
fn decode_meta(rows: usize, ctx: usize) -> StepMeta {
    let per = ctx.div_ceil(16);
    StepMeta {
        tokens: vec![0; rows],
        positions: vec![ctx - 1; rows],
        slots: (0..rows).map(|i| i * per * 16 + ctx - 1).collect(),
        seqs: (0..rows)
            .map(|i| StepSeq {
                q_start: i,
                q_len: 1,
                ctx_len: ctx,
                table: i * per..(i + 1) * per,
            })
            .collect(),
        block_tables: (0..(rows * per) as u32).collect(),
        block_size: 16,
    }
}

fn main() -> Result<()> {
    let small = std::env::var("FERRUM_KERNEL_BENCH_SMALL").is_ok_and(|v| v == "1");
    let (div, calls, replays) = if small { (8, 2, 1) } else { (1, 32, 10) };
    let be = gpu();
    let sync = be.up(&[0.0]);
    let mut b = Bench {
        be,
        calls,
        replays,
        sync,
        key: 1_000_000,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    println!("{calls} calls a graph, {replays} replays");
    let one = decode_meta(1, 1);

    // block-FP8 GEMVs at batch 1 (Qwen3-30B-A3B's attention projections)
    for (n, k) in [(5120, 2048), (2048, 4096)] {
        let (n, k) = (n / div, k / div);
        let w = b.be.upload_linear(W::fp8(&mut rng, n, k).host("w", n, k))?;
        let x = b.be.up(&rand_vec(&mut rng, k, 1.0));
        let mut out = b.be.up(&vec![0.0; n]);
        // one warp a row, then several where the rows are few (the default)
        for split in [false, true] {
            b.be.set_gemv_split(split);
            let how = if split { ", split rows" } else { "" };
            let label = format!("linear fp8 GEMV 1×{k} · {n}×{k}ᵀ{how}");
            b.run(&label, n * k, &one, |be| {
                be.linear(&x, 1, &w, &mut out);
                Ok(())
            })?;
        }
    }

    // the small ops of a batch-1 MoE layer at Qwen3-30B's width: the residual add + RMSNorm, and
    // the router (bf16, 128 experts) through cuBLAS and our GEMV
    let width = 2048 / div;
    let norm =
        b.be.upload_vector(tensor("w", vec![width], &rand_vec(&mut rng, width, 1.0)))?;
    let x = b.be.up(&rand_vec(&mut rng, width, 1.0));
    let residual = b.be.up(&rand_vec(&mut rng, width, 1.0));
    let mut sum = b.be.up(&vec![0.0; width]);
    let mut normed = b.be.up(&vec![0.0; width]);
    b.run(&format!("add_rms_norm 1×{width}"), 6 * width, &one, |be| {
        be.add_rms_norm(&residual, &x, &norm, 1e-6, 1, &mut sum, &mut normed);
        Ok(())
    })?;
    // the norm, then Qwen3's QKV GEMV over its output: two launches, then one (`gemv_norm`)
    let (n, k) = (5120 / div, width);
    let qkv = b.be.upload_linear(W::fp8(&mut rng, n, k).host("w", n, k))?;
    let mut out = b.be.up(&vec![0.0; n]);
    for fused in [false, true] {
        b.be.set_norm_gemv(fused);
        let how = if fused { "in one launch" } else { "then" };
        let label = format!("add_rms_norm 1×{k}, {how} fp8 GEMV · {n}×{k}ᵀ");
        b.run(&label, n * k, &one, |be| {
            let y = Some(&x);
            be.norm_linear(
                &residual,
                y,
                &norm,
                1e-6,
                1,
                &mut sum,
                &mut normed,
                &qkv,
                &mut out,
            );
            Ok(())
        })?;
    }
    b.be.set_norm_gemv(false);
    let router = W::Dense(rand_vec(&mut rng, 128 * width, 0.05)).host("r", 128, width);
    let router = b.be.upload_linear(router)?;
    let mut logits = b.be.up(&vec![0.0; 128]);
    let kinds = [
        (false, false, "cuBLAS"),
        (true, false, "our one-row GEMV"),
        (true, true, "our one-row GEMV, split rows"),
    ];
    for (row, split, kind) in kinds {
        b.be.set_gemv_row(row);
        b.be.set_gemv_split(split);
        let label = format!("router bf16 1×{width} · 128×{width}ᵀ, {kind}");
        b.run(&label, 2 * 128 * width, &one, |be| {
            be.linear(&normed, 1, &router, &mut logits);
            Ok(())
        })?;
    }

    // half linear layers at 1 and 8 rows (Llama-3.1-8B's MLP), cuBLAS and our GEMV
    for (n, k) in [(28672, 4096), (4096, 14336)] {
        let (n, k) = (n / div, k / div);
        let w = W::Dense(rand_vec(&mut rng, n * k, 0.05)).host("w", n, k);
        let w = b.be.upload_linear(w)?;
        for rows in [1, 8] {
            let x = b.be.up(&rand_vec(&mut rng, rows * k, 1.0));
            let mut out = b.be.up(&vec![0.0; rows * n]);
            let kinds = [
                (false, false, "cuBLAS"),
                (true, false, "our GEMV"),
                (false, true, "our one-row GEMV"),
            ];
            for (gemv, row, kind) in kinds.into_iter().take(if rows == 1 { 3 } else { 2 }) {
                b.be.set_half_gemv(gemv);
                b.be.set_gemv_row(row);
                let label = format!("linear bf16 {rows}×{k} · {n}×{k}ᵀ, {kind}");
                b.run(&label, 2 * n * k, &decode_meta(rows, 1), |be| {
                    be.linear(&x, rows, &w, &mut out);
                    Ok(())
                })?;
            }
        }
    }
    b.be.set_half_gemv(false);
    b.be.set_gemv_row(true);

    // the 8B's gate/up and silu_mul at one row: two launches, then one (`gemv_swiglu`)
    let (inter, k) = (14336 / div, 4096 / div);
    let w = W::Dense(rand_vec(&mut rng, 2 * inter * k, 0.05)).host("w", 2 * inter, k);
    let w = b.be.upload_linear(w)?;
    let x = b.be.up(&rand_vec(&mut rng, k, 1.0));
    let mut gate_up = b.be.up(&vec![0.0; 2 * inter]);
    let mut act = b.be.up(&vec![0.0; inter]);
    for fused in [false, true] {
        b.be.set_gemv_swiglu(fused);
        let how = if fused {
            "one launch"
        } else {
            "GEMV, then silu_mul"
        };
        let label = format!("bf16 1×{k} · {}×{k}ᵀ and SiLU-and-mul, {how}", 2 * inter);
        b.run(&label, 2 * 2 * inter * k, &one, |be| {
            be.linear_swiglu(&x, 1, &w, inter, &mut gate_up, &mut act);
            Ok(())
        })?;
    }
    b.be.set_gemv_swiglu(false);

    // the 8B's input norm and QKV GEMV (bf16, 6144 rows of 4096) at one row: two launches,
    // then one (`gemv_norm`)
    let (n, k) = (6144 / div, 4096 / div);
    let w = W::Dense(rand_vec(&mut rng, n * k, 0.05)).host("w", n, k);
    let w = b.be.upload_linear(w)?;
    let norm =
        b.be.upload_vector(tensor("g", vec![k], &rand_vec(&mut rng, k, 1.0)))?;
    let (x, y) = (
        b.be.up(&rand_vec(&mut rng, k, 1.0)),
        b.be.up(&rand_vec(&mut rng, k, 1.0)),
    );
    let (mut sum, mut normed) = (b.be.up(&vec![0.0; k]), b.be.up(&vec![0.0; k]));
    let mut out = b.be.up(&vec![0.0; n]);
    for fused in [false, true] {
        b.be.set_norm_gemv(fused);
        let how = if fused { "in one launch" } else { "then" };
        let label = format!("add_rms_norm 1×{k}, {how} bf16 GEMV · {n}×{k}ᵀ");
        b.run(&label, 2 * n * k, &one, |be| {
            be.norm_linear(
                &x,
                Some(&y),
                &norm,
                1e-6,
                1,
                &mut sum,
                &mut normed,
                &w,
                &mut out,
            );
            Ok(())
        })?;
    }
    b.be.set_norm_gemv(false);

    // decode attention, Qwen3-30B-A3B's heads (32 query, 4 kv, 128 wide) over an fp8 cache: one
    // token over a short and a long context, 16 over 8000 keys (per head, split-KV past 1024
    // keys; and per GQA group over slices of the keys), 128 tokens over 512 keys (per GQA group)
    let dims = AttnDims::new(32, 4, 128);
    let kv_dim = dims.n_kv_heads * dims.head_dim;
    let shapes = [
        (1usize, 128usize, false),
        (1, 128, true),
        (1, 8192, false),
        (1, 8192, true),
        (16, 8000, false),
        (16, 8000, true),
        (128, 512, false),
    ];
    for (rows, ctx, group_split) in shapes {
        b.be.set_decode_group_split(group_split);
        let ctx = ctx.div_ceil(div);
        let meta = decode_meta(rows, ctx);
        let spec = KvSpec {
            num_layers: 1,
            num_blocks: meta.block_tables.len(),
            block_size: 16,
            kv_dim,
            dtype: KvDtype::Fp8E4M3,
        };
        let cache = b.be.alloc_kv(&spec)?;
        let q_len = rows * dims.n_heads * dims.head_dim;
        let q = b.be.up(&rand_vec(&mut rng, q_len, 1.0));
        let mut out = b.be.up(&vec![0.0; q_len]);
        let how = if group_split {
            ", per group, split"
        } else {
            ""
        };
        let label =
            format!("decode attention fp8 KV, {rows} tokens × {ctx} keys, 32/4 heads of 128{how}");
        b.run(&label, 2 * rows * ctx * kv_dim, &meta, |be| {
            be.attention(&q, &cache, 0, &dims, &mut out);
            Ok(())
        })?;
    }

    // routed experts, Qwen3-30B-A3B-FP8's shape: routing and the chosen experts' SwiGLU and
    // combine, at batch 1 (per-pair GEMVs) and at 128 tokens (grouped on the device), each
    // kernel of the A/B
    let (n_experts, top_k, hidden, inter) = (128, 8, 2048 / div, 768 / div);
    let experts = (0..n_experts)
        .map(|_| {
            let gate = W::fp8(&mut rng, 2 * inter, hidden).host("gate_up", 2 * inter, hidden);
            let down = W::fp8(&mut rng, hidden, inter).host("down", hidden, inter);
            Ok((b.be.upload_linear(gate)?, b.be.upload_linear(down)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let (experts, _) = b.be.experts(experts, None)?;
    let routing = Routing::Softmax {
        norm_topk_prob: true,
    };
    let d = MoeDims {
        n_experts,
        top_k,
        hidden,
        inter,
        n_shared: 0,
        routing,
    };
    let mut scratch = b.be.moe_scratch(128, &d)?;
    let kernels: [(usize, bool, bool, &str); 4] = [
        (1, true, false, "per-pair GEMVs"),
        (128, true, false, "cp.async"),
        (128, false, false, "register-staged"),
        (128, true, true, "W8A8 tensor cores"),
    ];
    for (rows, pipe, w8a8, kind) in kernels {
        let x = b.be.up(&rand_vec(&mut rng, rows * hidden, 1.0));
        let logits = b.be.up(&rand_vec(&mut rng, rows * n_experts, 2.0));
        let mut out = b.be.up(&vec![0.0; rows * hidden]);
        b.be.set_moe_pipe(pipe);
        b.be.set_moe_w8a8(w8a8);
        // the experts a step reads: top_k at one token, nearly all at 128
        let bytes = (rows * top_k).min(n_experts) * 3 * inter * hidden;
        let label = format!("moe fp8 {rows} tokens, {n_experts} experts top {top_k}: {kind}");
        b.run(&label, bytes, &decode_meta(rows, 1), |be| {
            be.moe(
                &x,
                rows,
                &logits,
                None,
                &experts,
                &d,
                &mut scratch,
                &mut out,
            )
        })?;
    }
    Ok(())
}
