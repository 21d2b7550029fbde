//! Every op of the CUDA backend against the CPU backend (the reference) on random inputs of many
//! shapes, odd sizes included, in the manner of llama.cpp's `test-backend-ops`: the same op runs
//! on both through the `Backend` trait and the largest error, relative to the output's scale, is
//! reported and bounded. Inputs are rounded to bf16 first, so both backends see the same values
//! and the difference is the GPU's bf16 outputs and f32 accumulation order.
//!
//! Needs a GPU, so `#[ignore]`d in the plain test run (which lists it as ignored);
//! `scripts/gpu-check.sh` runs it on the GPU machine with `--ignored`, and `scripts/cuda-emu.sh`
//! (in CI) on the CPU through the CUDA emulator (`tools/cuda-emu`).

use ferrum_backend::backend::qkv_to_cache_op_by_op;
use ferrum_backend::cpu::{RopeScaling, RopeStyle};
use ferrum_backend::{
    AttnDims, Backend, CpuBackend, KvDtype, KvSpec, MoeDims, RopeConfig, Routing, StepMeta,
    StepSeq, Weights,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
#[path = "cuda_ops/linear.rs"]
mod linear;
#[path = "cuda_ops/moe.rs"]
mod moe_ops;
use common::{Up, W, gpu, rand_vec, tensor};
use ferrum_backend::cuda::{CudaBackend, RouteTopk};
use moe_ops::{expert_weights, router_fused, shared_expert_fold, upload_experts};

fn read<B: Backend>(be: &B, x: &B::Buf, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    be.read(x, &mut out).unwrap();
    out
}

/// Max |a - b| over max |a| (a the reference), and the check.
fn compare(op: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    assert_eq!(cpu.len(), gpu.len());
    let scale = cpu.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (mut worst, mut at) = (0f32, 0);
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        // a NaN on either side counts as infinitely wrong
        let d = if a.is_nan() || b.is_nan() {
            f32::INFINITY
        } else {
            (a - b).abs()
        };
        if d > worst {
            (worst, at) = (d, i);
        }
    }
    let rel = worst / scale;
    eprintln!(
        "{op:<48} max |Δ| {worst:.3e} (scale {scale:.3e}, relative {rel:.2e}) at {at}: cpu {} gpu {}",
        cpu[at], gpu[at]
    );
    assert!(rel <= tol, "{op}: relative error {rel:.2e} > {tol:.0e}");
}

/// A step of `seqs` (new tokens, tokens already cached) over scattered blocks of 16.
fn step(seqs: &[(usize, usize)], rng: &mut ChaCha8Rng) -> (StepMeta, usize) {
    const BS: usize = 16;
    let total_blocks: usize = seqs.iter().map(|&(n, c)| (n + c).div_ceil(BS)).sum();
    let mut free: Vec<u32> = (0..total_blocks as u32).collect();
    for i in (1..free.len()).rev() {
        free.swap(i, rng.random_range(0..=i));
    }
    let mut m = StepMeta {
        block_size: BS,
        ..StepMeta::default()
    };
    for &(n, cached) in seqs {
        let ctx = n + cached;
        let start = m.block_tables.len();
        let table: Vec<u32> = free.drain(..ctx.div_ceil(BS)).collect();
        for p in cached..ctx {
            m.tokens.push(rng.random_range(0..1000));
            m.positions.push(p);
            m.slots.push(table[p / BS] as usize * BS + p % BS);
        }
        m.block_tables.extend(&table);
        m.seqs.push(StepSeq {
            q_start: m.tokens.len() - n,
            q_len: n,
            ctx_len: ctx,
            table: start..m.block_tables.len(),
        });
    }
    (m, total_blocks)
}

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh runs it"]
fn cuda_ops_match_the_cpu_backend() {
    let mut g = gpu();
    let mut c = CpuBackend::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    eprintln!("device: {}", g.device_name());

    // row-wise ops over a step of odd size
    for &(rows, width) in &[(1usize, 64usize), (7, 1031), (33, 4096)] {
        let (meta, _) = step(&[(rows, 0)], &mut rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let x = rand_vec(&mut rng, rows * width, 3.0);
        let y = rand_vec(&mut rng, rows * width, 3.0);
        let w = rand_vec(&mut rng, width, 1.5);
        let (cw, gw) = (
            c.upload_vector(tensor("w", vec![width], &w)).unwrap(),
            g.upload_vector(tensor("w", vec![width], &w)).unwrap(),
        );
        fn norms<B: Up>(be: &B, x: &[f32], y: &[f32], w: &B::Vector, rows: usize) -> [Vec<f32>; 4] {
            let n = x.len();
            let (bx, by) = (be.up(x), be.up(y));
            let mut out = be.up(&vec![0.0; n]);
            be.rms_norm(&bx, w, 1e-6, rows, &mut out);
            let plain = read(be, &out, n);
            let mut sum = be.up(&vec![0.0; n]);
            be.add_rms_norm(&bx, &by, w, 1e-6, rows, &mut sum, &mut out);
            let fused = read(be, &out, n);
            let mut acc = be.up(x);
            be.add(&mut acc, &by, n);
            [plain, fused, read(be, &sum, n), read(be, &acc, n)]
        }
        let [a, b, bs, s] = norms(&c, &x, &y, &cw, rows);
        let [ga, gb, gbs, gs] = norms(&g, &x, &y, &gw, rows);
        compare(&format!("rms_norm {rows}×{width}"), &a, &ga, 2e-2);
        compare(&format!("add_rms_norm {rows}×{width}"), &b, &gb, 2e-2);
        compare(
            &format!("add_rms_norm's sum {rows}×{width}"),
            &bs,
            &gbs,
            1e-2,
        );
        compare(&format!("add {rows}×{width}"), &s, &gs, 1e-2);
    }

    // per-head norm in place, SiLU-and-mul, QKV split with bias, row gather
    {
        let (t, heads, hd, inter) = (5usize, 6usize, 128usize, 1377usize);
        let (meta, _) = step(&[(t, 0)], &mut rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let x = rand_vec(&mut rng, t * heads * hd, 2.0);
        let w = rand_vec(&mut rng, hd, 1.0);
        let gu = rand_vec(&mut rng, t * 2 * inter, 4.0);
        let (qd, kvd) = (heads * hd, 2 * hd);
        let qkv = rand_vec(&mut rng, t * (qd + 2 * kvd), 2.0);
        let bias = rand_vec(&mut rng, qd + 2 * kvd, 0.5);
        fn misc<B: Up>(
            be: &B,
            x: &[f32],
            w: &[f32],
            gu: &[f32],
            qkv: &[f32],
            bias: &[f32],
            d: (usize, usize, usize, usize, usize),
        ) -> Vec<Vec<f32>> {
            let (t, heads, inter, qd, kvd) = d;
            let wv = be.upload_vector(tensor("w", vec![w.len()], w)).unwrap();
            let bv = be
                .upload_vector(tensor("b", vec![bias.len()], bias))
                .unwrap();
            let mut bx = be.up(x);
            be.rms_norm_inplace(&mut bx, &wv, 1e-6, t * heads);
            let mut out = be.up(&vec![0.0; t * inter]);
            be.silu_mul(&be.up(gu), t, inter, &mut out);
            let (mut q, mut k, mut v) = (
                be.up(&vec![0.0; t * qd]),
                be.up(&vec![0.0; t * kvd]),
                be.up(&vec![0.0; t * kvd]),
            );
            be.split_qkv(&be.up(qkv), t, qd, kvd, Some(&bv), &mut q, &mut k, &mut v);
            let mut picked = be.up(&vec![0.0; 3 * qd]);
            be.gather_rows(&q, qd, &[4, 0, 2], &mut picked);
            vec![
                read(be, &bx, x.len()),
                read(be, &out, t * inter),
                read(be, &q, t * qd),
                read(be, &k, t * kvd),
                read(be, &v, t * kvd),
                read(be, &picked, 3 * qd),
            ]
        }
        let d = (t, heads, inter, qd, kvd);
        let cr = misc(&c, &x, &w, &gu, &qkv, &bias, d);
        let gr = misc(&g, &x, &w, &gu, &qkv, &bias, d);
        let names = [
            "rms_norm_inplace per head",
            "silu_mul",
            "split_qkv q",
            "split_qkv k",
            "split_qkv v",
            "gather_rows",
        ];
        for ((n, a), b) in names.iter().zip(&cr).zip(&gr) {
            compare(n, a, b, 2e-2);
        }
    }

    // linear layers: half, block-FP8 and the SwiGLU gate/up (cuda_ops/linear.rs)
    linear::linear_ops(&mut c, &mut g, &mut rng);

    // rotary: neox full, interleaved partial, llama3 scaling, positions up to ~5000
    for (style, rot, scaling) in [
        (RopeStyle::Neox, 128usize, RopeScaling::None),
        (RopeStyle::Interleaved, 64, RopeScaling::None),
        (
            RopeStyle::Neox,
            128,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        ),
    ] {
        let (meta, _) = step(&[(3, 4990), (2, 0), (1, 37)], &mut rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let (t, heads, hd) = (6usize, 4usize, 128usize);
        let x = rand_vec(&mut rng, t * heads * hd, 2.0);
        let cfg = RopeConfig {
            head_dim: hd,
            rotary_dim: rot,
            theta: 500000.0,
            scaling,
            style,
        };
        fn rope<B: Up>(be: &B, cfg: &RopeConfig, x: &[f32], t: usize, heads: usize) -> Vec<f32> {
            let r = be.rope(cfg).unwrap();
            let mut bx = be.up(x);
            be.apply_rope(&r, &mut bx, t, heads);
            read(be, &bx, x.len())
        }
        compare(
            &format!("rope {style:?} rot {rot}/{hd} {:?}", cfg.scaling)
                .chars()
                .take(48)
                .collect::<String>(),
            &rope(&c, &cfg, &x, t, heads),
            &rope(&g, &cfg, &x, t, heads),
            2e-2,
        );
    }

    // paged KV write + varlen attention: a prefill chunk over cached context, a fresh prefill,
    // decodes with short and long contexts; GQA groups of 4, 7, 8, 12 and 16 (the tiled prefill
    // kernels with one, two and three blocks per tile and kv head: on the tensor cores at head
    // sizes 64 and 128, and again on the f32 one; the per-group decode kernel at 4, 7, 8 and 16),
    // head size 96 (the f32 tiled kernel), head size 256
    // (the per-token kernel) (a decode-only step over long contexts takes the split-KV kernels:
    // 3 rows × 8 heads; one over shorter ones the per-token kernel)
    let mixed: &[(usize, usize)] = &[(37, 50), (20, 0), (1, 3), (1, 700), (1, 0)];
    let long_decode: &[(usize, usize)] = &[(1, 1500), (1, 3000), (1, 5)];
    let short_decode: &[(usize, usize)] = &[(1, 3), (1, 40), (1, 0), (1, 700)];
    for &(heads, kv_heads, hd, seqs) in &[
        (8usize, 2usize, 64usize, mixed),
        (14, 2, 128, mixed),
        (12, 1, 128, mixed),
        (6, 2, 96, mixed),
        (4, 4, 256, mixed),
        (8, 2, 64, long_decode),
        (32, 4, 128, long_decode),
        (14, 2, 128, short_decode),
        (16, 2, 128, short_decode),
        (8, 2, 64, short_decode),
        (16, 1, 64, short_decode),
        (4, 4, 256, long_decode),
    ] {
        let (meta, blocks) = step(seqs, &mut rng);
        let t = meta.tokens.len();
        let kvd = kv_heads * hd;
        // first a step that writes every position's K/V (the cached context and this step's
        // tokens, as the step's own write would), then the step's attention reads them
        let mut fill = meta.clone();
        fill.tokens.clear();
        fill.positions.clear();
        fill.slots.clear();
        for (s, &(n, cached)) in fill.seqs.iter_mut().zip(seqs) {
            let table = &meta.block_tables[s.table.clone()];
            s.q_start = fill.tokens.len();
            s.q_len = cached + n;
            for p in 0..cached + n {
                fill.tokens.push(0);
                fill.positions.push(p);
                fill.slots.push(table[p / 16] as usize * 16 + p % 16);
            }
        }
        let all = fill.tokens.len();
        let k_all = rand_vec(&mut rng, all * kvd, 2.0);
        let v_all = rand_vec(&mut rng, all * kvd, 2.0);
        let q = rand_vec(&mut rng, t * heads * hd, 2.0);
        let dims = AttnDims::new(heads, kv_heads, hd);
        #[allow(clippy::too_many_arguments)]
        fn attn<B: Up>(
            be: &mut B,
            fill: &StepMeta,
            meta: &StepMeta,
            blocks: usize,
            kv: (&[f32], &[f32], usize),
            q: &[f32],
            dims: &AttnDims,
            fp8: bool,
        ) -> Vec<f32> {
            let spec = KvSpec {
                num_layers: 2,
                num_blocks: blocks,
                block_size: 16,
                kv_dim: kv.2,
                dtype: if fp8 { KvDtype::Fp8E4M3 } else { be.kv_dtype() },
            };
            let mut cache = be.alloc_kv(&spec).unwrap();
            if fp8 {
                be.set_kv_scales(&mut cache, 1, 0.5, 0.25).unwrap();
            }
            be.begin_step(fill).unwrap();
            be.write_kv(&mut cache, 1, &be.up(kv.0), &be.up(kv.1));
            be.begin_step(meta).unwrap();
            let n = q.len();
            let mut out = be.up(&vec![0.0; n]);
            be.attention(&be.up(q), &cache, 1, dims, &mut out);
            read(be, &out, n)
        }
        // the f32/bf16 cache, then an fp8 one (both backends e4m3 with k/v scales 0.5 / 0.25)
        // the kernels to check: (label, tensor-core prefill, fewest blocks for the per-group
        // decode kernel, below them the per-group kernel over slices of the keys)
        let split = (", per group, split", true, usize::MAX - 1, true);
        let kernels: &[(&str, bool, usize, bool)] = if seqs == mixed && [64, 128].contains(&hd) {
            &[
                ("", true, usize::MAX, false),
                (", f32 tiles", false, usize::MAX, false),
            ]
        } else if seqs == short_decode {
            &[
                ("", true, usize::MAX, false),
                (", per group", true, 0, false),
                split,
            ]
        } else if seqs == long_decode && [64, 128].contains(&hd) {
            &[("", true, usize::MAX, false), split]
        } else {
            &[("", true, usize::MAX, false)]
        };
        for (fp8, &(kernel, mma, group_min, group_split)) in [false, true]
            .into_iter()
            .flat_map(|f| kernels.iter().map(move |k| (f, k)))
        {
            g.set_mma_attention(mma);
            g.set_decode_group_min_blocks(group_min);
            g.set_decode_group_split(group_split);
            let kv = (&k_all[..], &v_all[..], kvd);
            let a = attn(&mut c, &fill, &meta, blocks, kv, &q, &dims, fp8);
            let b = attn(&mut g, &fill, &meta, blocks, kv, &q, &dims, fp8);
            let cache = if fp8 { "fp8" } else { "half" };
            let name =
                format!("write_kv + attention {heads}/{kv_heads}×{hd}, {t} rows, {cache}{kernel}");
            compare(&name, &a, &b, 2e-2);
            if (kernel, mma, group_min, group_split) == split {
                // fewer, longer slices (at least 144 keys: nine tiles, odd per warp)
                let keys = g.group_slice_keys();
                g.set_group_slice_keys(144);
                let long = attn(&mut g, &fill, &meta, blocks, kv, &q, &dims, fp8);
                g.set_group_slice_keys(keys);
                compare(&format!("{name}, slices of 144 keys"), &a, &long, 2e-2);
            }
        }
        g.set_mma_attention(true);
        g.set_decode_group_split(true);
    }

    // the attention's input in one op (split + bias, per-head q/k norms, rotary, K/V write; one
    // fused launch on the GPU, the separate ops on the CPU), seen through the attention over it:
    // neox and interleaved partial rotary, head sizes 64 to 256, a half and an fp8 cache
    for &(heads, kv_heads, hd, rot, neox, with_bias, norms, fp8) in &[
        (8usize, 2usize, 128usize, 128usize, true, true, false, false),
        (4, 2, 64, 32, false, false, true, true),
        (6, 3, 96, 96, true, true, true, false),
        (2, 1, 256, 256, true, false, true, true),
    ] {
        let seqs: &[(usize, usize)] = &[(5, 0), (1, 0), (9, 0)];
        let (meta, blocks) = step(seqs, &mut rng);
        let t = meta.tokens.len();
        let (qd, kvd) = (heads * hd, kv_heads * hd);
        let qkv = rand_vec(&mut rng, t * (qd + 2 * kvd), 2.0);
        let bias = rand_vec(&mut rng, qd + 2 * kvd, 0.5);
        let (qn, kn) = (rand_vec(&mut rng, hd, 1.0), rand_vec(&mut rng, hd, 1.0));
        let cfg = RopeConfig {
            head_dim: hd,
            rotary_dim: rot,
            theta: 10000.0,
            scaling: RopeScaling::None,
            style: if neox {
                RopeStyle::Neox
            } else {
                RopeStyle::Interleaved
            },
        };
        let dims = AttnDims::new(heads, kv_heads, hd);
        #[allow(clippy::too_many_arguments)]
        fn fused<B: Up>(
            be: &mut B,
            meta: &StepMeta,
            blocks: usize,
            qkv: &[f32],
            bias: Option<&[f32]>,
            norms: Option<(&[f32], &[f32])>,
            cfg: &RopeConfig,
            dims: &AttnDims,
            fp8: bool,
            op_by_op: bool,
        ) -> Vec<f32> {
            let t = meta.tokens.len();
            let (qd, kvd) = (
                dims.n_heads * dims.head_dim,
                dims.n_kv_heads * dims.head_dim,
            );
            let spec = KvSpec {
                num_layers: 1,
                num_blocks: blocks,
                block_size: 16,
                kv_dim: kvd,
                dtype: if fp8 { KvDtype::Fp8E4M3 } else { be.kv_dtype() },
            };
            let mut cache = be.alloc_kv(&spec).unwrap();
            if fp8 {
                be.set_kv_scales(&mut cache, 0, 0.5, 0.25).unwrap();
            }
            let vector =
                |name: &str, v: &[f32]| be.upload_vector(tensor(name, vec![v.len()], v)).unwrap();
            let bias = bias.map(|b| vector("bias", b));
            let norms = norms.map(|(q, k)| (vector("q_norm", q), vector("k_norm", k)));
            let rope = be.rope(cfg).unwrap();
            be.begin_step(meta).unwrap();
            let mut q = be.up(&vec![0.0; t * qd]);
            let (mut k, mut v) = (be.up(&vec![0.0; t * kvd]), be.up(&vec![0.0; t * kvd]));
            let qk_norm = norms.as_ref().map(|(q, k)| (q, k, 1e-6));
            let out = [&mut q, &mut k, &mut v];
            let (x, bias) = (be.up(qkv), bias.as_ref());
            if op_by_op {
                qkv_to_cache_op_by_op(be, &x, t, dims, bias, qk_norm, &rope, &mut cache, 0, out);
            } else {
                be.qkv_to_cache(&x, t, dims, bias, qk_norm, &rope, &mut cache, 0, out);
            }
            let mut att = be.up(&vec![0.0; t * qd]);
            be.attention(&q, &cache, 0, dims, &mut att);
            read(be, &att, t * qd)
        }
        let bias = with_bias.then_some(&bias[..]);
        let norms = norms.then_some((&qn[..], &kn[..]));
        let a = fused(
            &mut c, &meta, blocks, &qkv, bias, norms, &cfg, &dims, fp8, false,
        );
        let b = fused(
            &mut g, &meta, blocks, &qkv, bias, norms, &cfg, &dims, fp8, false,
        );
        let name = format!("qkv_to_cache + attention {heads}/{kv_heads}×{hd} rot {rot}, {t} rows");
        compare(&name, &a, &b, 2e-2);
        // the fused launch against the GPU's own separate ops: the same roundings (an ulp where
        // the per-head norm sums in another order)
        let ops = fused(
            &mut g, &meta, blocks, &qkv, bias, norms, &cfg, &dims, fp8, true,
        );
        compare(&format!("{name}, fused vs ops"), &ops, &b, 1e-2);
    }

    // routed experts: both routers, odd token counts, most experts idle at one token (the
    // dequantizing expert kernels: the W8A8 one, the default on sm_89 and up, is checked below)
    g.set_moe_w8a8(false);
    let (hidden, inter, n_experts, top_k) = (256usize, 96usize, 16usize, 4usize);
    let gates = expert_weights(&mut rng, n_experts, hidden, inter, false);
    // the same shapes in block-FP8 (as Qwen3-30B-A3B-FP8's experts)
    let fp8_gates = expert_weights(&mut rng, n_experts, hidden, inter, true);
    let bias = rand_vec(&mut rng, n_experts, 0.5);
    fn moe<B: Up>(
        be: &mut B,
        gates: &[[W; 3]],
        bias: Option<&[f32]>,
        d: &MoeDims,
        x: &[f32],
        logits: &[f32],
        rows: usize,
    ) -> Vec<f32> {
        let h = d.hidden;
        let experts = upload_experts(be, gates, d);
        let bias = bias.map(|b| be.upload_vector(tensor("bias", vec![b.len()], b)).unwrap());
        let mut scratch = be.moe_scratch(300, d).unwrap();
        let mut out = be.up(&vec![0.0; rows * h]);
        be.moe(
            &be.up(x),
            rows,
            &be.up(logits),
            bias.as_ref(),
            &experts,
            d,
            &mut scratch,
            &mut out,
        )
        .unwrap();
        read(be, &out, rows * h)
    }
    /// One MoE step of `rows` random tokens under `d` on both backends, compared: returns its
    /// inputs (hidden states, router logits, the correction bias where the router takes one),
    /// the router's name and the CPU's output, for the caller's further kernels.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn moe_checked<'b>(
        c: &mut CpuBackend,
        g: &mut CudaBackend,
        rng: &mut ChaCha8Rng,
        gates: &[[W; 3]],
        bias: &'b [f32],
        d: &MoeDims,
        rows: usize,
        ties: bool,
    ) -> (
        Vec<f32>,
        Vec<f32>,
        Option<&'b [f32]>,
        &'static str,
        Vec<f32>,
    ) {
        let x = rand_vec(rng, rows * d.hidden, 1.0);
        let mut logits = rand_vec(rng, rows * d.n_experts, 2.0);
        if ties {
            // a few distinct values among the experts: the choices' order among equal ones
            // (ties to the lower id) decides the output
            logits
                .iter_mut()
                .for_each(|l| *l = (*l * 2.0).round() / 2.0);
        }
        let (b, name) = match d.routing {
            Routing::Softmax { .. } => (None, "softmax"),
            Routing::SigmoidGroupLimited { .. } => (Some(bias), "sigmoid group-limited"),
        };
        let a = moe(c, gates, b, d, &x, &logits, rows);
        let gpu = moe(g, gates, b, d, &x, &logits, rows);
        // the routers' top-k ranked (the default) and by rounds choose the same experts: the
        // same output to the bit
        let (n, k) = (d.n_experts, d.top_k);
        let how0 = g.route_topk();
        for how in [RouteTopk::Rounds, RouteTopk::Rank] {
            g.set_route_topk(how);
            let other = moe(g, gates, b, d, &x, &logits, rows);
            assert!(
                gpu.iter()
                    .zip(&other)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "moe {name}, {rows} tokens, {n} experts top {k}: routed {how:?} differs"
            );
        }
        g.set_route_topk(how0);
        compare(
            &format!("moe {name}, {rows} tokens, {n} experts top {k}"),
            &a,
            &gpu,
            3e-2,
        );
        (x, logits, b, name, a)
    }
    let routings = [
        Routing::Softmax {
            norm_topk_prob: true,
        },
        Routing::SigmoidGroupLimited {
            n_group: 4,
            topk_group: 2,
            norm_topk_prob: true,
            routed_scaling_factor: 2.5,
        },
    ];
    for routing in routings {
        // up to 8 tokens the per-pair GEMVs, to 256 the pairs grouped on the device, above
        // the pairs grouped on the host with one GEMM per expert
        for rows in [1usize, 3, 8, 9, 37, 256, 300] {
            let d = MoeDims {
                n_experts,
                top_k,
                hidden,
                inter,
                n_shared: 0,
                routing,
            };
            let (x, logits, b, name, a) =
                moe_checked(&mut c, &mut g, &mut rng, &gates, &bias, &d, rows, false);
            let a8 = moe(&mut c, &fp8_gates, b, &d, &x, &logits, rows);
            // from 9 to 256 tokens the register-staged expert kernel (the A/B of the pipelined
            // one) against the same references, half and FP8 experts
            if (9..=256).contains(&rows) {
                g.set_moe_pipe(false);
                for (experts, ws, cpu) in [("", &gates, &a), (", fp8 experts", &fp8_gates, &a8)] {
                    let g3 = moe(&mut g, ws, b, &d, &x, &logits, rows);
                    let label =
                        format!("moe {name}{experts}, {rows} tokens, register-staged experts");
                    compare(&label, cpu, &g3, 3e-2);
                }
                g.set_moe_pipe(true);
            }
            let g2 = moe(&mut g, &fp8_gates, b, &d, &x, &logits, rows);
            // above 256 tokens the experts' GEMMs are W8A8 where their shapes allow (here the
            // down projections): the activations' e4m3 rounding adds its error
            compare(
                &format!("moe {name}, fp8 experts, {rows} tokens"),
                &a8,
                &g2,
                if rows > 256 { 8e-2 } else { 3e-2 },
            );
        }
    }
    // the W8A8 experts (`moe_expert_w8a8`, device-grouped steps of 9 to 256 tokens) against the
    // CPU's dequantized experts: both projections where the rows are whole 128-column blocks
    // (inter 128), gate/up alone with a last block of 32 of its 64 rows (inter 80: 160 rows);
    // passes of up to 32 pairs (256 tokens × 4 of 16 experts: about 64 an expert). The inputs'
    // e4m3 rounding adds its error (as the W8A8 GEMMs above 256 tokens); the outputs must differ
    // from the dequantizing kernel's, or the W8A8 kernel was not taken.
    for inter in [128usize, 80] {
        let fp8_gates = expert_weights(&mut rng, n_experts, hidden, inter, true);
        let d = MoeDims {
            n_experts,
            top_k,
            hidden,
            inter,
            n_shared: 0,
            routing: Routing::Softmax {
                norm_topk_prob: true,
            },
        };
        for rows in [9usize, 37, 256] {
            let x = rand_vec(&mut rng, rows * hidden, 1.0);
            let logits = rand_vec(&mut rng, rows * n_experts, 2.0);
            let cpu = moe(&mut c, &fp8_gates, None, &d, &x, &logits, rows);
            let pipe = moe(&mut g, &fp8_gates, None, &d, &x, &logits, rows);
            g.set_moe_w8a8(true);
            // (before compute capability 8.9 there are no FP8 tensor cores: the setting stays off)
            let taken = g.moe_w8a8();
            let w8 = moe(&mut g, &fp8_gates, None, &d, &x, &logits, rows);
            g.set_moe_w8a8(false);
            let label = format!("moe fp8 experts in W8A8, inter {inter}, {rows} tokens");
            compare(&label, &cpu, &w8, 8e-2);
            assert!(
                !taken || w8 != pipe,
                "{label}: the same outputs as the dequantizing kernel"
            );
            // the same quantized inputs through the host-grouped path's per-expert W8A8 GEMMs
            // (cuBLASLt on Hopper; both projections' rows whole 128-row tiles at inter 128):
            // bit for bit on the emulator (whose cuBLASLt sums in f32 as this kernel does); on
            // an H200 cuBLASLt's FP8 GEMM sums otherwise, 0.8–1.9 % of the scale apart, and a
            // gate/up output rounded the other way can move an activation's e4m3 code
            if inter == 128 && g.w8a8_fp8() {
                g.set_moe_device_grouped_max(Some(0));
                let lt = moe(&mut g, &fp8_gates, None, &d, &x, &logits, rows);
                g.set_moe_device_grouped_max(None);
                compare(&format!("{label}, vs cuBLASLt's W8A8"), &lt, &w8, 3e-2);
            }
        }
    }
    g.set_moe_w8a8(true); // the default again
    // both routers over more experts than a warp has lanes (several in a lane's registers; the
    // sigmoid's groups straddling lanes): 160 experts as GLM-4.5, groups of 20, top 8
    {
        let (hidden, inter, n_experts, top_k) = (64usize, 32usize, 160usize, 8usize);
        let gates = expert_weights(&mut rng, n_experts, hidden, inter, false);
        let bias = rand_vec(&mut rng, n_experts, 0.5);
        let no_bias = vec![0.0; n_experts];
        let routings = [
            Routing::Softmax {
                norm_topk_prob: true,
            },
            Routing::SigmoidGroupLimited {
                n_group: 8,
                topk_group: 3,
                norm_topk_prob: true,
                routed_scaling_factor: 2.5,
            },
        ];
        for routing in routings {
            for rows in [1usize, 37] {
                let d = MoeDims {
                    n_experts,
                    top_k,
                    hidden,
                    inter,
                    n_shared: 0,
                    routing,
                };
                moe_checked(&mut c, &mut g, &mut rng, &gates, &bias, &d, rows, false);
                // logits with many ties, no bias (whose values would part them)
                moe_checked(&mut c, &mut g, &mut rng, &gates, &no_bias, &d, rows, true);
            }
        }
    }
    // the per-pair GEMVs (up to 8 tokens) with more than eight experts a token (the down
    // projection a warp for each) and a row length that is no multiple of a
    // sixteen-byte load (one value a lane), half and FP8; over 2560 columns too (the FP8 gate/up
    // rows in two rounds of loads), and 250 (a last pair of rows a warp short of one)
    for (hidden, inter) in [(hidden, 96usize), (hidden, 100), (2560, 96), (250, 96)] {
        let (n_experts, top_k) = (12usize, 10usize);
        let d = MoeDims {
            n_experts,
            top_k,
            hidden,
            inter,
            n_shared: 0,
            routing: routings[0],
        };
        for fp8 in [false, true] {
            let gates = expert_weights(&mut rng, n_experts, hidden, inter, fp8);
            for rows in [1usize, 3] {
                let x = rand_vec(&mut rng, rows * hidden, 1.0);
                let logits = rand_vec(&mut rng, rows * n_experts, 2.0);
                let a = moe(&mut c, &gates, None, &d, &x, &logits, rows);
                let kind = if fp8 { "fp8" } else { "half" };
                let label = format!(
                    "moe softmax, {kind} experts, top {top_k} of {n_experts}, {hidden}×{inter}, {rows} tokens"
                );
                let g2 = moe(&mut g, &gates, None, &d, &x, &logits, rows);
                compare(&label, &a, &g2, 3e-2);
            }
        }
    }
    shared_expert_fold(&mut c, &mut g, &mut rng);
    router_fused(&mut c, &mut g, &mut rng);
}
