//! Times the CPU's paged attention on decode shapes (SmolLM2: 9 query heads, 3 kv heads of 64):
//! median of many calls per context length.
//!     cargo run --release -p ferrum-backend --example attn_bench
use ferrum_backend::cpu::{AttnSeq, AttnShape, paged_attention};
use std::time::Instant;

fn main() {
    let (heads, kvh, hd, bs) = (9usize, 3usize, 64usize, 16usize);
    let kv_dim = kvh * hd;
    for &(batch, ctx) in &[(1usize, 64usize), (1, 512), (1, 2048), (8, 512)] {
        let blocks = batch * ctx.div_ceil(bs);
        let f = |i: usize| (((i * 2654435761) % 1000) as f32) / 500.0 - 1.0;
        let kc: Vec<f32> = (0..blocks * bs * kv_dim).map(f).collect();
        let vc: Vec<f32> = (0..blocks * bs * kv_dim).map(|i| f(i + 3)).collect();
        let q: Vec<f32> = (0..batch * heads * hd).map(|i| f(i + 7)).collect();
        let tables: Vec<Vec<u32>> = (0..batch)
            .map(|b| ((b * ctx.div_ceil(bs)) as u32..((b + 1) * ctx.div_ceil(bs)) as u32).collect())
            .collect();
        let seqs: Vec<AttnSeq> = tables
            .iter()
            .enumerate()
            .map(|(b, t)| AttnSeq {
                q_start: b,
                q_len: 1,
                ctx_len: ctx,
                block_table: t,
            })
            .collect();
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: kvh,
            head_dim: hd,
            block_size: bs,
            scale: 0.125,
        };
        let mut out = vec![0f32; q.len()];
        let mut times = Vec::new();
        for _ in 0..300 {
            let t = Instant::now();
            paged_attention(&q, &kc, &vc, &seqs, &shape, &mut out);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "batch {batch} ctx {ctx}: median {:.1} µs, p10 {:.1} µs (per layer)",
            times[150], times[30]
        );
    }
}
