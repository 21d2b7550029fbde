//! Random interleavings of add / step / abort on a small cache (so preemption happens),
//! with the K/V-simulating fake executor. After every step: no leaked block, ref counts equal
//! the running sequences' block tables, free + used == total, and every slot the executor is
//! told is computed really holds that prefix's K/V, and the runner-state notifications keep
//! the executor's view of live sequences right. The executor accepts 1 to 3 tokens per step.
//! At the end every request has finished with exactly the expected tokens (or was aborted),
//! and what the runner still holds is exactly what the engine has yet to release.

mod common;

use std::collections::HashMap;

use common::*;
use ferrum_engine::{
    EngineConfig, EngineCore, EngineRequest, FinishReason, OutputReceiver, SamplingParams,
    SchedulingPolicy, output_channel,
};
use proptest::prelude::*;

const V: usize = 50;
const BS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Add {
        /// Index of a shared prefix family (so prefix-cache hits happen), and its length.
        family: u32,
        prefix_len: usize,
        suffix: Vec<u32>,
        max_tokens: usize,
        n: usize,
        priority: i32,
        prompt_logprobs: bool,
    },
    Step,
    /// A step whose executor panics: its sequences fail, everything else carries on.
    FailingStep,
    Abort(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..3, 0usize..10, prop::collection::vec(0u32..V as u32, 0..8), 1usize..8,
              1usize..3, 0i32..3, prop::bool::weighted(0.2))
            .prop_map(|(family, prefix_len, suffix, max_tokens, n, priority, prompt_logprobs)| {
                Op::Add { family, prefix_len, suffix, max_tokens, n, priority, prompt_logprobs }
            }),
        6 => Just(Op::Step),
        1 => (0usize..32).prop_map(Op::Abort),
        1 => Just(Op::FailingStep),
    ]
}

fn config() -> impl Strategy<Value = EngineConfig> {
    (
        6usize..16,
        4usize..24,
        1usize..5,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(num_blocks, budget, max_num_seqs, chunked, caching, priority)| EngineConfig {
                block_size: BS,
                num_blocks,
                max_num_seqs,
                max_num_batched_tokens: budget,
                max_model_len: 32,
                enable_chunked_prefill: chunked,
                enable_prefix_caching: caching,
                scheduling_policy: if priority {
                    SchedulingPolicy::Priority
                } else {
                    SchedulingPolicy::Fcfs
                },
                max_logprobs: 20,
                vocab_size: V,
                speculative: None,
            },
        )
}

struct Submitted {
    prompt: Vec<u32>,
    max_tokens: usize,
    n: usize,
    rx: OutputReceiver,
    id: u64,
    aborted: bool,
}

fn check(core: &EngineCore, ex: &FakeExecutor) -> Result<(), TestCaseError> {
    core.scheduler()
        .check_invariants()
        .map_err(TestCaseError::fail)?;
    let pool = core.scheduler().kv().pool();
    prop_assert_eq!(pool.num_free() + pool.num_used(), pool.num_blocks());
    let v = ex.violations();
    prop_assert!(v.is_empty(), "executor saw: {:?}", v);
    Ok(())
}

fn run_case(cfg: EngineConfig, ops: Vec<Op>, tokens_per_step: usize) -> Result<(), TestCaseError> {
    quiet_injected_panics();
    let mut ex = FakeExecutor::new(BS, V);
    ex.tokens_per_step = tokens_per_step;
    let mut core = EngineCore::new(cfg.clone(), Box::new(ex.clone()));
    let mut subs: Vec<Submitted> = Vec::new();
    let mut next_id = 0u64;
    for op in ops {
        match op {
            Op::Add {
                family,
                prefix_len,
                suffix,
                max_tokens,
                n,
                priority,
                prompt_logprobs,
            } => {
                let mut prompt: Vec<u32> = (0..prefix_len as u32)
                    .map(|i| (family * 7 + i) % V as u32)
                    .collect();
                prompt.extend(suffix);
                let mut r = EngineRequest::new(
                    prompt.clone(),
                    SamplingParams {
                        n,
                        max_tokens: Some(max_tokens),
                        temperature: 0.0,
                        prompt_logprobs: prompt_logprobs.then_some(1),
                        ..Default::default()
                    },
                );
                r.priority = priority;
                let (tx, rx) = output_channel();
                match core.add_request(next_id, r, tx) {
                    Ok(()) => {
                        subs.push(Submitted {
                            prompt,
                            max_tokens,
                            n,
                            rx,
                            id: next_id,
                            aborted: false,
                        });
                        next_id += n as u64;
                    }
                    // Refusals must be for the reasons admission documents.
                    Err(e) => prop_assert!(
                        prompt.is_empty()
                            || prompt.len() + max_tokens > 32
                            || prompt.len() + max_tokens - 1 > cfg.num_blocks * BS
                            || (!cfg.enable_chunked_prefill
                                && prompt.len() > cfg.max_num_batched_tokens),
                        "unexpected refusal: {}",
                        e
                    ),
                }
            }
            Op::Step => {
                core.step();
            }
            Op::FailingStep => {
                *ex.panic_steps.lock().unwrap() = 1;
                let rep = core.step();
                if !rep.output.is_empty() {
                    prop_assert!(rep.error.is_some());
                }
                *ex.panic_steps.lock().unwrap() = 0;
            }
            Op::Abort(k) => {
                if let Some(s) = subs.get_mut(k) {
                    core.abort(s.id);
                    s.aborted = true;
                }
            }
        }
        check(&core, &ex)?;
    }
    let mut steps = 0;
    while core.has_work() {
        let rep = core.step();
        prop_assert!(rep.error.is_none(), "step failed: {:?}", rep.error);
        check(&core, &ex)?;
        steps += 1;
        prop_assert!(steps < 2000, "no progress");
    }
    prop_assert_eq!(core.scheduler().kv().pool().num_used(), 0, "blocks leaked");
    let pending = core.scheduler().pending_updates();
    prop_assert!(pending.new.is_empty());
    let mut unreleased: Vec<u64> = [&pending.finished, &pending.aborted, &pending.preempted]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    unreleased.sort_unstable();
    prop_assert_eq!(ex.known_ids(), unreleased, "runner state out of sync");

    for s in &mut subs {
        type PerSeq = (Vec<u32>, Vec<FinishReason>, usize, bool);
        let mut per: HashMap<usize, PerSeq> = HashMap::new();
        while let Ok(o) = s.rx.try_recv() {
            let e = per.entry(o.seq_index).or_default();
            e.0.extend(o.new_token_ids);
            e.1.extend(o.finish_reason);
            e.2 += o.prompt_logprobs.len();
            e.3 |= o.error.is_some();
        }
        for i in 0..s.n {
            let (toks, fins, plp, failed) = per.remove(&i).unwrap_or_default();
            prop_assert_eq!(fins.len(), 1, "exactly one finish for {}:{}", s.id, i);
            let expected = expected_output(&s.prompt, i, s.max_tokens, V);
            match fins[0] {
                FinishReason::Length => {
                    prop_assert_eq!(&toks, &expected, "request {} child {}", s.id, i);
                    if i == 0 && plp > 0 {
                        prop_assert_eq!(plp, s.prompt.len() - 1);
                    }
                }
                FinishReason::Abort => {
                    prop_assert!(s.aborted || failed, "aborted without being asked");
                    prop_assert_eq!(&toks[..], &expected[..toks.len()]);
                }
                FinishReason::Stop => prop_assert!(false, "no stop tokens in this test"),
            }
        }
    }
    let st = core.stats();
    prop_assert!(st.prefix_cache_hits <= st.prefix_cache_queries);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_add_step_abort_keeps_the_cache_consistent(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..60),
        tokens_per_step in prop_oneof![3 => Just(1usize), 1 => Just(2usize), 1 => Just(3usize)],
    ) {
        run_case(cfg, ops, tokens_per_step)?;
    }
}

/// The proptest's small caches do preempt; make sure of it once, deterministically.
#[test]
fn small_cache_forces_preemption() {
    let cfg = EngineConfig {
        block_size: BS,
        num_blocks: 6,
        max_num_batched_tokens: 64,
        max_model_len: 32,
        vocab_size: V,
        ..EngineConfig::new(6, 32, V)
    };
    let ex = FakeExecutor::new(BS, V);
    let mut core = EngineCore::new(cfg, Box::new(ex.clone()));
    let mut rxs = Vec::new();
    for i in 0..3u32 {
        let (tx, rx) = output_channel();
        let prompt: Vec<u32> = (0..6).map(|k| (i * 10 + k) % V as u32).collect();
        let r = EngineRequest::new(
            prompt.clone(),
            SamplingParams {
                max_tokens: Some(8),
                temperature: 0.0,
                ..Default::default()
            },
        );
        core.add_request(i as u64, r, tx).unwrap();
        rxs.push((prompt, rx));
    }
    run_to_completion(&mut core);
    assert!(core.stats().num_preemptions >= 1);
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
    for (prompt, rx) in &mut rxs {
        assert_eq!(
            collect(rx)[&0],
            (expected_output(prompt, 0, 8, V), Some(FinishReason::Length))
        );
    }
}
