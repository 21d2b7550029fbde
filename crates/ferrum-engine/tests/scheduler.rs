//! Scheduler behaviour through a synchronous `EngineCore` and the K/V-checking fake executor:
//! exact chunk sizes, caps, ordering, preemption, prefix-cache accounting.

mod common;

use common::*;
use ferrum_engine::{EngineCore, FinishReason, SamplingParams, SchedulingPolicy};

const V: usize = 1000;

fn core_with(cfg: ferrum_engine::EngineConfig) -> (EngineCore, FakeExecutor) {
    let ex = FakeExecutor::new(cfg.block_size, cfg.vocab_size);
    (EngineCore::new(cfg, Box::new(ex.clone())), ex)
}

#[test]
fn chunked_prefill_splits_the_budget_exactly() {
    let (mut core, ex) = core_with(cfg(4, 64, 8));
    let a: Vec<u32> = (1..=20).collect();
    let b: Vec<u32> = (100..106).collect();
    let mut ra = add(&mut core, 0, req(a.clone(), 3));
    let mut rb = add(&mut core, 1, req(b.clone(), 2));
    run_to_completion(&mut core);
    assert_eq!(
        ex.schedule_log(),
        vec![
            vec![(0, 8)],         // A's first chunk takes the whole budget
            vec![(0, 8)],         // second chunk
            vec![(0, 4), (1, 4)], // A finishes its prompt (samples); B starts in the rest
            vec![(0, 1), (1, 2)], // A decodes; B finishes its prompt
            vec![(0, 1), (1, 1)],
        ]
    );
    let seen = ex.steps.lock().unwrap().clone();
    let samples: Vec<Vec<bool>> = seen
        .iter()
        .map(|s| s.iter().map(|x| x.sample).collect())
        .collect();
    assert_eq!(
        samples,
        vec![
            vec![false],
            vec![false],
            vec![true, false],
            vec![true, true],
            vec![true, true]
        ]
    );
    assert_eq!(
        collect(&mut ra)[&0],
        (expected_output(&a, 0, 3, V), Some(FinishReason::Length))
    );
    assert_eq!(
        collect(&mut rb)[&0],
        (expected_output(&b, 0, 2, V), Some(FinishReason::Length))
    );
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
    assert_eq!(core.stats().num_free_blocks, 64);
}

#[test]
fn without_chunked_prefill_a_prompt_waits_for_room() {
    let mut c = cfg(4, 64, 8);
    c.enable_chunked_prefill = false;
    let (mut core, ex) = core_with(c);
    let mut _keep = add(&mut core, 0, req((1..=6).collect(), 2));
    let mut _keep = add(&mut core, 1, req((10..15).collect(), 2));
    run_to_completion(&mut core);
    assert_eq!(
        ex.schedule_log(),
        vec![vec![(0, 6)], vec![(0, 1), (1, 5)], vec![(1, 1)]]
    );
}

#[test]
fn max_num_seqs_caps_running() {
    let mut c = cfg(4, 64, 64);
    c.max_num_seqs = 2;
    let (mut core, ex) = core_with(c);
    let mut _keep = add(&mut core, 0, req(vec![1, 2], 1));
    let mut _keep = add(&mut core, 1, req(vec![3, 4], 2));
    let mut _keep = add(&mut core, 2, req(vec![5, 6], 1));
    run_to_completion(&mut core);
    assert_eq!(
        ex.schedule_log(),
        vec![vec![(0, 2), (1, 2)], vec![(1, 1), (2, 2)]],
        "C is admitted only once A is done"
    );
}

#[test]
fn priority_policy_admits_lowest_value_first_then_arrival() {
    let mut c = cfg(4, 64, 64);
    c.max_num_seqs = 1;
    c.scheduling_policy = SchedulingPolicy::Priority;
    let (mut core, ex) = core_with(c);
    let mut keep = Vec::new();
    for (id, prio) in [(0, 5), (1, 1), (2, 3), (3, 1)] {
        let mut r = req(vec![id as u32 + 1], 1);
        r.priority = prio;
        keep.push(add(&mut core, id, r));
    }
    run_to_completion(&mut core);
    let order: Vec<u64> = ex.schedule_log().iter().map(|s| s[0].0).collect();
    assert_eq!(order, vec![1, 3, 2, 0]);
}

#[test]
fn fcfs_ignores_priority() {
    let mut c = cfg(4, 64, 64);
    c.max_num_seqs = 1;
    let (mut core, ex) = core_with(c);
    let mut keep = Vec::new();
    for (id, prio) in [(0, 5), (1, 1)] {
        let mut r = req(vec![id as u32 + 1], 1);
        r.priority = prio;
        keep.push(add(&mut core, id, r));
    }
    run_to_completion(&mut core);
    let order: Vec<u64> = ex.schedule_log().iter().map(|s| s[0].0).collect();
    assert_eq!(order, vec![0, 1]);
}

#[test]
fn preemption_recomputes_and_keeps_outputs() {
    // 4 blocks of 4 tokens. Two 7-token prompts fill the cache by the time each needs a
    // third block; the later one is preempted and recomputes after the first finishes.
    let (mut core, ex) = core_with(cfg(4, 4, 64));
    let a: Vec<u32> = (1..=7).collect();
    let b: Vec<u32> = (21..=27).collect();
    let mut ra = add(&mut core, 0, req(a.clone(), 6));
    let mut rb = add(&mut core, 1, req(b.clone(), 6));
    let mut preempted = Vec::new();
    while core.has_work() {
        let rep = core.step();
        core.scheduler().check_invariants().unwrap();
        preempted.extend(rep.output.preempted);
    }
    assert_eq!(preempted, vec![1]);
    assert_eq!(core.stats().num_preemptions, 1);
    let log = ex.schedule_log();
    assert_eq!(log[0], vec![(0, 7), (1, 7)]);
    assert_eq!(log[1], vec![(0, 1), (1, 1)]);
    assert_eq!(
        log[2],
        vec![(0, 1)],
        "B preempted, no admissions in that step"
    );
    assert_eq!(
        collect(&mut ra)[&0],
        (expected_output(&a, 0, 6, V), Some(FinishReason::Length))
    );
    assert_eq!(
        collect(&mut rb)[&0],
        (expected_output(&b, 0, 6, V), Some(FinishReason::Length))
    );
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
    // Resumption recomputed B's prompt + 2 outputs = 9 tokens, reusing its cached block 0.
    let resumed = log
        .iter()
        .flatten()
        .find(|(id, n)| *id == 1 && *n > 1 && *n != 7);
    assert_eq!(resumed, Some(&(1, 5)));
    let s = core.stats();
    assert_eq!((s.prefix_cache_queries, s.prefix_cache_hits), (14, 0));
    assert_eq!(s.num_free_blocks, 4);
}

#[test]
fn prefix_cache_hits_for_a_shared_system_prompt() {
    let (mut core, ex) = core_with(cfg(4, 64, 64));
    let system: Vec<u32> = (1..=10).collect();
    let prompt = |u: u32| {
        let mut p = system.clone();
        p.extend([u, u + 1, u + 2]);
        p
    };
    let mut r0 = add(&mut core, 0, req(prompt(100), 2));
    run_to_completion(&mut core);
    // Two more in the same step: both hit the 2 full system blocks (8 tokens).
    let mut r1 = add(&mut core, 1, req(prompt(200), 2));
    let mut r2 = add(&mut core, 2, req(prompt(300), 2));
    run_to_completion(&mut core);
    let s = core.stats();
    assert_eq!(s.prefix_cache_queries, 39);
    assert_eq!(s.prefix_cache_hits, 16);
    assert_eq!(ex.schedule_log()[2], vec![(1, 5), (2, 5)]);
    for (rx, u, cached) in [(&mut r0, 100, 0), (&mut r1, 200, 8), (&mut r2, 300, 8)] {
        let outs: Vec<_> = drain_now(rx);
        assert!(outs.iter().all(|o| o.num_cached_tokens == cached));
        let toks: Vec<u32> = outs.iter().flat_map(|o| o.new_token_ids.clone()).collect();
        assert_eq!(toks, expected_output(&prompt(u), 0, 2, V));
    }
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
}

#[test]
fn identical_prompts_in_one_step_share_blocks_published_that_step() {
    let (mut core, ex) = core_with(cfg(4, 64, 64));
    let p: Vec<u32> = (1..=9).collect();
    let mut _keep = add(&mut core, 0, req(p.clone(), 1));
    let mut _keep = add(&mut core, 1, req(p.clone(), 1));
    core.step();
    let seen = ex.steps.lock().unwrap()[0].clone();
    assert_eq!((seen[0].num_computed, seen[0].num_new), (0, 9));
    assert_eq!((seen[1].num_computed, seen[1].num_new), (8, 1));
    assert_eq!(seen[0].block_table, vec![0, 1, 2]);
    assert_eq!(seen[1].block_table, vec![0, 1, 3]);
    assert_eq!(core.stats().prefix_cache_hits, 8);
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
}

#[test]
fn n_children_share_prompt_blocks_and_differ_by_index() {
    let (mut core, ex) = core_with(cfg(4, 64, 64));
    let p: Vec<u32> = (1..=9).collect();
    let mut r = req(p.clone(), 3);
    r.params.n = 3;
    let mut rx = add(&mut core, 10, r);
    core.step();
    let seen = ex.steps.lock().unwrap()[0].clone();
    let ids: Vec<u64> = seen.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![10, 11, 12]);
    let kv = core.scheduler().kv();
    assert_eq!((kv.pool().ref_count(0), kv.pool().ref_count(1)), (3, 3));
    assert_eq!(kv.pool().num_used(), 5, "2 shared blocks + 1 private each");
    run_to_completion(&mut core);
    let out = collect(&mut rx);
    for i in 0..3 {
        assert_eq!(
            out[&i],
            (expected_output(&p, i, 3, V), Some(FinishReason::Length))
        );
    }
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
}

#[test]
fn abort_by_parent_id_ends_every_child() {
    let (mut core, _ex) = core_with(cfg(4, 64, 64));
    let mut r = req((1..=5).collect(), 10);
    r.params.n = 2;
    let mut rx = add(&mut core, 4, r);
    core.step();
    core.abort(4);
    assert!(!core.has_work());
    let out = collect(&mut rx);
    assert_eq!(out[&0].1, Some(FinishReason::Abort));
    assert_eq!(out[&1].1, Some(FinishReason::Abort));
    assert_eq!(core.stats().kv_cache_usage, 0.0);
}

#[test]
fn stop_tokens_eos_and_min_tokens() {
    let (mut core, _ex) = core_with(cfg(4, 64, 64));
    let p: Vec<u32> = vec![5, 6, 7];
    let exp = expected_output(&p, 0, 6, V);
    let mut r_eos = req(p.clone(), 6);
    r_eos.eos_token_ids = vec![exp[2]];
    let mut r_stop = req(p.clone(), 6);
    r_stop.params.stop_token_ids = vec![exp[1]];
    // EOS before min_tokens does not stop.
    let mut r_min = req(p.clone(), 6);
    r_min.eos_token_ids = vec![exp[0]];
    r_min.params.min_tokens = 3;
    let mut r_ign = req(p.clone(), 4);
    r_ign.eos_token_ids = vec![exp[0]];
    r_ign.params.ignore_eos = true;
    let mut rx: Vec<_> = [r_eos, r_stop, r_min, r_ign]
        .into_iter()
        .enumerate()
        .map(|(i, r)| add(&mut core, i as u64, r))
        .collect();
    run_to_completion(&mut core);
    assert_eq!(
        collect(&mut rx[0])[&0],
        (exp[..3].to_vec(), Some(FinishReason::Stop))
    );
    let stop_msgs: Vec<_> = drain_now(&mut rx[1]);
    assert_eq!(stop_msgs.last().unwrap().stop_reason, Some(exp[1]));
    assert_eq!(stop_msgs.len(), 2);
    assert_eq!(
        collect(&mut rx[2])[&0],
        (exp.clone(), Some(FinishReason::Length))
    );
    assert_eq!(
        collect(&mut rx[3])[&0],
        (exp[..4].to_vec(), Some(FinishReason::Length))
    );
}

#[test]
fn prompt_logprobs_arrive_once_with_the_first_token() {
    let (mut core, ex) = core_with(cfg(4, 64, 4));
    let p: Vec<u32> = (1..=10).collect();
    let mut r = req(p.clone(), 2);
    r.params.prompt_logprobs = Some(1);
    r.params.logprobs = Some(0);
    let mut rx = add(&mut core, 0, r);
    run_to_completion(&mut core);
    assert_eq!(
        ex.schedule_log()[..3],
        [vec![(0, 4)], vec![(0, 4)], vec![(0, 2)]]
    );
    let outs: Vec<_> = drain_now(&mut rx);
    assert_eq!(outs.len(), 2);
    let ids: Vec<u32> = outs[0].prompt_logprobs.iter().map(|l| l.token_id).collect();
    assert_eq!(ids, p[1..].to_vec());
    let lps: Vec<f32> = outs[0].prompt_logprobs.iter().map(|l| l.logprob).collect();
    assert_eq!(lps, (0..9).map(|j| -(j as f32)).collect::<Vec<_>>());
    assert!(outs[1].prompt_logprobs.is_empty());
    assert!(outs.iter().all(|o| o.logprobs.len() == 1));
}

#[test]
fn prompt_logprob_requests_do_not_read_the_prefix_cache() {
    let (mut core, ex) = core_with(cfg(4, 64, 64));
    let p: Vec<u32> = (1..=9).collect();
    let mut _keep = add(&mut core, 0, req(p.clone(), 1));
    run_to_completion(&mut core);
    let mut r = req(p.clone(), 1);
    r.params.prompt_logprobs = Some(0);
    let mut _keep = add(&mut core, 1, r);
    run_to_completion(&mut core);
    assert_eq!(ex.schedule_log()[1], vec![(1, 9)]);
    let s = core.stats();
    assert_eq!((s.prefix_cache_queries, s.prefix_cache_hits), (9, 0));
}

#[test]
fn greedy_sampling_params_default_max_tokens_reaches_max_model_len() {
    let mut c = cfg(4, 64, 64);
    c.max_model_len = 12;
    let (mut core, _ex) = core_with(c);
    let r = ferrum_engine::EngineRequest::new(vec![1, 2, 3, 4, 5], SamplingParams::greedy());
    let mut rx = add(&mut core, 0, r);
    run_to_completion(&mut core);
    let (toks, fin) = collect(&mut rx)[&0].clone();
    assert_eq!((toks.len(), fin), (7, Some(FinishReason::Length)));
}

#[test]
fn a_failed_step_withdraws_the_blocks_it_published() {
    quiet_injected_panics();
    let (mut core, ex) = core_with(cfg(4, 64, 64));
    let p: Vec<u32> = (1..=9).collect();
    *ex.panic_steps.lock().unwrap() = 1;
    let mut rx = add(&mut core, 0, req(p.clone(), 2));
    let rep = core.step();
    assert_eq!(
        rep.error.as_deref(),
        Some("executor panicked: injected step panic")
    );
    let outs: Vec<_> = drain_now(&mut rx);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].finish_reason, Some(FinishReason::Abort));
    assert_eq!(
        core.scheduler().kv().pool().num_cached(),
        0,
        "never computed: not cached"
    );
    // The same prompt again must compute everything, not hit garbage.
    let mut rx = add(&mut core, 1, req(p.clone(), 2));
    run_to_completion(&mut core);
    assert_eq!(
        collect(&mut rx)[&0],
        (expected_output(&p, 0, 2, V), Some(FinishReason::Length))
    );
    assert_eq!(core.stats().prefix_cache_hits, 0);
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
}

#[test]
fn a_dropped_receiver_aborts_the_request() {
    let (mut core, _ex) = core_with(cfg(4, 64, 64));
    drop(add(&mut core, 0, req(vec![1, 2, 3], 10)));
    core.step();
    assert!(!core.has_work());
    assert_eq!(core.stats().kv_cache_usage, 0.0);
}
