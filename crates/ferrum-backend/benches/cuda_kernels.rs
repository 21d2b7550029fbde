//! Decode-path kernels on the GPU, one at a time, at the shapes of the target models (llm.c's
//! `dev/cuda` benchmarks, beside the op tests that check them): each op is captured 32 times
//! into a CUDA graph, as a decode step runs it, and the graph replayed; the time per call, and
//! the weight (or K/V) bytes it must read over that time. Compare the rate with the copy bandwidth that
//! `scripts/gpu-check.sh` measures in the same lease (its `ceilings` step). A/B of the kernels
//! that have one (our half GEMV or cuBLAS, the MoE expert kernels) in the same run.
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

/// Calls per graph, and graph replays timed (after one untimed); on the emulator 2 and 1.
struct Reps {
    calls: usize,
    replays: usize,
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

/// Seconds per call of `op` replayed from a graph of `reps.calls` calls (graph key `key`).
fn time_op(
    be: &mut CudaBackend,
    reps: &Reps,
    meta: &StepMeta,
    key: usize,
    sync: &<CudaBackend as Backend>::Buf,
    mut op: impl FnMut(&mut CudaBackend) -> Result<()>,
) -> Result<f64> {
    be.begin_step(meta)?;
    op(be)?; // the first call outside the graph: kernels compiled, scratch grown
    be.capture_begin()?;
    let mut recorded = Ok(());
    for _ in 0..reps.calls {
        recorded = recorded.and_then(|()| op(be));
    }
    be.capture_end(key)?;
    recorded?;
    let mut host = [0f32; 1];
    be.replay(key)?;
    be.read(sync, &mut host)?;
    let t = Instant::now();
    for _ in 0..reps.replays {
        be.replay(key)?;
    }
    be.read(sync, &mut host)?;
    Ok(t.elapsed().as_secs_f64() / (reps.replays * reps.calls) as f64)
}

fn report(op: &str, secs: f64, bytes: f64) {
    println!(
        "{op:<68} {:>9.2} µs/call {:>8.0} GB/s",
        secs * 1e6,
        bytes / secs / 1e9
    );
}

fn main() -> Result<()> {
    let small = std::env::var("FERRUM_KERNEL_BENCH_SMALL").is_ok_and(|v| v == "1");
    let (div, reps) = match small {
        true => (
            8,
            Reps {
                calls: 2,
                replays: 1,
            },
        ),
        false => (
            1,
            Reps {
                calls: 32,
                replays: 10,
            },
        ),
    };
    let mut be = gpu();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let sync = be.up(&[0.0]);
    let mut key = 1_000_000;
    let mut next_key = || {
        key += 1;
        key
    };
    println!("{} calls a graph, {} replays", reps.calls, reps.replays);

    // block-FP8 GEMVs at batch 1 (Qwen3-30B-A3B's attention projections)
    for (n, k) in [(5120, 2048), (2048, 4096)] {
        let (n, k) = (n / div, k / div);
        let w = be.upload_linear(W::fp8(&mut rng, n, k).host("w", n, k))?;
        let x = be.up(&rand_vec(&mut rng, k, 1.0));
        let mut out = be.up(&vec![0.0; n]);
        let s = time_op(
            &mut be,
            &reps,
            &decode_meta(1, 1),
            next_key(),
            &sync,
            |be| {
                be.linear(&x, 1, &w, &mut out);
                Ok(())
            },
        )?;
        report(
            &format!("linear fp8 GEMV 1×{k} · {n}×{k}ᵀ"),
            s,
            (n * k) as f64,
        );
    }

    // the small ops of a batch-1 MoE layer at Qwen3-30B's width: the residual add + RMSNorm and
    // the router (bf16, 128 experts), through cuBLAS and our GEMV
    {
        let width = 2048 / div;
        let w = be.upload_vector(tensor("w", vec![width], &rand_vec(&mut rng, width, 1.0)))?;
        let x = be.up(&rand_vec(&mut rng, width, 1.0));
        let mut residual = be.up(&rand_vec(&mut rng, width, 1.0));
        let mut out = be.up(&vec![0.0; width]);
        let s = time_op(
            &mut be,
            &reps,
            &decode_meta(1, 1),
            next_key(),
            &sync,
            |be| {
                be.add_rms_norm(&mut residual, &x, &w, 1e-6, 1, &mut out);
                Ok(())
            },
        )?;
        report(&format!("add_rms_norm 1×{width}"), s, (6 * width) as f64);
        let router = be
            .upload_linear(W::Dense(rand_vec(&mut rng, 128 * width, 0.05)).host("r", 128, width))?;
        let mut logits = be.up(&vec![0.0; 128]);
        for (gemv, kind) in [(false, "cuBLAS"), (true, "our GEMV")] {
            be.set_half_gemv(gemv);
            let s = time_op(
                &mut be,
                &reps,
                &decode_meta(1, 1),
                next_key(),
                &sync,
                |be| {
                    be.linear(&out, 1, &router, &mut logits);
                    Ok(())
                },
            )?;
            report(
                &format!("router bf16 1×{width} · 128×{width}ᵀ, {kind}"),
                s,
                (2 * 128 * width) as f64,
            );
        }
        be.set_half_gemv(false);
    }

    // half linear layers at 1 and 8 rows (Llama-3.1-8B's MLP), cuBLAS and our GEMV
    for (n, k) in [(28672, 4096), (4096, 14336)] {
        let (n, k) = (n / div, k / div);
        let w = be.upload_linear(W::Dense(rand_vec(&mut rng, n * k, 0.05)).host("w", n, k))?;
        for rows in [1, 8] {
            let x = be.up(&rand_vec(&mut rng, rows * k, 1.0));
            let mut out = be.up(&vec![0.0; rows * n]);
            for (gemv, kind) in [(false, "cuBLAS"), (true, "our GEMV")] {
                be.set_half_gemv(gemv);
                let s = time_op(
                    &mut be,
                    &reps,
                    &decode_meta(rows, 1),
                    next_key(),
                    &sync,
                    |be| {
                        be.linear(&x, rows, &w, &mut out);
                        Ok(())
                    },
                )?;
                report(
                    &format!("linear bf16 {rows}×{k} · {n}×{k}ᵀ, {kind}"),
                    s,
                    (2 * n * k) as f64,
                );
            }
        }
        be.set_half_gemv(false);
    }

    // decode attention, Qwen3-30B-A3B's heads (32 query, 4 kv, 128 wide) over an fp8 cache: one
    // token over a short and a long context (split-KV), 128 tokens over 512 keys (per GQA group)
    let dims = AttnDims::new(32, 4, 128);
    let kv_dim = dims.n_kv_heads * dims.head_dim;
    for (rows, ctx) in [(1usize, 128usize), (1, 8192), (128, 512)] {
        let ctx = ctx.div_ceil(div);
        let meta = decode_meta(rows, ctx);
        let spec = KvSpec {
            num_layers: 1,
            num_blocks: meta.block_tables.len(),
            block_size: 16,
            kv_dim,
            dtype: KvDtype::Fp8E4M3,
        };
        let cache = be.alloc_kv(&spec)?;
        let q = be.up(&rand_vec(
            &mut rng,
            rows * dims.n_heads * dims.head_dim,
            1.0,
        ));
        let mut out = be.up(&vec![0.0; rows * dims.n_heads * dims.head_dim]);
        let s = time_op(&mut be, &reps, &meta, next_key(), &sync, |be| {
            be.attention(&q, &cache, 0, &dims, &mut out);
            Ok(())
        })?;
        report(
            &format!("decode attention fp8 KV, {rows} tokens × {ctx} keys, 32/4 heads of 128"),
            s,
            (2 * rows * ctx * kv_dim) as f64,
        );
    }

    // routed experts, Qwen3-30B-A3B-FP8's shape: routing and the chosen experts' SwiGLU and
    // combine, at batch 1 (per-pair GEMVs) and at 128 tokens (grouped on the device: each
    // kernel of the A/B)
    let (n_experts, top_k, hidden, inter) = (128, 8, 2048 / div, 768 / div);
    let experts = (0..n_experts)
        .map(|_| {
            let gate = W::fp8(&mut rng, 2 * inter, hidden).host("gate_up", 2 * inter, hidden);
            let down = W::fp8(&mut rng, hidden, inter).host("down", hidden, inter);
            Ok((be.upload_linear(gate)?, be.upload_linear(down)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let experts = be.experts(experts)?;
    let d = MoeDims {
        n_experts,
        top_k,
        hidden,
        inter,
        routing: Routing::Softmax {
            norm_topk_prob: true,
        },
    };
    let per_expert = (3 * inter * hidden) as f64;
    let mut scratch = be.moe_scratch(128, &d)?;
    for (rows, kernels) in [
        (
            1,
            &[
                (Some(64), false, "per-pair GEMVs"),
                (Some(64), true, "per-pair GEMVs, split GEMVs"),
            ][..],
        ),
        (
            128,
            &[
                (Some(64), false, "cp.async, 64-column chunks"),
                (Some(128), false, "cp.async, 128-column chunks"),
                (None, false, "register-staged"),
            ][..],
        ),
    ] {
        let x = be.up(&rand_vec(&mut rng, rows * hidden, 1.0));
        let logits = be.up(&rand_vec(&mut rng, rows * n_experts, 2.0));
        let mut out = be.up(&vec![0.0; rows * hidden]);
        // the experts the step reads: top_k at one token, nearly all at 128
        let chosen = (rows * top_k).min(n_experts) as f64;
        for &(pipe, split, kind) in kernels {
            be.set_moe_pipe(pipe);
            be.set_moe_gemv_split(split);
            let s = time_op(
                &mut be,
                &reps,
                &decode_meta(rows, 1),
                next_key(),
                &sync,
                |be| {
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
                },
            )?;
            report(
                &format!("moe fp8 {rows} tokens, {n_experts} experts top {top_k}: {kind}"),
                s,
                chosen * per_expert,
            );
        }
    }
    Ok(())
}
