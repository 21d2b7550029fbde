//! MoE routing and experts against hand-computed cases, transformers and a naive loop.
use super::*;
use crate::cpu::fp8::fixture_numbers;

fn logit(p: f64) -> f32 {
    (p / (1.0 - p)).ln() as f32
}

fn route1(l: &[f32], top_k: usize, r: &Router, bias: Option<&[f32]>) -> (Vec<u32>, Vec<f32>) {
    let t = 1;
    let (mut ids, mut w) = (vec![0u32; top_k], vec![0f32; top_k]);
    route(l, t, l.len(), top_k, r, bias, &mut ids, &mut w).unwrap();
    (ids, w)
}

fn close(a: f32, b: f64, tol: f64) -> bool {
    (a as f64 - b).abs() <= tol * b.abs().max(1e-30)
}

#[test]
fn softmax_routing_by_hand() {
    // experts 1 and 3 tie for first, 4 is third
    let l = [1.0f32, 3.0, 2.0, 3.0, 2.5];
    let e: Vec<f64> = l.iter().map(|&x| ((x - 3.0) as f64).exp()).collect();
    let s: f64 = e.iter().sum();
    let plain = Router::Softmax {
        norm_topk_prob: false,
    };
    let (ids, w) = route1(&l, 3, &plain, None);
    assert_eq!(ids, [1, 3, 4], "ties: lower index first");
    for (&i, &v) in ids.iter().zip(&w) {
        assert!(close(v, e[i as usize] / s, 1e-6), "{i}: {v}");
    }
    assert_eq!(w[0].to_bits(), w[1].to_bits());
    // the exact f32 operations: exp(x - max) · (1 / Σ) with Σ in expert order
    let sum = l.iter().fold(0f32, |a, &x| a + (x - 3.0).exp());
    assert_eq!(
        w[2].to_bits(),
        ((2.5f32 - 3.0).exp() * (1.0 / sum)).to_bits()
    );

    let norm = Router::Softmax {
        norm_topk_prob: true,
    };
    let (ids, w) = route1(&l, 2, &norm, None);
    assert_eq!(ids, [1, 3]);
    assert_eq!(w, [0.5, 0.5]); // x / (x + x) is exact
    let (ids, w) = route1(&l, 3, &norm, None);
    assert_eq!(ids, [1, 3, 4]);
    let t: f64 = e[1] + e[3] + e[4];
    for (&i, &v) in ids.iter().zip(&w) {
        assert!(close(v, e[i as usize] / t, 1e-6));
    }
    // all equal: the first k experts
    let (ids, w) = route1(&[0.5; 6], 4, &norm, None);
    assert_eq!((ids, w), (vec![0, 1, 2, 3], vec![0.25; 4]));
    // NaN ranks first (torch.topk's order); a NaN logit makes the whole softmax NaN
    let (ids, _) = route1(&[0.0, 1.0, f32::NAN, 2.0], 2, &plain, None);
    assert_eq!(ids, [0, 1]);
}

#[test]
fn group_limited_routing_by_hand() {
    // 4 groups of 2. Expert 0 has the best score but its partner is poor, so group 0
    // (0.99 + 0.01) loses to groups 1 (0.6 + 0.6) and 2 (0.58 + 0.55).
    let p = [0.99, 0.01, 0.6, 0.6, 0.58, 0.55, 0.1, 0.1];
    let l: Vec<f32> = p.iter().map(|&v| logit(v)).collect();
    let sg = |e: usize| 1.0 / (1.0 + (-l[e] as f64).exp());
    let r = |norm: bool, scale: f32| Router::SigmoidGroupLimited {
        n_group: 4,
        topk_group: 2,
        norm_topk_prob: norm,
        routed_scaling_factor: scale,
    };
    let (ids, w) = route1(&l, 3, &r(false, 1.0), None);
    assert_eq!(ids, [2, 3, 4], "expert 0's group is out; 2 and 3 tie");
    for (&i, &v) in ids.iter().zip(&w) {
        assert_eq!(v.to_bits(), sigmoid(l[i as usize]).to_bits());
    }
    // one group: no limiting, expert 0 wins
    let one = Router::SigmoidGroupLimited {
        n_group: 1,
        topk_group: 1,
        norm_topk_prob: false,
        routed_scaling_factor: 1.0,
    };
    assert_eq!(route1(&l, 2, &one, None).0, [0, 2]);

    // the bias steers the choice (5 over 4, and which groups win) but the weights stay
    // the un-biased sigmoid scores
    let mut bias = [0f32; 8];
    bias[5] = 0.2; // 5: 0.75 > 4: 0.58; group 2 = 0.75 + 0.58
    bias[6] = 0.9; // 6's 1.0 is the best choice, but group 3 (1.1) loses to 1.2 and 1.33
    let (ids, w) = route1(&l, 3, &r(false, 1.0), Some(&bias));
    assert_eq!(ids, [5, 2, 3]);
    assert_eq!(w[0].to_bits(), sigmoid(l[5]).to_bits());
    // group 3 = 1.4 + 0.1 = 1.5 now beats group 2 (1.33), which beats group 1 (1.2):
    // experts 2 and 3 drop out, 6 ranks first
    bias[6] = 1.3;
    let (ids, w) = route1(&l, 3, &r(false, 1.0), Some(&bias));
    assert_eq!(ids, [6, 5, 4]);
    assert_eq!(w[0].to_bits(), sigmoid(l[6]).to_bits());

    // normalization (Σ + 1e-20) and the scaling factor, applied after it
    let (ids, w) = route1(&l, 3, &r(true, 2.5), None);
    assert_eq!(ids, [2, 3, 4]);
    let s = sg(2) + sg(3) + sg(4);
    for (&i, &v) in ids.iter().zip(&w) {
        assert!(close(v, sg(i as usize) / s * 2.5, 1e-6));
    }
    let raw: Vec<f32> = ids.iter().map(|&i| sigmoid(l[i as usize])).collect();
    let denom = 0f32 + raw[0] + raw[1] + raw[2] + 1e-20;
    for (v, r) in w.iter().zip(&raw) {
        assert_eq!(v.to_bits(), (r / denom * 2.5).to_bits());
    }
    // without normalization the factor still applies
    let (_, w) = route1(&l, 3, &r(false, 2.5), None);
    assert_eq!(w[0].to_bits(), (sigmoid(l[2]) * 2.5).to_bits());
    // group ties: lower group first (groups 1 and 2 tie, 3 is out)
    let l2: Vec<f32> = [0.2, 0.1, 0.7, 0.6, 0.6, 0.7, 0.1, 0.2]
        .iter()
        .map(|&v| logit(v))
        .collect();
    let lim = Router::SigmoidGroupLimited {
        n_group: 4,
        topk_group: 1,
        norm_topk_prob: false,
        routed_scaling_factor: 1.0,
    };
    assert_eq!(route1(&l2, 2, &lim, None).0, [2, 3]);
}

#[test]
fn routing_config_errors() {
    let l = [0f32; 8];
    let (mut ids, mut w) = (vec![0u32; 2], vec![0f32; 2]);
    let mut go = |n_group, topk_group, top_k: usize, bias: Option<&[f32]>| {
        let r = Router::SigmoidGroupLimited {
            n_group,
            topk_group,
            norm_topk_prob: true,
            routed_scaling_factor: 1.0,
        };
        route(
            &l,
            1,
            8,
            top_k,
            &r,
            bias,
            &mut ids[..top_k],
            &mut w[..top_k],
        )
    };
    assert!(go(4, 2, 2, None).is_ok());
    assert!(go(3, 1, 2, None).unwrap_err().contains("divide"));
    assert!(go(0, 1, 2, None).is_err());
    assert!(go(8, 2, 2, None).unwrap_err().contains("best two"));
    assert!(go(4, 5, 2, None).unwrap_err().contains("topk_group"));
    assert!(go(4, 0, 2, None).is_err());
    assert!(go(4, 1, 2, None).is_ok()); // 2 experts in one group: enough
    assert!(go(2, 2, 2, Some(&[0.0; 7])).unwrap_err().contains("bias"));
    let (mut ids, mut w) = (vec![0u32; 3], vec![0f32; 3]);
    let r = Router::SigmoidGroupLimited {
        n_group: 4,
        topk_group: 1,
        norm_topk_prob: true,
        routed_scaling_factor: 1.0,
    };
    let e = route(&l, 1, 8, 3, &r, None, &mut ids, &mut w).unwrap_err();
    assert!(e.contains("exceeds"), "{e}");
    let soft = Router::Softmax {
        norm_topk_prob: false,
    };
    assert!(route(&l, 1, 8, 3, &soft, Some(&[0.0; 8]), &mut ids, &mut w).is_err());
    assert!(route(&l, 1, 8, 0, &soft, None, &mut [], &mut []).is_err());
    assert!(route(&l, 1, 8, 9, &soft, None, &mut [0; 9], &mut [0.0; 9]).is_err());
    assert!(route(&l, 2, 4, 3, &soft, None, &mut ids, &mut w).is_err()); // ids too short
    assert!(route(&l[..7], 1, 8, 3, &soft, None, &mut ids, &mut w).is_err());
    assert!(route(&[], 0, 8, 3, &soft, None, &mut [], &mut []).is_ok());
}

fn bits_of(json: &str, key: &str) -> Vec<f32> {
    fixture_numbers(json, key)
        .iter()
        .map(|&b| f32::from_bits(b as u32))
        .collect()
}

/// The object `"name": {...}` of the fixture (flat enough to cut at the next `"key": {`).
fn section<'a>(json: &'a str, name: &str) -> &'a str {
    let start = json.find(&format!("\"{name}\": {{")).unwrap();
    &json[start..]
}

/// transformers' own routers (tests/fixtures/gen_moe_transformers.py): the same experts,
/// and the same weights to within float32 rounding of exp (SLEEF's vs the system's).
#[test]
fn routing_equals_transformers() {
    let json = include_str!("../../../tests/fixtures/moe_transformers.json");
    // Qwen3-MoE: sorted top-k, so the order must match too
    let q = section(json, "qwen_router");
    let (e, k) = (16, 4);
    let logits = bits_of(q, "logits");
    let t = logits.len() / e;
    for (key, norm) in [("plain", false), ("norm", true)] {
        let sub = section(q, key);
        let want_ids: Vec<u32> = fixture_numbers(sub, "ids")
            .iter()
            .map(|&v| v as u32)
            .collect();
        let want_w = bits_of(sub, "weights");
        let (mut ids, mut w) = (vec![0u32; t * k], vec![0f32; t * k]);
        let r = Router::Softmax {
            norm_topk_prob: norm,
        };
        route(&logits, t, e, k, &r, None, &mut ids, &mut w).unwrap();
        assert_eq!(ids, want_ids, "qwen {key}");
        for (a, b) in w.iter().zip(&want_w) {
            assert!(close(*a, *b as f64, 2e-7), "qwen {key}: {a} vs {b}");
        }
    }
    // GLM-4.5: `topk(sorted=False)`, so compare per expert
    let g = section(json, "glm_router");
    let logits = bits_of(g, "logits");
    let bias = bits_of(g, "bias");
    let t = logits.len() / e;
    for (key, norm) in [("plain", false), ("norm", true)] {
        let sub = section(g, key);
        let want_ids: Vec<u32> = fixture_numbers(sub, "ids")
            .iter()
            .map(|&v| v as u32)
            .collect();
        let want_w = bits_of(sub, "weights");
        let (mut ids, mut w) = (vec![0u32; t * k], vec![0f32; t * k]);
        let r = Router::SigmoidGroupLimited {
            n_group: 4,
            topk_group: 2,
            norm_topk_prob: norm,
            routed_scaling_factor: 2.5,
        };
        route(&logits, t, e, k, &r, Some(&bias), &mut ids, &mut w).unwrap();
        for tok in 0..t {
            for j in tok * k..(tok + 1) * k {
                let at = (tok * k..(tok + 1) * k)
                    .find(|&i| want_ids[i] == ids[j])
                    .unwrap_or_else(|| panic!("glm {key} token {tok}: {:?}", &ids[tok * k..]));
                assert!(
                    close(w[j], want_w[at] as f64, 2e-7),
                    "glm {key} token {tok}"
                );
            }
        }
        assert!(
            !ids[..k].contains(&3),
            "the fixture's token 0 excludes expert 3"
        );
    }
}

/// transformers' Qwen3-MoE sparse block end to end (router matmul, routing, experts).
#[test]
fn block_equals_transformers() {
    let json = include_str!("../../../tests/fixtures/moe_transformers.json");
    let b = section(json, "qwen_block");
    let (h, i, e, k) = (16, 8, 6, 2);
    let x = bits_of(b, "x");
    let t = x.len() / h;
    let router = Weight::f32(e, h, bits_of(b, "router"));
    let gu = bits_of(b, "gate_up");
    let dn = bits_of(b, "down");
    let experts: Vec<Expert> = (0..e)
        .map(|j| Expert {
            gate_up: Weight::f32(2 * i, h, gu[j * 2 * i * h..(j + 1) * 2 * i * h].to_vec()),
            down: Weight::f32(h, i, dn[j * h * i..(j + 1) * h * i].to_vec()),
        })
        .collect();
    let mut logits = vec![0f32; t * e];
    matmul_t(&x, t, &router, &mut logits);
    let (mut ids, mut w) = (vec![0u32; t * k], vec![0f32; t * k]);
    let r = Router::Softmax {
        norm_topk_prob: true,
    };
    route(&logits, t, e, k, &r, None, &mut ids, &mut w).unwrap();
    let mut scratch = MoeScratch::new(t, k, h, i);
    let mut out = vec![0f32; t * h];
    moe_experts(&x, t, h, i, &ids, &w, k, &experts, &mut scratch, &mut out);
    for key in ["grouped_mm", "eager"] {
        let want = bits_of(b, key);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{key}: {a} vs {b}");
        }
    }
}

fn rnd(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
    }
}

/// Experts in several storage formats (f32, bf16, packed fp8 with partial blocks, stacked).
fn experts(n: usize, hidden: usize, inter: usize, seed: u64) -> Vec<Expert> {
    let mut r = rnd(seed);
    (0..n)
        .map(|j| {
            let gu: Vec<f32> = (0..2 * inter * hidden).map(|_| r()).collect();
            let dn: Vec<f32> = (0..hidden * inter).map(|_| r()).collect();
            match j % 3 {
                0 => Expert {
                    gate_up: Weight::f32(2 * inter, hidden, gu),
                    down: Weight::f32(hidden, inter, dn),
                },
                1 => {
                    let bf = |v: &[f32]| -> Vec<u16> {
                        v.iter()
                            .map(|&x| half::bf16::from_f32(x).to_bits())
                            .collect()
                    };
                    Expert {
                        gate_up: Weight::bf16(inter, hidden, bf(&gu[..inter * hidden]))
                            .stack(Weight::f32(inter, hidden, gu[inter * hidden..].to_vec())),
                        down: Weight::bf16(hidden, inter, bf(&dn)),
                    }
                }
                _ => {
                    let fp8 = |rows: usize, k: usize, r: &mut dyn FnMut() -> f32| {
                        let bytes: Vec<u8> = (0..rows * k)
                            .map(|_| {
                                let b = ((r() + 0.4) * 320.0) as u8;
                                if b & 0x7F == 0x7F { 0x30 } else { b }
                            })
                            .collect();
                        let s: Vec<f32> = (0..rows.div_ceil(8) * k.div_ceil(16))
                            .map(|_| r().abs() * 0.5 + 0.01)
                            .collect();
                        Weight::fp8_block(rows, k, bytes, s, 8, 16).unwrap()
                    };
                    Expert {
                        gate_up: fp8(inter, hidden, &mut r).stack(fp8(inter, hidden, &mut r)),
                        down: fp8(hidden, inter, &mut r),
                    }
                }
            }
        })
        .collect()
}

/// The reference: each token alone, one expert at a time, single-row matmuls, summed in
/// rank order from 0.
fn naive(
    x: &[f32],
    t: usize,
    (hidden, inter, top_k): (usize, usize, usize),
    ids: &[u32],
    w: &[f32],
    experts: &[Expert],
) -> Vec<f32> {
    let mut out = vec![0f32; t * hidden];
    let (mut gu, mut act, mut y) = (vec![0f32; 2 * inter], vec![0f32; inter], vec![0f32; hidden]);
    for tok in 0..t {
        for r in 0..top_k {
            let ex = &experts[ids[tok * top_k + r] as usize];
            matmul_t(
                &x[tok * hidden..(tok + 1) * hidden],
                1,
                &ex.gate_up,
                &mut gu,
            );
            silu_mul(&gu, inter, &mut act);
            matmul_t(&act, 1, &ex.down, &mut y);
            for (o, &v) in out[tok * hidden..(tok + 1) * hidden].iter_mut().zip(&y) {
                *o += v * w[tok * top_k + r];
            }
        }
    }
    out
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn experts_equal_naive_loop_and_are_batch_invariant() {
    let (hidden, inter, n_exp, top_k) = (40, 24, 7, 3);
    let ex = experts(n_exp, hidden, inter, 3);
    let max_t = 9;
    let mut r = rnd(17);
    let x: Vec<f32> = (0..max_t * hidden).map(|_| r() * 3.0).collect();
    // routes that never use experts 2 and 5, from a real router
    let mut logits: Vec<f32> = (0..max_t * n_exp).map(|_| r() * 4.0).collect();
    for tok in 0..max_t {
        logits[tok * n_exp + 2] = -50.0;
        logits[tok * n_exp + 5] = -50.0;
    }
    let (mut ids, mut w) = (vec![0u32; max_t * top_k], vec![0f32; max_t * top_k]);
    let router = Router::Softmax {
        norm_topk_prob: true,
    };
    route(
        &logits, max_t, n_exp, top_k, &router, None, &mut ids, &mut w,
    )
    .unwrap();
    assert!(!ids.contains(&2) && !ids.contains(&5));

    let mut scratch = MoeScratch::new(max_t, top_k, hidden, inter);
    let dims = (hidden, inter, top_k);
    let mut batch7 = vec![0f32; 7 * hidden];
    let (xs, is, ws) = (&x[..7 * hidden], &ids[..7 * top_k], &w[..7 * top_k]);
    moe_experts(
        xs,
        7,
        hidden,
        inter,
        is,
        ws,
        top_k,
        &ex,
        &mut scratch,
        &mut batch7,
    );
    assert!(same_bits(&batch7, &naive(xs, 7, dims, is, ws, &ex)));
    // each token alone equals its row in the batch of 7, whatever ran before in the scratch
    for tok in 0..7 {
        let mut one = vec![0f32; hidden];
        let (xo, io, wo) = (
            &x[tok * hidden..(tok + 1) * hidden],
            &ids[tok * top_k..(tok + 1) * top_k],
            &w[tok * top_k..(tok + 1) * top_k],
        );
        moe_experts(
            xo,
            1,
            hidden,
            inter,
            io,
            wo,
            top_k,
            &ex,
            &mut scratch,
            &mut one,
        );
        assert!(
            same_bits(&one, &batch7[tok * hidden..(tok + 1) * hidden]),
            "token {tok}"
        );
    }
    // odd counts, the full scratch, and an empty batch
    for t in [1usize, 3, 5, 9] {
        let mut out = vec![0f32; t * hidden];
        let (xs, is, ws) = (&x[..t * hidden], &ids[..t * top_k], &w[..t * top_k]);
        moe_experts(
            xs,
            t,
            hidden,
            inter,
            is,
            ws,
            top_k,
            &ex,
            &mut scratch,
            &mut out,
        );
        assert!(same_bits(&out, &naive(xs, t, dims, is, ws, &ex)), "t={t}");
        assert!(same_bits(&out[..hidden.min(out.len())], &batch7[..hidden]));
    }
    moe_experts(
        &[],
        0,
        hidden,
        inter,
        &[],
        &[],
        top_k,
        &ex,
        &mut scratch,
        &mut [],
    );
}

/// A token listing one expert twice sends it more rows than the scratch holds: the group
/// runs in pieces and still equals the naive loop.
#[test]
fn oversized_expert_group_runs_in_pieces() {
    let (hidden, inter, top_k, t) = (20, 12, 2, 3);
    let ex = experts(3, hidden, inter, 5);
    let mut r = rnd(23);
    let x: Vec<f32> = (0..t * hidden).map(|_| r()).collect();
    let ids = [2u32, 2, 2, 1, 2, 2];
    let w = [0.5f32, 0.25, 0.7, 0.3, 1.5, -0.5];
    let mut scratch = MoeScratch::new(t, top_k, hidden, inter);
    let mut out = vec![0f32; t * hidden];
    moe_experts(
        &x,
        t,
        hidden,
        inter,
        &ids,
        &w,
        top_k,
        &ex,
        &mut scratch,
        &mut out,
    );
    let want = naive(&x, t, (hidden, inter, top_k), &ids, &w, &ex);
    assert!(same_bits(&out, &want));
}

#[test]
#[should_panic(expected = "expert id 7")]
fn expert_id_out_of_range_panics() {
    let ex = experts(2, 16, 8, 1);
    let mut scratch = MoeScratch::new(1, 1, 16, 8);
    let mut out = vec![0f32; 16];
    moe_experts(
        &[0.0; 16],
        1,
        16,
        8,
        &[7],
        &[1.0],
        1,
        &ex,
        &mut scratch,
        &mut out,
    );
}
