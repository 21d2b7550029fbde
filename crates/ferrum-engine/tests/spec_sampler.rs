//! The speculative verifier (`sampling::verify`): greedy verification emits exactly what
//! sequential sampling would, every processor applied per position as if the earlier drafts had
//! been accepted; rejection sampling keeps the target distribution (chi-square test).

use ferrum_engine::sampling::verify;
use ferrum_engine::{SamplingParams, StepSeq, sample};

fn seq<'a>(
    tokens: &'a [u32],
    p: &'a SamplingParams,
    eos: &'a [u32],
    draft: &'a [u32],
) -> StepSeq<'a> {
    StepSeq {
        req_id: 0,
        seq_index: 0,
        tokens,
        num_prompt_tokens: 2,
        num_computed: tokens.len() - 1,
        num_new: 1,
        block_table: &[],
        sample: true,
        params: p,
        prompt_logprobs_from: None,
        eos_token_ids: eos,
        draft,
    }
}

/// Sampling one position at a time (what decoding without speculation does), following the
/// draft while it is emitted.
fn sequential(
    rows: &[Vec<f32>],
    tokens: &[u32],
    p: &SamplingParams,
    eos: &[u32],
    draft: &[u32],
) -> Vec<u32> {
    let mut t = tokens.to_vec();
    let mut out = Vec::new();
    for (j, row) in rows.iter().enumerate() {
        let mut r = row.clone();
        let id = sample(&mut r, &seq(&t, p, eos, &[])).id;
        out.push(id);
        if draft.get(j) != Some(&id) {
            break;
        }
        t.push(id);
    }
    out
}

fn lcg(x: &mut u64) -> f32 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*x >> 40) as f32) / (1u64 << 24) as f32
}

#[test]
fn greedy_accepts_while_the_argmax_matches() {
    let v = 6;
    let p = SamplingParams::greedy();
    // argmax per row: 3, 1, 4, 0
    let rows: Vec<Vec<f32>> = [3, 1, 4, 0]
        .iter()
        .map(|&a| (0..v).map(|i| if i == a { 2.0 } else { 0.0 }).collect())
        .collect();
    let flat = |n: usize| rows[..n].concat();
    let ids = |d: &[u32]| -> Vec<u32> {
        let mut r = flat(d.len() + 1);
        verify(&mut r, v, &seq(&[5, 5, 5], &p, &[], d), &[])
            .iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(&[3, 1, 4]), vec![3, 1, 4, 0]); // all accepted + bonus
    assert_eq!(ids(&[3, 2, 4]), vec![3, 1]); // mismatch at 1: the argmax
    assert_eq!(ids(&[0, 1, 4]), vec![3]);
    assert_eq!(ids(&[]), vec![3]);
}

#[test]
fn processors_apply_per_position_as_if_drafts_were_accepted() {
    let v = 12;
    let mut x = 7u64;
    for case in 0..200 {
        let p = SamplingParams {
            temperature: 0.0,
            repetition_penalty: 1.0 + (case % 3) as f32 * 0.7,
            frequency_penalty: (case % 4) as f32 * 0.6,
            presence_penalty: (case % 5) as f32 * 0.3,
            min_tokens: case % 4,
            logit_bias: vec![(3, 0.5)],
            logprobs: Some(2),
            ..SamplingParams::default()
        };
        let eos = [2u32];
        let tokens = [1u32, 4, 7];
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..v).map(|_| lcg(&mut x) * 3.0).collect())
            .collect();
        // a draft that follows the sequential tokens for a while, then may diverge
        let mut draft = Vec::new();
        let mut t = tokens.to_vec();
        for row in rows.iter().take(3) {
            let id = sample(&mut row.clone(), &seq(&t, &p, &eos, &[])).id;
            let d = if case % 7 == 3 && draft.len() == 1 {
                (id + 1) % v as u32
            } else {
                id
            };
            draft.push(d);
            t.push(d);
        }
        let want = sequential(&rows, &tokens, &p, &eos, &draft);
        let mut flat = rows.concat();
        let got = verify(&mut flat, v, &seq(&tokens, &p, &eos, &draft), &[]);
        let ids: Vec<u32> = got.iter().map(|s| s.id).collect();
        assert_eq!(ids, want, "case {case}");
        // logprobs are the raw ones of each row
        for (j, s) in got.iter().enumerate() {
            let lp = ferrum_engine::token_logprobs(&rows[j], s.id, 2);
            assert_eq!(s.logprobs.as_ref(), Some(&lp));
        }
    }
}

#[test]
fn grammar_masks_reject_drafts_they_refuse() {
    let v = 40;
    let p = SamplingParams::greedy();
    let mut rows = vec![0f32; 2 * v];
    rows[5] = 3.0; // row 0: argmax 5, the draft
    rows[v + 9] = 1.0;
    // the mask of row 0 allows only tokens 0..32 except 5: the draft is refused
    let mask0 = [!(1u32 << 5), 0u32];
    let got = verify(
        &mut rows,
        v,
        &seq(&[1, 1], &p, &[], &[5]),
        &[Some(&mask0[..])],
    );
    assert_eq!(got.len(), 1);
    assert_ne!(got[0].id, 5);
}

/// Rejection sampling with a one-hot draft: the first emitted token is distributed as p,
/// whichever token the draft is.
#[test]
fn rejection_sampling_keeps_the_target_distribution() {
    let logits = [0.3f32, 1.2, -0.4, 0.9, 0.0];
    let v = logits.len();
    let m = logits.iter().copied().fold(f32::MIN, f32::max);
    let w: Vec<f64> = logits.iter().map(|&l| ((l - m) as f64).exp()).collect();
    let z: f64 = w.iter().sum();
    let probs: Vec<f64> = w.iter().map(|x| x / z).collect();
    let trials = 20_000u64;
    for draft_tok in [1u32, 2, 4] {
        let mut counts = vec![0u64; v];
        let mut accepted = 0u64;
        for seed in 0..trials {
            let p = SamplingParams {
                temperature: 1.0,
                seed: Some(seed * 7919 + draft_tok as u64),
                ..SamplingParams::default()
            };
            let mut rows: Vec<f32> = logits.iter().chain(logits.iter()).copied().collect();
            let draft = [draft_tok];
            let out = verify(&mut rows, v, &seq(&[0, 0], &p, &[], &draft), &[]);
            counts[out[0].id as usize] += 1;
            if out.len() == 2 {
                accepted += 1;
                assert_eq!(out[0].id, draft_tok);
            }
        }
        let chi2: f64 = (0..v)
            .map(|i| {
                let e = probs[i] * trials as f64;
                (counts[i] as f64 - e).powi(2) / e
            })
            .sum();
        // 4 degrees of freedom: P(chi2 > 23.5) < 1e-4
        assert!(
            chi2 < 23.5,
            "draft {draft_tok}: chi2 {chi2}, counts {counts:?}, p {probs:?}"
        );
        // the acceptance rate is p(draft)
        let rate = accepted as f64 / trials as f64;
        let sd =
            (probs[draft_tok as usize] * (1.0 - probs[draft_tok as usize]) / trials as f64).sqrt();
        assert!(
            (rate - probs[draft_tok as usize]).abs() < 5.0 * sd,
            "rate {rate}"
        );
    }
}

#[test]
fn unseeded_rejection_sampling_also_matches() {
    let logits = [2.0f32, 0.0, 1.0];
    let v = 3;
    let p = SamplingParams {
        temperature: 0.7,
        top_k: 2,
        ..SamplingParams::default()
    };
    let mut counts = [0u64; 3];
    for _ in 0..20_000 {
        let mut rows: Vec<f32> = logits.iter().chain(logits.iter()).copied().collect();
        let out = verify(&mut rows, v, &seq(&[0, 0], &p, &[], &[0]), &[]);
        counts[out[0].id as usize] += 1;
    }
    // top_k 2 keeps tokens 0 and 2; p ∝ exp(l / 0.7)
    assert_eq!(counts[1], 0);
    let p0 = 1.0 / (1.0 + ((1.0f64 - 2.0) / 0.7).exp());
    let e0 = p0 * 20_000.0;
    let chi2 = (counts[0] as f64 - e0).powi(2) / e0
        + (counts[2] as f64 - (20_000.0 - e0)).powi(2) / (20_000.0 - e0);
    assert!(chi2 < 15.0, "{counts:?} {p0}");
}
