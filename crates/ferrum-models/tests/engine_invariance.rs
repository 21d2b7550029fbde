//! The real default model through the real engine: a request's greedy tokens are exactly the same
//! alone, in a batch of 32 mixed requests, with chunked prefill at a tiny token budget, and after
//! being preempted; seeded sampling is the same whatever else is in the batch.

mod common;
use common::default_model_engine;
use ferrum_engine::{EngineConfig, EngineHandle, SamplingParams};

fn engine(tweak: impl FnOnce(&mut EngineConfig)) -> EngineHandle {
    default_model_engine(2048, tweak)
}

/// 32 prompts of mixed lengths (3..~200 tokens) built from a fixed pseudo-random stream.
fn prompts() -> Vec<Vec<u32>> {
    let mut x = 12345u64;
    (0..32)
        .map(|i| {
            let len = 3 + (i * 37) % 190;
            (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u32 % 20000 + 100
                })
                .collect()
        })
        .collect()
}

fn params(max_tokens: usize) -> SamplingParams {
    SamplingParams {
        max_tokens: Some(max_tokens),
        temperature: 0.0,
        ignore_eos: true,
        ..SamplingParams::default()
    }
}

/// Submits all at once; returns each request's output tokens.
fn run(e: &EngineHandle, reqs: &[(Vec<u32>, SamplingParams)]) -> Vec<Vec<u32>> {
    common::run_all(e, reqs)
}

/// The first 6 prompts, each run alone: the reference.
fn alone(reqs: &[(Vec<u32>, SamplingParams)]) -> Vec<Vec<u32>> {
    let e = engine(|_| {});
    reqs.iter()
        .map(|r| run(&e, std::slice::from_ref(r)).remove(0))
        .collect()
}

#[test]
fn greedy_tokens_identical_alone_batched_chunked_and_preempted() {
    let all: Vec<(Vec<u32>, SamplingParams)> = prompts()
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, params(6 + i % 11)))
        .collect();
    let reference = alone(&all[..6]);

    let batched = run(&engine(|_| {}), &all);
    assert_eq!(
        batched[..6],
        reference[..],
        "batch of 32 differs from alone"
    );

    // a 16-token step budget: every prompt is prefilled in chunks alongside others' decodes
    let chunked = run(&engine(|c| c.max_num_batched_tokens = 16), &all);
    assert_eq!(chunked[..6], reference[..], "chunked prefill differs");

    // 40 blocks of 16 tokens for 32 requests: preemption by recompute must happen
    let tight = engine(|c| {
        c.num_blocks = 40;
        c.enable_prefix_caching = false;
    });
    let preempted = run(&tight, &all);
    let stats = tight.stats();
    assert!(
        stats.num_preemptions > 0,
        "expected preemptions with a 40-block cache"
    );
    assert_eq!(preempted[..6], reference[..], "preempted run differs");
    assert_eq!(preempted, batched, "every request, not only the first six");
    assert_eq!(chunked, batched);
}

#[test]
fn seeded_sampling_is_independent_of_the_batch() {
    let seeded = SamplingParams {
        seed: Some(42),
        temperature: 0.9,
        top_p: 0.95,
        ..params(12)
    };
    let ps = prompts();
    let target = (ps[5].clone(), seeded.clone());
    let e = engine(|_| {});
    let alone = run(&e, std::slice::from_ref(&target)).remove(0);
    let mut mixed: Vec<_> = ps
        .iter()
        .take(12)
        .map(|p| {
            (
                p.clone(),
                SamplingParams {
                    temperature: 1.0,
                    ..params(10)
                },
            )
        })
        .collect();
    mixed.insert(7, target);
    let together = run(&e, &mixed);
    assert_eq!(together[7], alone);
    // and a different seed gives a different sequence (the seed is really used)
    let other = SamplingParams {
        seed: Some(7),
        ..seeded
    };
    assert_ne!(run(&e, &[(ps[5].clone(), other)]).remove(0), alone);
}
