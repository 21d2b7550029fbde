//! N-gram speculative decoding through the engine with a fake model: drafts are scheduled on
//! top of decodes, verified, and only the accepted drafts' K/V count; the rejected ones' blocks
//! go back to the pool and never enter the prefix cache. Outputs equal decoding without
//! speculation.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use common::{add, cfg, collect, req};
use ferrum_engine::{
    EngineConfig, EngineCore, Executor, ReqId, Sampled, SeqStepOutput, SpeculativeConfig, StepBatch,
};

const V: u32 = 50;

/// The fake target model: mostly repeats the token 4 back (so n-gram drafts often match), but
/// every 5th position it emits a hash, which rejects drafts.
fn model(tokens: &[u32]) -> u32 {
    let n = tokens.len();
    if n.is_multiple_of(5) || n < 4 {
        let s: u64 = tokens.iter().map(|&t| t as u64 * 31 + 7).sum();
        (s % V as u64) as u32
    } else {
        tokens[n - 4]
    }
}

fn prefix_hash(tokens: &[u32]) -> u64 {
    tokens.iter().fold(1469598103934665603u64, |h, &t| {
        (h ^ t as u64).wrapping_mul(1099511628211).rotate_left(9)
    })
}

#[derive(Default)]
struct State {
    /// slot -> hash of the prefix whose last token's K/V it holds
    slots: HashMap<usize, u64>,
    errors: Vec<String>,
    draft_tokens_fed: usize,
}

/// Checks that every computed position's slot holds K/V of the sequence's own prefix, writes
/// the fed tokens' (drafts included), and verifies drafts greedily against [`model`].
#[derive(Clone)]
struct SpecFake {
    bs: usize,
    st: Rc<RefCell<State>>,
}

impl Executor for SpecFake {
    fn execute(&mut self, b: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        let mut st = self.st.borrow_mut();
        let mut out = Vec::new();
        for s in &b.seqs {
            let bs = self.bs;
            let slot = |p: usize| s.block_table[p / bs] as usize * bs + p % bs;
            let fed_end = s.num_computed + s.num_fed();
            if s.block_table.len() < fed_end.div_ceil(bs) {
                st.errors
                    .push(format!("seq {}: block table too short", s.req_id));
                out.push(SeqStepOutput::default());
                continue;
            }
            if !s.draft.is_empty() && !s.sample {
                st.errors
                    .push(format!("seq {}: draft without sample", s.req_id));
            }
            for p in 0..s.num_computed {
                if st.slots.get(&slot(p)) != Some(&prefix_hash(&s.tokens[..=p])) {
                    st.errors
                        .push(format!("seq {}: stale K/V at position {p}", s.req_id));
                }
            }
            let mut fed: Vec<u32> = s.tokens[..s.num_computed + s.num_new].to_vec();
            fed.extend_from_slice(s.draft);
            for p in s.num_computed..fed_end {
                st.slots.insert(slot(p), prefix_hash(&fed[..=p]));
            }
            st.draft_tokens_fed += s.draft.len();
            let mut o = SeqStepOutput::default();
            if s.sample {
                let mut ctx = s.tokens.to_vec();
                for j in 0..=s.draft.len() {
                    let t = model(&ctx);
                    o.tokens.push(Sampled {
                        id: t,
                        logprobs: None,
                    });
                    if s.draft.get(j) != Some(&t) {
                        break;
                    }
                    ctx.push(t);
                }
            }
            out.push(o);
        }
        Ok(out)
    }
}

fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut t = prompt.to_vec();
    for _ in 0..n {
        t.push(model(&t));
    }
    t[prompt.len()..].to_vec()
}

fn prompts() -> Vec<Vec<u32>> {
    (0..12u32)
        .map(|i| {
            let unit = [i % 7 + 1, i % 5 + 10, 20 + i % 3, 30];
            unit.iter()
                .cycle()
                .take(6 + (i as usize * 3) % 11)
                .copied()
                .collect()
        })
        .collect()
}

/// Runs every prompt through one core; returns outputs and the core.
fn run(c: EngineConfig, max_tokens: usize) -> (Vec<Vec<u32>>, EngineCore, Rc<RefCell<State>>) {
    let st = Rc::new(RefCell::new(State::default()));
    let ex = SpecFake {
        bs: c.block_size,
        st: st.clone(),
    };
    let mut core = EngineCore::new(c, Box::new(ex));
    let mut rxs: Vec<_> = prompts()
        .into_iter()
        .enumerate()
        .map(|(i, p)| add(&mut core, i as ReqId * 10, req(p, max_tokens)))
        .collect();
    for _ in 0..10_000 {
        if !core.has_work() {
            break;
        }
        let r = core.step();
        assert!(r.error.is_none(), "{:?}", r.error);
        core.scheduler().check_invariants().unwrap();
    }
    assert!(!core.has_work());
    let outs = rxs
        .iter_mut()
        .map(|rx| collect(rx).remove(&0).unwrap().0)
        .collect();
    (outs, core, st)
}

fn spec(k: usize, min: usize, max: usize) -> Option<SpeculativeConfig> {
    Some(SpeculativeConfig::ngram(k, Some(min), Some(max)).unwrap())
}

#[test]
fn greedy_outputs_equal_plain_decoding_and_drafts_are_accepted() {
    for (bs, blocks, budget) in [(4, 200, 64), (4, 24, 64), (2, 40, 7), (16, 30, 128)] {
        let base = cfg(bs, blocks, budget);
        let (plain, _, _) = run(base.clone(), 20);
        let c = EngineConfig {
            speculative: spec(3, 1, 3),
            ..base
        };
        let (with_spec, core, st) = run(c, 20);
        let want: Vec<_> = prompts().iter().map(|p| expected(p, 20)).collect();
        assert_eq!(plain, want, "bs {bs} blocks {blocks}");
        assert_eq!(with_spec, want, "bs {bs} blocks {blocks} budget {budget}");
        let st = st.borrow();
        assert!(
            st.errors.is_empty(),
            "{:?}",
            &st.errors[..st.errors.len().min(5)]
        );
        let s = core.stats();
        assert!(s.spec_decode.num_drafts > 0);
        assert!(s.spec_decode.num_accepted_tokens > 0, "{:?}", s.spec_decode);
        assert!(s.spec_decode.num_accepted_tokens < s.spec_decode.num_draft_tokens);
        assert_eq!(s.spec_decode.num_draft_tokens, st.draft_tokens_fed as u64);
        let per_pos = &s.spec_decode.num_accepted_tokens_per_pos;
        assert_eq!(per_pos.len(), 3);
        assert_eq!(
            per_pos.iter().sum::<u64>(),
            s.spec_decode.num_accepted_tokens
        );
        assert!(per_pos.windows(2).all(|w| w[0] >= w[1]));
        // every block is back in the pool
        assert_eq!(s.num_free_blocks, s.num_total_blocks);
        assert_eq!(s.generation_tokens, 12 * 20);
    }
}

#[test]
fn drafts_respect_budget_max_tokens_and_rollback_frees_blocks() {
    let st = Rc::new(RefCell::new(State::default()));
    let mut c = cfg(2, 64, 3);
    c.speculative = spec(5, 1, 2);
    let mut core = EngineCore::new(
        c,
        Box::new(SpecFake {
            bs: 2,
            st: st.clone(),
        }),
    );
    // one sequence: prompt 1 2 1 2 1 (prefilled in chunks of 3), then decodes
    let mut rx = add(&mut core, 0, req(vec![1, 2, 1, 2, 1], 6));
    let mut max_blocks_after = 0;
    while core.has_work() {
        let r = core.step();
        assert!(r.error.is_none());
        // never more than the budget, never a draft beyond what max_tokens leaves
        assert!(r.output.num_tokens() <= 3);
        core.scheduler().check_invariants().unwrap();
        if let Some(s) = core.scheduler().seq(0) {
            assert!(s.draft.is_empty());
            assert!(s.num_output_tokens() <= 6);
            let held = core.scheduler().kv().block_table(0).len();
            assert_eq!(held, s.num_computed.div_ceil(2));
            max_blocks_after = max_blocks_after.max(held);
        }
    }
    let out = collect(&mut rx).remove(&0).unwrap().0;
    assert_eq!(out, expected(&[1, 2, 1, 2, 1], 6));
    assert!(st.borrow().errors.is_empty(), "{:?}", st.borrow().errors);
    assert!(core.stats().spec_decode.num_drafts > 0);
    let s = core.stats();
    assert_eq!(s.num_free_blocks, s.num_total_blocks);
}

#[test]
fn rejected_drafts_never_enter_the_prefix_cache() {
    // Run the same prompts twice, one after the other: the second run hits the prefix cache,
    // and the fake checks that every hit position holds K/V of the sequence's own prefix.
    let st = Rc::new(RefCell::new(State::default()));
    let mut c = cfg(2, 400, 64);
    c.speculative = spec(4, 1, 4);
    let mut core = EngineCore::new(
        c,
        Box::new(SpecFake {
            bs: 2,
            st: st.clone(),
        }),
    );
    for round in 0..2u64 {
        let mut rxs: Vec<_> = prompts()
            .into_iter()
            .enumerate()
            .map(|(i, p)| add(&mut core, round * 1000 + i as u64 * 10, req(p, 16)))
            .collect();
        while core.has_work() {
            assert!(core.step().error.is_none());
            core.scheduler().check_invariants().unwrap();
        }
        for (rx, p) in rxs.iter_mut().zip(prompts()) {
            assert_eq!(collect(rx).remove(&0).unwrap().0, expected(&p, 16));
        }
        // the second round reuses the first one's outputs too: prompt + output as a prompt
        for (i, p) in prompts().into_iter().enumerate() {
            let mut full = p.clone();
            full.extend(expected(&p, 16));
            let mut rx = add(
                &mut core,
                round * 1000 + 500 + i as u64,
                req(full.clone(), 4),
            );
            while core.has_work() {
                assert!(core.step().error.is_none());
            }
            let mut t = full.clone();
            t.extend(expected(&full, 4));
            assert_eq!(collect(&mut rx).remove(&0).unwrap().0, t[full.len()..]);
        }
    }
    assert!(core.stats().prefix_cache_hits > 0);
    assert!(st.borrow().errors.is_empty(), "{:?}", st.borrow().errors);
}
