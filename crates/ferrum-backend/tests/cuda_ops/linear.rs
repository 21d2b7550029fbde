//! The linear layers of `cuda_ops`: half weights through our GEMVs and cuBLAS, block-FP8
//! through the GEMVs, the W8A8 GEMM and the dequantizing path, the SwiGLU gate/up with
//! `silu_mul` (`linear_swiglu`) and a pre-norm with the layer after it (`norm_linear`), each
//! against the CPU backend.

use ferrum_backend::host::HostLinear;
use ferrum_backend::{Backend, CpuBackend};
use rand_chacha::ChaCha8Rng;

use super::{compare, read, step};
use crate::common::{Up, W, rand_vec, tensor};
use ferrum_backend::cuda::CudaBackend;

pub fn linear_ops(c: &mut CpuBackend, g: &mut CudaBackend, rng: &mut ChaCha8Rng) {
    // embedding and linear layers at decode and prefill sizes (one row through our one-row GEMV
    // when k is a multiple of 8, else cuBLAS), and again through the other kernels of the A/Bs:
    // cuBLAS at one row, the opt-in eight-row half GEMV; 8200×4096 is a 67 MB weight, two chunks
    // of the pinned upload
    for &(rows, k, n) in &[
        (1usize, 577usize, 1000usize),
        (3, 1024, 1003),
        (8, 2048, 1030),
        (1, 4096, 8200),
        (1, 2048, 129),
        (1, 1024, 300),
        (17, 640, 1536),
        (64, 4096, 1024),
    ] {
        let (meta, _) = step(&[(rows, 0)], rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let x = rand_vec(rng, rows * k, 1.0);
        let w = rand_vec(rng, n * k, 0.05);
        fn lin<B: Up>(
            be: &B,
            x: &[f32],
            w: &[f32],
            rows: usize,
            k: usize,
            n: usize,
        ) -> (Vec<f32>, Vec<f32>) {
            let wt = be
                .upload_linear(HostLinear::Dense(tensor("w", vec![n, k], w)))
                .unwrap();
            let mut out = be.up(&vec![0.0; rows * n]);
            be.linear(&be.up(x), rows, &wt, &mut out);
            // the same matrix as an embedding table (n rows of k; the step's tokens are < 1000,
            // so tables of fewer rows are not looked up)
            if n < 1000 {
                return (read(be, &out, rows * n), vec![]);
            }
            let mut emb = be.up(&vec![0.0; rows * k]);
            be.embedding(&wt, &mut emb).unwrap();
            (read(be, &out, rows * n), read(be, &emb, rows * k))
        }
        let (a, ea) = lin(&*c, &x, &w, rows, k, n);
        let (b, eb) = lin(&*g, &x, &w, rows, k, n);
        compare(&format!("linear {rows}×{k} · {n}×{k}ᵀ"), &a, &b, 2e-2);
        if !ea.is_empty() {
            compare(&format!("embedding {rows} of {k}"), &ea, &eb, 1e-2);
        }
        // several warps a row where the rows are few (129 rows: eight a row, 300: four)
        g.set_gemv_split(true);
        let (b, _) = lin(&*g, &x, &w, rows, k, n);
        compare(
            &format!("linear, split GEMV {rows}×{k} · {n}×{k}ᵀ"),
            &a,
            &b,
            2e-2,
        );
        g.set_gemv_split(false);
        g.set_gemv_row(false);
        let kinds: &[(bool, &str)] = if rows == 1 {
            &[(false, ", cuBLAS"), (true, ", eight-row half GEMV")]
        } else {
            &[(true, ", half GEMV")]
        };
        for &(gemv, how) in kinds {
            g.set_half_gemv(gemv);
            let (b, _) = lin(&*g, &x, &w, rows, k, n);
            compare(&format!("linear{how} {rows}×{k} · {n}×{k}ᵀ"), &a, &b, 2e-2);
        }
        g.set_half_gemv(false);
        g.set_gemv_row(true);
    }

    // block-FP8 linear layers (e4m3 weights, one f32 scale per 128×128 tile, partial tiles at
    // the edges) against the CPU's own decode: up to 8 rows the GEMV (k = 130: its scalar
    // loads); more rows the W8A8 GEMM where rows, k and n allow it (activations quantized to
    // e4m3 per 128 values: a larger error, reported), else the dequantize + cuBLAS path
    // (n = 389). Each weight is stacked from parts (as q/k/v): the last case's parts end off a
    // 128-row tile, so its tiles do not stack and it dequantizes.
    for &(rows, k, parts) in &[
        (1usize, 320usize, &[200usize][..]),
        (1, 130, &[77]),
        (1, 2560, &[130, 70]),
        (1, 4096, &[2048]),
        (2, 2048, &[100]),
        (3, 130, &[77]),
        (8, 512, &[300]),
        (9, 256, &[389]),
        (40, 320, &[256]),
        (64, 1024, &[256, 128, 128]),
        (37, 512, &[64, 192]),
    ] {
        let n: usize = parts.iter().sum();
        let (meta, _) = step(&[(rows, 0)], rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let x = rand_vec(rng, rows * k, 1.0);
        let ws: Vec<W> = parts.iter().map(|&p| W::fp8(rng, p, k)).collect();
        fn fp8_lin<B: Up>(
            be: &B,
            x: &[f32],
            ws: &[W],
            parts: &[usize],
            rows: usize,
            k: usize,
        ) -> Vec<f32> {
            let up = ws.iter().zip(parts);
            let wt = be
                .stack(
                    up.map(|(w, &p)| be.upload_linear(w.host("w", p, k)).unwrap())
                        .collect(),
                )
                .unwrap();
            let n: usize = parts.iter().sum();
            let mut out = be.up(&vec![0.0; rows * n]);
            be.linear(&be.up(x), rows, &wt, &mut out);
            read(be, &out, rows * n)
        }
        let a = fp8_lin(&*c, &x, &ws, parts, rows, k);
        let b = fp8_lin(&*g, &x, &ws, parts, rows, k);
        // on Hopper cuBLASLt must take them (its probe at the first FP8 weight agreed)
        assert!(
            g.w8a8_fp8() || g.gpu.capability.0 != 9,
            "the W8A8 FP8 GEMM is off on a Hopper GPU (its warning says why)"
        );
        let w8a8 = g.w8a8_fp8()
            && rows > 8
            && n.is_multiple_of(16)
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| p.is_multiple_of(128));
        compare(
            &format!(
                "linear fp8 blocks {rows}×{k} · {n}×{k}ᵀ{}",
                if w8a8 { " (W8A8)" } else { "" }
            ),
            &a,
            &b,
            if w8a8 { 8e-2 } else { 2e-2 },
        );
        // the GEMVs with several warps a row where the rows are few (2048 × 4096: two a row,
        // 200 × 2560: four, 100 × 2048: four)
        if rows <= 8 {
            g.set_gemv_split(true);
            let b = fp8_lin(&*g, &x, &ws, parts, rows, k);
            compare(
                &format!("linear fp8, split GEMV {rows}×{k} · {n}×{k}ᵀ"),
                &a,
                &b,
                2e-2,
            );
            g.set_gemv_split(false);
        }
    }

    // a SwiGLU MLP's gate/up and silu_mul (`linear_swiglu`; one launch on the GPU at one row
    // with FERRUM_CUDA_GEMV_SWIGLU=1, else the two ops): half and block-FP8 weights, an inter
    // that leaves the last block part-empty, k = 130 (the scalar loads), three rows (unfused)
    for &(rows, k, inter, fp8) in &[
        (1usize, 256usize, 77usize, false),
        (1, 512, 200, true),
        (1, 130, 40, true),
        (3, 256, 77, false),
    ] {
        let (meta, _) = step(&[(rows, 0)], rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let x = rand_vec(rng, rows * k, 1.0);
        let w = if fp8 {
            W::fp8(rng, 2 * inter, k)
        } else {
            W::Dense(rand_vec(rng, 2 * inter * k, 0.05))
        };
        fn swiglu<B: Up>(
            be: &B,
            x: &[f32],
            w: &W,
            rows: usize,
            k: usize,
            inter: usize,
        ) -> Vec<f32> {
            let wt = be.upload_linear(w.host("w", 2 * inter, k)).unwrap();
            let mut gate_up = be.up(&vec![0.0; rows * 2 * inter]);
            let mut act = be.up(&vec![0.0; rows * inter]);
            be.linear_swiglu(&be.up(x), rows, &wt, inter, &mut gate_up, &mut act);
            read(be, &act, rows * inter)
        }
        let a = swiglu(&*c, &x, &w, rows, k, inter);
        for fused in [false, true] {
            g.set_gemv_swiglu(fused);
            let b = swiglu(&*g, &x, &w, rows, k, inter);
            let how = if fused { ", one launch" } else { "" };
            let kind = if fp8 { "fp8 " } else { "" };
            compare(
                &format!("linear_swiglu {kind}{rows}×{k} · {}×{k}ᵀ{how}", 2 * inter),
                &a,
                &b,
                2e-2,
            );
        }
        g.set_gemv_swiglu(false);
    }

    // a block's pre-norm and first linear layer (`norm_linear`; one launch on the GPU at one
    // row with FERRUM_CUDA_NORM_GEMV=1, else the two ops): with and without the residual add,
    // half and block-FP8 weights, split rows (129 rows: eight warps a row; 300: four), a part-
    // empty last block (1003 rows), three rows (unfused); the sum and the norm checked too
    for &(rows, k, n, fp8, add) in &[
        (1usize, 2048usize, 129usize, true, true),
        (1, 1024, 300, false, true),
        (1, 1024, 1003, false, false),
        (1, 2048, 1003, true, false),
        (1, 512, 77, true, true),
        (3, 256, 77, false, true),
    ] {
        let (meta, _) = step(&[(rows, 0)], rng);
        c.begin_step(&meta).unwrap();
        g.begin_step(&meta).unwrap();
        let x = rand_vec(rng, rows * k, 2.0);
        let y = rand_vec(rng, rows * k, 2.0);
        let gw = rand_vec(rng, k, 1.5);
        let w = if fp8 {
            W::fp8(rng, n, k)
        } else {
            W::Dense(rand_vec(rng, n * k, 0.05))
        };
        #[allow(clippy::too_many_arguments)]
        fn norm_lin<B: Up>(
            be: &B,
            x: &[f32],
            y: Option<&[f32]>,
            gw: &[f32],
            w: &W,
            rows: usize,
            k: usize,
            n: usize,
        ) -> [Vec<f32>; 3] {
            let wt = be.upload_linear(w.host("w", n, k)).unwrap();
            let gv = be.upload_vector(tensor("g", vec![k], gw)).unwrap();
            let y = y.map(|y| be.up(y));
            let (mut sum, mut normed) = (be.up(&vec![0.0; rows * k]), be.up(&vec![0.0; rows * k]));
            let mut out = be.up(&vec![0.0; rows * n]);
            let xb = be.up(x);
            be.norm_linear(
                &xb,
                y.as_ref(),
                &gv,
                1e-6,
                rows,
                &mut sum,
                &mut normed,
                &wt,
                &mut out,
            );
            let sum = if y.is_some() {
                read(be, &sum, rows * k)
            } else {
                vec![]
            };
            [sum, read(be, &normed, rows * k), read(be, &out, rows * n)]
        }
        let yr = add.then_some(&y[..]);
        let [sa, na, oa] = norm_lin(&*c, &x, yr, &gw, &w, rows, k, n);
        for fused in [false, true] {
            g.set_norm_gemv(fused);
            g.set_gemv_split(true);
            let [sb, nb, ob] = norm_lin(&*g, &x, yr, &gw, &w, rows, k, n);
            let how = if fused { ", one launch" } else { "" };
            let kind = format!(
                "{}{rows}×{k} · {n}×{k}ᵀ{how}",
                if fp8 { "fp8 " } else { "" }
            );
            let op = if add { "add_rms_norm" } else { "rms_norm" };
            if add {
                compare(&format!("norm_linear's sum {kind}"), &sa, &sb, 1e-2);
            }
            compare(&format!("norm_linear's {op} {kind}"), &na, &nb, 2e-2);
            compare(&format!("norm_linear {kind}"), &oa, &ob, 2e-2);
            // the norm's weight loaded after the sum of squares: the same values
            g.set_norm_early(false);
            let late = norm_lin(&*g, &x, yr, &gw, &w, rows, k, n);
            g.set_norm_early(true);
            assert!(
                [sb, nb, ob] == late,
                "norm_linear {kind}: the norm's weight loaded late changes the outputs"
            );
        }
        g.set_norm_gemv(false);
        g.set_gemv_split(false);
    }
}
