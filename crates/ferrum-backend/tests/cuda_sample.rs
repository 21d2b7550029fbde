//! Sampling on the device against the host reference sampler (`ferrum_engine::sampling`), both
//! through the `Backend` trait on the same logits: greedy rows, the filters and the seeded draw,
//! structured output's bitmasks, the processors that read more than the row (allowed ids, logit
//! bias, `min_tokens`, penalties), logprobs and prompt logprobs. Greedy choices and logprob ranks
//! must match exactly; a seeded draw may land the other side of a filter's boundary (f32 sums on
//! the device, f64 on the host) in a few rows.
//!
//! Needs a GPU, so `#[ignore]`d in the plain test run; `scripts/gpu-check.sh` runs it on the GPU
//! machine with `--ignored`, and `scripts/cuda-emu.sh` (in CI) through the CUDA emulator.

mod common;
use common::{Up, gpu, rand_vec};
use ferrum_backend::{Backend, CpuBackend, LogitsRow, RowOutput};
use ferrum_engine::{SamplingParams, StepSeq, TokenLogprobs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
#[ignore = "needs a GPU: scripts/gpu-check.sh runs it"]
fn device_sampling_matches_the_host_sampler() {
    let g = gpu();
    let c = CpuBackend::new();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    eprintln!("device: {}", g.device_name());
    filters_and_draws(&c, &g, &mut rng);
    processors_and_logprobs(&c, &g, &mut rng);
    greedy_verification(&c, &g, &mut rng);
}

/// Greedy rows, temperature / min-p / top-k / top-p and the seeded draw, with and without
/// structured output's bitmasks.
fn filters_and_draws(c: &CpuBackend, g: &ferrum_backend::cuda::CudaBackend, rng: &mut ChaCha8Rng) {
    // greedy sampling on the device against the host sampler: rows with ties, NaN and -inf
    {
        let vocab = 49_157usize;
        let n = 5usize;
        let mut logits = rand_vec(rng, n * vocab, 4.0);
        logits[vocab + 7] = 9.0; // a tie: the first one wins
        logits[vocab + 9000] = 9.0;
        logits[2 * vocab + 3] = f32::NAN; // NaN never wins
        for v in &mut logits[3 * vocab..4 * vocab] {
            *v = f32::NEG_INFINITY; // nothing finite: token 0
        }
        let params = ferrum_engine::SamplingParams::greedy();
        let tokens = [1u32, 2, 3];
        let seq = ferrum_engine::StepSeq {
            req_id: 0,
            seq_index: 0,
            tokens: &tokens,
            num_prompt_tokens: 3,
            num_computed: 2,
            num_new: 1,
            block_table: &[],
            sample: true,
            params: &params,
            prompt_logprobs_from: None,
            eos_token_ids: &[],
            draft: &[],
        };
        let rows = vec![ferrum_backend::LogitsRow::Sample(&seq); n];
        let ids = |be: &dyn Fn() -> Vec<ferrum_backend::RowOutput>| sampled_ids(be());
        let host = vec![0f32; n * vocab];
        let cpu_logits = c.up(&logits);
        let a = ids(&|| {
            c.sample(&cpu_logits, vocab, &rows, &mut host.clone())
                .unwrap()
        });
        let gpu_logits = g.up(&logits);
        let b = ids(&|| {
            g.sample(&gpu_logits, vocab, &rows, &mut host.clone())
                .unwrap()
        });
        eprintln!("greedy sample on the device: {b:?} (host: {a:?})");
        assert_eq!(a, b);
    }

    // temperature, min-p, top-k, top-p and the seeded draw on the device against the host
    // sampler: the same uniform per row (seeded), so the same token unless a token sits right at
    // a filter's boundary (f32 sums on the device, f64 on the host)
    {
        let vocab = 3001usize;
        type Cfg = (f32, i32, f32, f32); // temperature, top_k, top_p, min_p
        let configs: [(&str, Cfg); 9] = [
            ("plain", (1.0, -1, 1.0, 0.0)),
            ("top_k 1", (0.7, 1, 1.0, 0.0)),
            ("top_p tiny", (1.0, -1, 1e-6, 0.0)),
            ("min_p 1", (1.0, -1, 1.0, 1.0)),
            ("top_k 50", (0.8, 50, 1.0, 0.0)),
            ("top_p 0.9", (1.2, -1, 0.9, 0.0)),
            ("min_p 0.05", (1.0, -1, 1.0, 0.05)),
            ("all", (0.9, 40, 0.8, 0.02)),
            ("ties, top_p 0.3", (1.0, -1, 0.3, 0.0)),
        ];
        let seeds = 6usize;
        let n = configs.len() * seeds + 1; // and one greedy row
        let mut logits = rand_vec(rng, n * vocab, 3.0);
        // row block 8: five tokens tied far above the rest, each ~0.2 of the mass: top-p 0.3
        // keeps the two lowest ids
        for seed in 0..seeds {
            let row = &mut logits[(8 * seeds + seed) * vocab..][..vocab];
            for id in [10, 20, 30, 40, 50] {
                row[id] = 14.0;
            }
        }
        let mut params = Vec::new();
        for (_, (t, k, p, mp)) in configs {
            for seed in 0..seeds {
                params.push(ferrum_engine::SamplingParams {
                    temperature: t,
                    top_k: k,
                    top_p: p,
                    min_p: mp,
                    seed: Some(1000 + seed as u64),
                    ..Default::default()
                });
            }
        }
        params.push(ferrum_engine::SamplingParams::greedy());
        let tokens = [1u32, 2, 3, 4];
        let seqs: Vec<_> = params
            .iter()
            .enumerate()
            .map(|(i, sp)| ferrum_engine::StepSeq {
                req_id: i as u64,
                seq_index: 0,
                tokens: &tokens,
                num_prompt_tokens: 3,
                num_computed: 3,
                num_new: 1,
                block_table: &[],
                sample: true,
                params: sp,
                prompt_logprobs_from: None,
                eos_token_ids: &[],
                draft: &[],
            })
            .collect();
        let rows: Vec<_> = seqs.iter().map(ferrum_backend::LogitsRow::Sample).collect();
        let ids = sampled_ids;
        let mut host = vec![0f32; n * vocab];
        let a = ids(c.sample(&c.up(&logits), vocab, &rows, &mut host).unwrap());
        let b = ids(g.sample(&g.up(&logits), vocab, &rows, &mut host).unwrap());
        // the largest logit of row r (bf16 inputs: several tokens may share it)
        let top = |r: usize| {
            logits[r * vocab..][..vocab]
                .iter()
                .copied()
                .fold(f32::MIN, f32::max)
        };
        let mut differ = 0;
        for (ci, (name, _)) in configs.iter().enumerate() {
            let (ha, da) = (&a[ci * seeds..][..seeds], &b[ci * seeds..][..seeds]);
            eprintln!("sample {name:<16} host {ha:?} device {da:?}");
            differ += ha.iter().zip(da).filter(|(x, y)| x != y).count();
            if ["top_k 1", "top_p tiny", "min_p 1"].contains(name) {
                for (s, &t) in da.iter().enumerate() {
                    let r = ci * seeds + s;
                    assert_eq!(
                        logits[r * vocab + t as usize],
                        top(r),
                        "{name}: only the most likely tokens may be drawn"
                    );
                }
            }
            if *name == "ties, top_p 0.3" {
                assert!(da.iter().all(|&t| t == 10 || t == 20), "{name}: {da:?}");
            }
        }
        assert_eq!(a[n - 1], b[n - 1], "the greedy row");
        // the draws really sample: the plain rows do not all land on one token
        let plain = &b[..seeds];
        assert!(
            plain.iter().any(|&t| t != plain[0]),
            "plain rows: {plain:?}"
        );
        eprintln!(
            "sample on the device: {differ} of {} seeded draws differ from the host's",
            n - 1
        );
        assert!(differ <= 2, "{differ} draws differ");

        // the plain rows alone: a step of temperature-only rows takes the sampler that spreads a
        // row over blocks (3001 ids: 47 of its 64 chunks hold any)
        let plain_rows = &rows[..seeds];
        let a = ids(c
            .sample(&c.up(&logits), vocab, plain_rows, &mut host)
            .unwrap());
        let b = ids(g
            .sample(&g.up(&logits), vocab, plain_rows, &mut host)
            .unwrap());
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        eprintln!("plain sample on the device, chunked: host {a:?} device {b:?}");
        assert!(differ <= 1, "{differ} chunked draws differ");

        // the same rows under structured output's token bitmasks, 40 random tokens allowed each
        let words = vocab.div_ceil(32);
        let masks: Vec<Vec<u32>> = (0..n)
            .map(|_| {
                let mut m = vec![0u32; words];
                for _ in 0..40 {
                    let t = rng.random_range(0..vocab);
                    m[t / 32] |= 1 << (t % 32);
                }
                m
            })
            .collect();
        let rows: Vec<_> = seqs
            .iter()
            .zip(&masks)
            .map(|(seq, mask)| ferrum_backend::LogitsRow::Constrained { seq, mask })
            .collect();
        // every row, then the plain ones alone (the chunked sampler)
        for (rows, what, most) in [(&rows[..], "rows", 2), (&rows[..seeds], "plain rows", 1)] {
            let a = ids(c.sample(&c.up(&logits), vocab, rows, &mut host).unwrap());
            let b = ids(g.sample(&g.up(&logits), vocab, rows, &mut host).unwrap());
            for (r, &t) in b.iter().enumerate() {
                assert!(
                    masks[r][t as usize / 32] >> (t % 32) & 1 == 1,
                    "{what}, row {r}: token {t} is masked"
                );
            }
            let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            let m = rows.len();
            eprintln!(
                "masked sample on the device, {what}: {differ} of {m} differ from the host's"
            );
            assert!(differ <= most, "{differ} masked {what} differ");
        }
    }

    // temperature-only rows at Qwen3's 151936 ids (the chunked sampler), one of them NaN in
    // places and one with nothing finite (token 0, as the host)
    {
        let vocab = 151_936usize;
        let n = 6usize;
        let mut logits = rand_vec(rng, n * vocab, 3.0);
        for i in (0..vocab).step_by(7) {
            logits[4 * vocab + i] = f32::NAN;
        }
        for v in &mut logits[5 * vocab..6 * vocab] {
            *v = f32::NEG_INFINITY;
        }
        let params: Vec<_> = (0..n)
            .map(|i| ferrum_engine::SamplingParams {
                temperature: 0.6 + 0.2 * i as f32,
                seed: Some(77 + i as u64),
                ..Default::default()
            })
            .collect();
        let tokens = [1u32, 2, 3, 4];
        let seqs: Vec<_> = params.iter().map(|p| seq(&tokens, 3, p, &[])).collect();
        let rows: Vec<_> = seqs.iter().map(ferrum_backend::LogitsRow::Sample).collect();
        let mut host = vec![0f32; n * vocab];
        let a = sampled_ids(c.sample(&c.up(&logits), vocab, &rows, &mut host).unwrap());
        let b = sampled_ids(g.sample(&g.up(&logits), vocab, &rows, &mut host).unwrap());
        eprintln!("plain sample over {vocab} ids on the device: host {a:?} device {b:?}");
        assert_eq!(b[n - 1], 0, "nothing finite: token 0");
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(differ <= 1, "{differ} draws over {vocab} ids differ");
    }
}

/// The sampled ids of a step's outputs (every row a sampled one).
fn sampled_ids(out: Vec<ferrum_backend::RowOutput>) -> Vec<u32> {
    out.into_iter()
        .map(|o| match o {
            ferrum_backend::RowOutput::Sampled(s) => s.id,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// A sequence of `tokens` whose first `prompt` are the prompt.
fn seq<'a>(
    tokens: &'a [u32],
    prompt: usize,
    params: &'a SamplingParams,
    eos: &'a [u32],
) -> StepSeq<'a> {
    StepSeq {
        req_id: 0,
        seq_index: 0,
        tokens,
        num_prompt_tokens: prompt,
        num_computed: tokens.len() - 1,
        num_new: 1,
        block_table: &[],
        sample: true,
        params,
        prompt_logprobs_from: None,
        eos_token_ids: eos,
        draft: &[],
    }
}

/// The sampled id and its logprobs, or a prompt row's logprobs (id: the target).
fn parts(o: RowOutput) -> (u32, Option<TokenLogprobs>) {
    match o {
        RowOutput::Sampled(s) => (s.id, s.logprobs),
        RowOutput::Prompt(l) => (l.token_id, Some(l)),
        other => panic!("{other:?}"),
    }
}

/// The processors between the raw logprobs and the filters, in chunks of more rows than one
/// launch processes, and logprobs (sampled rows, prompt rows, masked rows, rows with NaN and with
/// nothing finite) against the host's.
fn processors_and_logprobs(
    c: &CpuBackend,
    g: &ferrum_backend::cuda::CudaBackend,
    rng: &mut ChaCha8Rng,
) {
    let vocab = 3001usize;
    let seeds = 24usize;
    // (name, params, prompt tokens, output tokens, eos ids); `A`/`B`: the row's largest and
    // second-largest logits' ids, filled in per row below
    const A: u32 = u32::MAX;
    const B: u32 = u32::MAX - 1;
    let greedy = SamplingParams::greedy;
    type Spec = (&'static str, SamplingParams, Vec<u32>, Vec<u32>, Vec<u32>);
    let mut specs: Vec<Spec> = vec![
        (
            "bias forces",
            SamplingParams {
                logit_bias: vec![(1234, 100.0)],
                ..greedy()
            },
            vec![1],
            vec![],
            vec![],
        ),
        (
            "bias bans the top",
            SamplingParams {
                logit_bias: vec![(A, -100.0), (7, 0.5)],
                ..greedy()
            },
            vec![1],
            vec![],
            vec![],
        ),
        (
            "allowed ids",
            SamplingParams {
                allowed_token_ids: Some(vec![5, 17, 2999, 4000]),
                ..greedy()
            },
            vec![1],
            vec![],
            vec![],
        ),
        (
            "min_tokens pending",
            SamplingParams {
                min_tokens: 5,
                stop_token_ids: vec![A],
                ..greedy()
            },
            vec![1],
            vec![9, 9],
            vec![B],
        ),
        (
            "min_tokens met",
            SamplingParams {
                min_tokens: 2,
                stop_token_ids: vec![A],
                ..greedy()
            },
            vec![1],
            vec![9, 9],
            vec![B],
        ),
        (
            "repetition",
            SamplingParams {
                repetition_penalty: 1.5,
                ..greedy()
            },
            vec![A, 3, A, 11],
            vec![B],
            vec![],
        ),
        (
            "frequency, presence",
            SamplingParams {
                frequency_penalty: 0.7,
                presence_penalty: 0.4,
                ..greedy()
            },
            vec![2],
            vec![A, A, 12],
            vec![],
        ),
        (
            "greedy, logprobs 3",
            SamplingParams {
                logprobs: Some(3),
                ..greedy()
            },
            vec![1],
            vec![],
            vec![],
        ),
        (
            "greedy, logprobs 0",
            SamplingParams {
                logprobs: Some(0),
                ..greedy()
            },
            vec![1],
            vec![],
            vec![],
        ),
    ];
    for seed in 0..seeds {
        specs.push((
            "sampled, all processors",
            SamplingParams {
                temperature: 0.8,
                top_k: 50,
                top_p: 0.95,
                repetition_penalty: 1.2,
                frequency_penalty: 0.2,
                presence_penalty: 0.1,
                logit_bias: vec![(B, 1.5)],
                logprobs: (seed % 3 == 0).then_some(5),
                seed: Some(500 + seed as u64),
                ..Default::default()
            },
            vec![A, 4, 5],
            vec![B, 6, 6],
            vec![],
        ));
    }
    specs.push((
        "nothing finite, logprobs 2",
        SamplingParams {
            logprobs: Some(2),
            ..greedy()
        },
        vec![1],
        vec![],
        vec![],
    ));
    specs.push((
        "NaN, logprobs 4",
        SamplingParams {
            logprobs: Some(4),
            temperature: 0.9,
            seed: Some(3),
            ..Default::default()
        },
        vec![1],
        vec![],
        vec![],
    ));
    let sampled = specs.len();
    // then a constrained row with logprobs and bias, and two prompt rows
    let n = sampled + 3;
    let mut logits = rand_vec(rng, n * vocab, 3.0);
    let row = |r: usize| r * vocab..(r + 1) * vocab;
    for v in &mut logits[row(sampled - 2)] {
        *v = f32::NEG_INFINITY;
    }
    for i in [0, 17, 400, 3000] {
        logits[row(sampled - 1)][i] = f32::NAN;
    }
    // the ids of each row's two largest logits stand in for A and B
    let top2 = |r: &[f32]| {
        let mut ids: Vec<u32> = (0..vocab as u32).collect();
        ids.sort_by(|&a, &b| r[b as usize].total_cmp(&r[a as usize]).then(a.cmp(&b)));
        (ids[0], ids[1])
    };
    let fill = |ids: &mut [u32], (a, b): (u32, u32)| {
        for t in ids {
            *t = match *t {
                A => a,
                B => b,
                t => t,
            };
        }
    };
    let mut tokens = Vec::new();
    for (r, (_, p, prompt, output, eos)) in specs.iter_mut().enumerate() {
        let ab = top2(&logits[row(r)]);
        let mut t = [prompt.clone(), output.clone()].concat();
        fill(&mut t, ab);
        fill(eos, ab);
        fill(&mut p.stop_token_ids, ab);
        for (id, _) in &mut p.logit_bias {
            fill(std::slice::from_mut(id), ab);
        }
        tokens.push(t);
    }
    let words = vocab.div_ceil(32);
    let mut mask = vec![0u32; words];
    for _ in 0..200 {
        let t = rng.random_range(0..vocab);
        mask[t / 32] |= 1 << (t % 32);
    }
    let constrained_params = SamplingParams {
        logprobs: Some(2),
        logit_bias: vec![(9, 2.0)],
        ..greedy()
    };
    let constrained_tokens = vec![1u32, 2];
    let seqs: Vec<StepSeq<'_>> = specs
        .iter()
        .zip(&tokens)
        .map(|((_, p, prompt, _, eos), t)| seq(t, prompt.len(), p, eos))
        .collect();
    let constrained = seq(&constrained_tokens, 1, &constrained_params, &[]);
    let mut rows: Vec<LogitsRow<'_, '_>> = seqs.iter().map(LogitsRow::Sample).collect();
    rows.push(LogitsRow::Constrained {
        seq: &constrained,
        mask: &mask,
    });
    rows.push(LogitsRow::Prompt { target: 77, k: 4 });
    rows.push(LogitsRow::Prompt { target: 3000, k: 0 });
    assert_eq!(rows.len(), n);

    let mut host = vec![0f32; n * vocab];
    let a: Vec<_> = c
        .sample(&c.up(&logits), vocab, &rows, &mut host)
        .unwrap()
        .into_iter()
        .map(parts)
        .collect();
    let b: Vec<_> = g
        .sample(&g.up(&logits), vocab, &rows, &mut host)
        .unwrap()
        .into_iter()
        .map(parts)
        .collect();
    let name = |r: usize| {
        if r < sampled {
            specs[r].0
        } else {
            ["constrained, logprobs 2", "prompt, k 4", "prompt, k 0"][r - sampled]
        }
    };
    let (mut draws_differ, mut worst_lp, mut scored) = (0, 0f32, 0);
    for r in 0..n {
        let ((ha, hl), (da, dl)) = (&a[r], &b[r]);
        let is_draw = r < sampled && !specs[r].1.is_greedy();
        if ha != da {
            assert!(is_draw, "{}: host {ha} device {da}", name(r));
            draws_differ += 1;
            continue;
        }
        assert_eq!(hl.is_some(), dl.is_some(), "{}: logprobs", name(r));
        if let (Some(h), Some(d)) = (hl, dl) {
            scored += 1;
            assert_eq!(
                (h.token_id, h.rank),
                (d.token_id, d.rank),
                "{}: token and rank",
                name(r)
            );
            let ids = |l: &TokenLogprobs| l.top.iter().map(|x| x.0).collect::<Vec<_>>();
            assert_eq!(ids(h), ids(d), "{}: top ids", name(r));
            let pairs = std::iter::once((h.logprob, d.logprob))
                .chain(h.top.iter().zip(&d.top).map(|(x, y)| (x.1, y.1)));
            for (x, y) in pairs {
                if x != y {
                    worst_lp = worst_lp.max((x - y).abs());
                }
            }
        }
    }
    eprintln!(
        "processors and logprobs on the device: {draws_differ} of {} draws differ from the host's; {scored} rows scored, max |Δ logprob| {worst_lp:.2e}",
        specs.iter().filter(|s| !s.1.is_greedy()).count()
    );
    assert!(worst_lp <= 1e-5, "logprobs differ by {worst_lp}");
    assert!(draws_differ <= 2, "{draws_differ} draws differ");
    // what the processors must have done, whatever the host says
    let id = |r: usize| b[r].0;
    let (a0, b0) = (
        |r: usize| top2(&logits[row(r)]).0,
        |r: usize| top2(&logits[row(r)]).1,
    );
    assert_eq!(id(0), 1234, "a +100 bias wins");
    assert_ne!(id(1), a0(1), "a -100 bias loses");
    assert!([5, 17, 2999].contains(&id(2)), "allowed ids: {}", id(2));
    assert!(
        ![a0(3), b0(3)].contains(&id(3)),
        "min_tokens pending: stop and EOS ids banned"
    );
    assert_eq!(id(4), a0(4), "min_tokens met: nothing banned");
    assert_eq!(id(sampled - 2), 0, "nothing finite: token 0");
    let nan = &b[sampled - 1].1.as_ref().unwrap().top;
    assert!(
        nan.iter().all(|&(t, _)| ![0, 17, 400, 3000].contains(&t)),
        "NaN is never a top logprob"
    );
    let constrained_id = b[sampled].0 as usize;
    assert!(
        mask[constrained_id / 32] >> (constrained_id % 32) & 1 == 1,
        "the bitmask holds"
    );
}

/// Greedy speculative verification (each row's argmax on the device, the acceptance on the host)
/// against the host's `verify`: drafts cut at the first mismatch, and all accepted with the bonus
/// token, beside an ordinary row and after a prompt row.
fn greedy_verification(
    c: &CpuBackend,
    g: &ferrum_backend::cuda::CudaBackend,
    rng: &mut ChaCha8Rng,
) {
    let vocab = 3001usize;
    let greedy = SamplingParams::greedy();
    // rows: a prompt row (so the sampled rows are not the logits rows in order), seq A's 4 (3
    // drafts), a plain row, seq B's 2 (1 draft)
    let n = 1 + 4 + 1 + 2;
    let mut logits = rand_vec(rng, n * vocab, 3.0);
    let mut force = |row: usize, id: u32| logits[row * vocab + id as usize] = 20.0;
    let (draft_a, draft_b) = ([11u32, 22, 33], [44u32]);
    force(1, 11);
    force(2, 22);
    force(3, 99); // the third draft is rejected: 99 comes instead
    force(4, 55);
    force(5, 66);
    force(6, 44);
    force(7, 77); // all of B's drafts accepted: 77 is the bonus token
    let tokens = [1u32, 2, 3];
    let seq_a = StepSeq {
        draft: &draft_a,
        ..seq(&tokens, 2, &greedy, &[])
    };
    let seq_b = StepSeq {
        draft: &draft_b,
        ..seq(&tokens, 2, &greedy, &[])
    };
    let plain = seq(&tokens, 2, &greedy, &[]);
    let rows = [
        LogitsRow::Prompt { target: 5, k: 0 },
        LogitsRow::Verify {
            seq: &seq_a,
            masks: &[],
        },
        LogitsRow::Sample(&plain),
        LogitsRow::Verify {
            seq: &seq_b,
            masks: &[],
        },
    ];
    let ids = |out: Vec<RowOutput>| -> Vec<Vec<u32>> {
        out.into_iter()
            .map(|o| match o {
                RowOutput::Verified(v) => v.iter().map(|s| s.id).collect(),
                RowOutput::Sampled(s) => vec![s.id],
                RowOutput::Prompt(l) => vec![l.token_id],
            })
            .collect()
    };
    let mut host = vec![0f32; n * vocab];
    let a = ids(c.sample(&c.up(&logits), vocab, &rows, &mut host).unwrap());
    let b = ids(g.sample(&g.up(&logits), vocab, &rows, &mut host).unwrap());
    eprintln!("greedy verification on the device: {b:?} (host: {a:?})");
    assert_eq!(b, vec![vec![5], vec![11, 22, 99], vec![66], vec![44, 77]]);
    assert_eq!(a, b);
}
