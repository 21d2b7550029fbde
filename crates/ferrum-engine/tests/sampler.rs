//! The sampler on small hand-computed logits: each processor, logprobs and ranks, seeded
//! reproducibility, and frequency checks of temperature sampling.

use ferrum_engine::sampling::processors::*;
use ferrum_engine::sampling::seeded_uniform;
use ferrum_engine::{SamplingParams, StepSeq, sample, token_logprobs};

const NEG: f32 = f32::NEG_INFINITY;

fn seq<'a>(
    tokens: &'a [u32],
    num_prompt: usize,
    p: &'a SamplingParams,
    eos: &'a [u32],
) -> StepSeq<'a> {
    StepSeq {
        req_id: 0,
        seq_index: 0,
        tokens,
        num_prompt_tokens: num_prompt,
        num_computed: tokens.len() - 1,
        num_new: 1,
        block_table: &[],
        sample: true,
        params: p,
        prompt_logprobs_from: None,
        eos_token_ids: eos,
        draft: &[],
    }
}

fn greedy_pick(
    logits: &[f32],
    p: SamplingParams,
    tokens: &[u32],
    num_prompt: usize,
    eos: &[u32],
) -> u32 {
    let mut l = logits.to_vec();
    sample(&mut l, &seq(tokens, num_prompt, &p, eos)).id
}

#[test]
fn greedy_is_argmax_with_ties_to_lowest_id() {
    let p = SamplingParams::greedy();
    assert_eq!(
        greedy_pick(&[1.0, 3.0, 3.0, 2.0], p.clone(), &[0], 1, &[]),
        1
    );
    // Below 1e-5 counts as greedy too.
    let p2 = SamplingParams {
        temperature: 1e-6,
        ..p
    };
    assert_eq!(greedy_pick(&[1.0, 3.0, 3.0, 2.0], p2, &[0], 1, &[]), 1);
}

#[test]
fn logit_bias_shifts_the_choice() {
    let p = SamplingParams {
        logit_bias: vec![(0, 5.0), (2, -1.0)],
        ..SamplingParams::greedy()
    };
    assert_eq!(greedy_pick(&[1.0, 3.0, 3.0, 2.0], p, &[9], 1, &[]), 0);
    let mut l = vec![1.0, 3.0, 3.0, 2.0];
    apply_logit_bias(&mut l, &[(0, 5.0), (2, -1.0)]);
    assert_eq!(l, vec![6.0, 3.0, 2.0, 2.0]);
}

#[test]
fn min_tokens_masks_eos_and_stop_ids_until_reached() {
    let logits = [0.0, 5.0, 4.0, 1.0];
    let eos = [1u32];
    let p = SamplingParams {
        min_tokens: 2,
        stop_token_ids: vec![2],
        ..SamplingParams::greedy()
    };
    // One output so far (< 2): eos 1 and stop 2 masked.
    assert_eq!(greedy_pick(&logits, p.clone(), &[7, 3], 1, &eos), 3);
    // ignore_eos: EOS is not a stop, so it is not masked; stop id 2 still is.
    let pi = SamplingParams {
        ignore_eos: true,
        ..p.clone()
    };
    assert_eq!(greedy_pick(&logits, pi, &[7, 3], 1, &eos), 1);
    // Two outputs: nothing masked.
    assert_eq!(greedy_pick(&logits, p, &[7, 3, 3], 1, &eos), 1);
    let mut l = logits.to_vec();
    apply_min_tokens(&mut l, 0, 1, &[2], &eos, false);
    assert_eq!(l, vec![0.0, NEG, NEG, 1.0]);
}

#[test]
fn penalties_follow_vllm_definitions() {
    // Repetition 2.0 over prompt {0} and output {1}: positive divided, negative multiplied.
    let mut l = vec![2.0, -1.0, 0.5, 1.0];
    apply_penalties(&mut l, &[0], &[1], 2.0, 0.0, 0.0);
    assert_eq!(l, vec![1.0, -2.0, 0.5, 1.0]);
    // A token repeated in prompt and output is penalised once.
    let mut l = vec![4.0, 0.0];
    apply_penalties(&mut l, &[0, 0], &[0, 0, 0], 2.0, 0.0, 0.0);
    assert_eq!(l, vec![2.0, 0.0]);
    // Frequency 0.5 x count + presence 0.25, output tokens only (prompt token 0 untouched).
    let mut l = vec![1.0, 1.0, 1.0, 1.0];
    apply_penalties(&mut l, &[0], &[2, 2, 3], 1.0, 0.5, 0.25);
    assert_eq!(l, vec![1.0, 1.0, -0.25, 0.25]);
    // Through the sampler: token 1 (best raw) is pushed below token 2.
    let p = SamplingParams {
        presence_penalty: 1.0,
        ..SamplingParams::greedy()
    };
    assert_eq!(greedy_pick(&[0.0, 3.0, 2.5], p, &[0, 1], 1, &[]), 2);
}

#[test]
fn temperature_min_p_top_k_top_p() {
    let mut l = vec![2.0, -1.0, 0.5];
    apply_temperature(&mut l, 0.5);
    assert_eq!(l, vec![4.0, -2.0, 1.0]);

    // min_p 0.2 of p_max 0.5 = 0.1: only the 0.05 token goes.
    let mut l: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
    apply_min_p(&mut l, 0.2);
    assert!(l[..3].iter().all(|x| x.is_finite()));
    assert_eq!(l[3], NEG);

    // top_k keeps every token tied with the k-th value.
    let mut l = vec![1.0, 4.0, 3.0, 4.0];
    apply_top_k(&mut l, 2);
    assert_eq!(l, vec![NEG, 4.0, NEG, 4.0]);
    let mut l = vec![1.0, 4.0, 3.0, 4.0];
    apply_top_k(&mut l, 3);
    assert_eq!(l, vec![NEG, 4.0, 3.0, 4.0]);
    let mut l = vec![1.0, 4.0];
    apply_top_k(&mut l, 0);
    apply_top_k(&mut l, -1);
    assert_eq!(l, vec![1.0, 4.0]);

    // probs .1 .2 .3 .4; ascending cumsum .1 .3 .6 1.0.
    let probs = [0.1f32, 0.2, 0.3, 0.4];
    let base: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
    let kept = |top_p: f32| {
        let mut l = base.clone();
        apply_top_p(&mut l, top_p);
        l.iter().map(|x| x.is_finite()).collect::<Vec<_>>()
    };
    assert_eq!(kept(0.5), vec![false, false, true, true]); // drop cumsum <= 0.5
    assert_eq!(kept(0.75), vec![false, true, true, true]); // drop cumsum <= 0.25
    assert_eq!(kept(0.45), vec![false, false, true, true]); // drop <= .55: .6 stays
    assert_eq!(kept(0.35), vec![false, false, false, true]); // drop <= .65: .6 goes
    assert_eq!(kept(0.1), vec![false, false, false, true]); // the top token always stays
    assert_eq!(kept(1.0), vec![true, true, true, true]);
}

#[test]
fn logprobs_are_raw_with_ranks_and_top() {
    let logits = [1.0f32, 2.0, 3.0, 0.0];
    let lse = (1f64.exp() + 2f64.exp() + 3f64.exp() + 1.0).ln();
    let lp = |x: f64| (x - lse) as f32;
    let p = SamplingParams {
        logprobs: Some(2),
        ..SamplingParams::greedy()
    };
    let mut l = logits.to_vec();
    let s = sample(&mut l, &seq(&[5], 1, &p, &[]));
    let t = s.logprobs.unwrap();
    assert_eq!((s.id, t.token_id, t.rank), (2, 2, 1));
    assert!((t.logprob - lp(3.0)).abs() < 1e-6);
    assert_eq!(t.top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1]);
    assert!((t.top[1].1 - lp(2.0)).abs() < 1e-6);

    // A bias makes token 0 win, but its logprob is the raw one: rank 3.
    let p = SamplingParams {
        logprobs: Some(0),
        logit_bias: vec![(0, 10.0)],
        ..SamplingParams::greedy()
    };
    let mut l = logits.to_vec();
    let s = sample(&mut l, &seq(&[5], 1, &p, &[]));
    let t = s.logprobs.unwrap();
    assert_eq!((s.id, t.rank, t.top.len()), (0, 3, 0));
    assert!((t.logprob - lp(1.0)).abs() < 1e-6);

    // No logprobs asked: none computed.
    let mut l = logits.to_vec();
    assert!(
        sample(&mut l, &seq(&[5], 1, &SamplingParams::greedy(), &[]))
            .logprobs
            .is_none()
    );

    // Ties in top are ordered by id; rank counts strictly better tokens.
    let t = token_logprobs(&[1.0, 2.0, 2.0, 0.0], 2, 3);
    assert_eq!(t.rank, 1);
    assert_eq!(t.top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 0]);
}

fn random_params(seed: Option<u64>, temperature: f32) -> SamplingParams {
    SamplingParams {
        seed,
        temperature,
        ..Default::default()
    }
}

#[test]
fn seeded_draws_do_not_depend_on_other_sequences() {
    let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let p = random_params(Some(1234), 1.0);
    let tokens = [1u32, 2, 3, 4];
    let draw = |p: &SamplingParams, toks: &[u32], idx: usize| {
        let mut l = logits.clone();
        let mut s = seq(toks, 1, p, &[]);
        s.seq_index = idx;
        sample(&mut l, &s).id
    };
    let first = draw(&p, &tokens, 0);
    // Interleave unrelated seeded and unseeded draws, then repeat: same token.
    for k in 0..20 {
        draw(&random_params(Some(k), 1.0), &tokens, 0);
        draw(&random_params(None, 0.7), &tokens, 1);
    }
    assert_eq!(draw(&p, &tokens, 0), first);
    // The key is (seed, child index, output index): each of them changes the stream.
    assert_eq!(seeded_uniform(1234, 0, 3), seeded_uniform(1234, 0, 3));
    assert_ne!(seeded_uniform(1234, 0, 3), seeded_uniform(1234, 1, 3));
    assert_ne!(seeded_uniform(1234, 0, 3), seeded_uniform(1234, 0, 4));
    assert_ne!(seeded_uniform(1234, 0, 3), seeded_uniform(1235, 0, 3));
}

/// Draws `n` tokens autoregressively with one fixed seed (the output index advances).
fn frequencies(logits: &[f32], p: &SamplingParams, n: usize) -> Vec<usize> {
    let mut counts = vec![0; logits.len()];
    let mut tokens = vec![0u32];
    for _ in 0..n {
        let mut l = logits.to_vec();
        let id = sample(&mut l, &seq(&tokens, 1, p, &[])).id;
        counts[id as usize] += 1;
        tokens.push(id);
    }
    counts
}

fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(probs)
        .map(|(&c, &p)| {
            let e = p * n as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn temperature_sampling_matches_the_distribution() {
    // 99.9th percentile of chi-square with 2 degrees of freedom.
    const CRIT: f64 = 13.82;
    let probs = [0.5f64, 0.3, 0.2];
    let logits: Vec<f32> = probs.iter().map(|p| p.ln() as f32).collect();
    let c = frequencies(&logits, &random_params(Some(7), 1.0), 6000);
    let x = chi_square(&c, &probs);
    assert!(x < CRIT, "T=1 counts {c:?}, chi2 {x}");

    // T = 0.5 squares the probabilities: .25 .09 .04 over .38.
    let sq: Vec<f64> = probs.iter().map(|p| p * p / 0.38).collect();
    let c = frequencies(&logits, &random_params(Some(7), 0.5), 6000);
    let x = chi_square(&c, &sq);
    assert!(x < CRIT, "T=0.5 counts {c:?}, chi2 {x}");

    // Same seed, same counts (deterministic); top_k = 1 collapses to the argmax.
    assert_eq!(c, frequencies(&logits, &random_params(Some(7), 0.5), 6000));
    let p = SamplingParams {
        top_k: 1,
        ..random_params(Some(3), 1.0)
    };
    assert_eq!(frequencies(&logits, &p, 200), vec![200, 0, 0]);
    // top_p 0.6 keeps {0.5, 0.3}: renormalised 0.625 / 0.375, never token 2.
    let p = SamplingParams {
        top_p: 0.6,
        ..random_params(Some(11), 1.0)
    };
    let c = frequencies(&logits, &p, 4000);
    assert_eq!(c[2], 0);
    let x = chi_square(&c[..2], &[0.625, 0.375]);
    assert!(x < 10.83, "top_p counts {c:?}, chi2 {x}");
}

#[test]
fn everything_masked_falls_back_to_argmax() {
    let p = SamplingParams {
        min_tokens: 1,
        stop_token_ids: vec![0, 1],
        ..random_params(Some(1), 1.0)
    };
    let mut l = vec![1.0, 2.0];
    assert_eq!(sample(&mut l, &seq(&[4], 1, &p, &[])).id, 0);
}

#[test]
fn allowed_token_ids_restrict_the_choice() {
    let p = SamplingParams {
        allowed_token_ids: Some(vec![0, 3]),
        ..SamplingParams::greedy()
    };
    assert_eq!(greedy_pick(&[1.0, 3.0, 3.0, 2.0], p, &[9], 1, &[]), 3);
    let mut l = vec![1.0, 3.0, 3.0, 2.0];
    apply_allowed_token_ids(&mut l, Some(&[1, 99]));
    assert_eq!(l, vec![NEG, 3.0, NEG, NEG]);
    let bad = SamplingParams {
        allowed_token_ids: Some(vec![]),
        ..SamplingParams::default()
    };
    assert_eq!(
        bad.validate(4, 20).unwrap_err(),
        "allowed_token_ids is not allowed to be empty."
    );
    let oov = SamplingParams {
        allowed_token_ids: Some(vec![4]),
        ..SamplingParams::default()
    };
    assert_eq!(
        oov.validate(4, 20).unwrap_err(),
        "allowed_token_ids contains out-of-vocab token id!"
    );
}

/// `is_plain_argmax` holds exactly where greedy sampling is the raw logits' argmax: it is true
/// for plain greedy requests (and then `sample` returns the argmax), false as soon as any
/// processor could move the maximum or logprobs are wanted.
#[test]
fn plain_argmax_predicate_matches_the_sampler() {
    use ferrum_engine::sampling::{is_plain_argmax, processors::argmax};
    let tokens = [5u32, 6, 7, 2, 9];
    let eos = [2u32];
    let logits: Vec<f32> = (0..32)
        .map(|i| ((i * 7919) % 31) as f32 * 0.1 - 1.0)
        .collect();
    let plain = SamplingParams::greedy();
    let s = seq(&tokens, 3, &plain, &eos);
    assert!(is_plain_argmax(&s));
    assert_eq!(sample(&mut logits.clone(), &s).id, argmax(&logits));
    let variants: Vec<SamplingParams> = vec![
        SamplingParams {
            temperature: 0.7,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            logprobs: Some(2),
            ..SamplingParams::greedy()
        },
        SamplingParams {
            allowed_token_ids: Some(vec![1, 2]),
            ..SamplingParams::greedy()
        },
        SamplingParams {
            logit_bias: vec![(3, 5.0)],
            ..SamplingParams::greedy()
        },
        SamplingParams {
            min_tokens: 5,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            repetition_penalty: 1.2,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            frequency_penalty: 0.5,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            presence_penalty: 0.5,
            ..SamplingParams::greedy()
        },
    ];
    for p in &variants {
        assert!(!is_plain_argmax(&seq(&tokens, 3, p, &eos)), "{p:?}");
    }
    // min_tokens already met: plain again
    let met = SamplingParams {
        min_tokens: 2,
        ..SamplingParams::greedy()
    };
    assert!(is_plain_argmax(&seq(&tokens, 3, &met, &eos)));
}
