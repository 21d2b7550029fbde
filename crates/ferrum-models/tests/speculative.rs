//! N-gram speculative decoding on the real default model: greedy outputs are bit-identical
//! with and without speculation across 50 repetitive prompts batched through one engine, and
//! drafts do get accepted.

mod common;
use common::default_model_engine;
use ferrum_engine::{EngineHandle, SamplingParams, SpeculativeConfig};

fn engine(spec: Option<SpeculativeConfig>) -> EngineHandle {
    default_model_engine(1024, |c| c.speculative = spec)
}

/// 50 prompts: a short pseudo-random unit of 3..8 tokens repeated 3 or 4 times, so the model
/// tends to go on repeating it (and n-gram drafts match).
fn prompts() -> Vec<Vec<u32>> {
    let mut x = 987654321u64;
    (0..50)
        .map(|i| {
            let unit: Vec<u32> = (0..3 + i % 6)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u32 % 20000 + 100
                })
                .collect();
            unit.iter()
                .cycle()
                .take(unit.len() * (3 + i % 2))
                .copied()
                .collect()
        })
        .collect()
}

fn run(e: &EngineHandle) -> Vec<Vec<u32>> {
    let params = SamplingParams {
        max_tokens: Some(24),
        temperature: 0.0,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    let reqs: Vec<_> = prompts().into_iter().map(|p| (p, params.clone())).collect();
    common::run_all(e, &reqs)
}

#[test]
fn ngram_speculation_is_bit_identical_under_greedy() {
    let plain = {
        let e = engine(None);
        let out = run(&e);
        e.shutdown();
        out
    };
    let e = engine(Some(SpeculativeConfig::ngram(3, Some(1), Some(4)).unwrap()));
    let spec = run(&e);
    let s = e.stats();
    e.shutdown();
    for (i, (a, b)) in plain.iter().zip(&spec).enumerate() {
        assert_eq!(a.len(), 24);
        assert_eq!(a, b, "prompt {i}: without vs with speculation");
    }
    let sd = &s.spec_decode;
    eprintln!(
        "drafts {} draft tokens {} accepted {} per position {:?}",
        sd.num_drafts, sd.num_draft_tokens, sd.num_accepted_tokens, sd.num_accepted_tokens_per_pos
    );
    assert!(sd.num_drafts > 0);
    assert!(
        sd.num_accepted_tokens * 5 > sd.num_draft_tokens,
        "few drafts accepted: {sd:?}"
    );
    assert_eq!(s.generation_tokens, 50 * 24);
    assert_eq!(s.num_free_blocks, s.num_total_blocks);
}
