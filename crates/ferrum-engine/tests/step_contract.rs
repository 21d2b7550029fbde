//! The step contract between the engine and a device runner: runner-state notifications on
//! every batch, several accepted tokens per sequence per step, fatal executor errors, and the
//! executor built on the engine thread by a factory.

mod common;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ferrum_engine::{
    Engine, EngineConfig, EngineCore, EngineError, EngineHandle, Executor, ExecutorFactory,
    ExecutorInit, FatalError, FinishReason, ReqId, RequestOutput, RequestStream, Sampled,
    SeqStepOutput, StepBatch,
};

const V: usize = 1000;

fn core_with(cfg: EngineConfig, ex: &FakeExecutor) -> EngineCore {
    EngineCore::new(cfg, Box::new(ex.clone()))
}

fn drain(s: &mut RequestStream) -> Vec<RequestOutput> {
    std::iter::from_fn(|| s.recv_timeout(Duration::from_secs(10))).collect()
}

/// Every id the runner was told about, per kind, over the whole run.
fn all_notes(ex: &FakeExecutor) -> Notes {
    let mut all = Notes::default();
    for n in ex.notes.lock().unwrap().iter() {
        all.new.extend(&n.new);
        all.finished.extend(&n.finished);
        all.aborted.extend(&n.aborted);
        all.preempted.extend(&n.preempted);
    }
    all
}

/// At rest, what the runner still holds is exactly what the engine has yet to release.
fn assert_runner_in_sync(core: &EngineCore, ex: &FakeExecutor) {
    let p = core.scheduler().pending_updates();
    assert!(p.new.is_empty(), "undelivered new sequences: {p:?}");
    let mut pending: Vec<ReqId> = [&p.finished, &p.aborted, &p.preempted]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    pending.sort_unstable();
    assert_eq!(ex.known_ids(), pending);
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
}

// ---------------------------------------------------------------------------------------
// 1. Runner-state notifications
// ---------------------------------------------------------------------------------------

#[test]
fn new_then_finished_on_the_next_executed_step() {
    let ex = FakeExecutor::new(4, V);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let _a = add(&mut core, 0, req(vec![1, 2, 3], 2));
    let _b = add(&mut core, 1, req(vec![4, 5], 4));
    run_to_completion(&mut core);
    let notes = ex.notes.lock().unwrap().clone();
    assert_eq!(notes.len(), 4);
    assert_eq!(notes[0].new, vec![0, 1]);
    assert!(notes[1].new.is_empty() && notes[1].finished.is_empty());
    // A finished in step 2 (its second token): step 3 says so.
    assert_eq!(notes[2].finished, vec![0]);
    assert!(notes[3].finished.is_empty());
    // B finished in the last step: nothing ran since, so the release is still pending and
    // the runner still holds B's state.
    assert_eq!(core.scheduler().pending_updates().finished, vec![1]);
    assert_runner_in_sync(&core, &ex);
    // The next executed step delivers it.
    let _c = add(&mut core, 2, req(vec![9], 1));
    core.step();
    let last = ex.notes.lock().unwrap().last().unwrap().clone();
    assert_eq!((last.new, last.finished), (vec![2], vec![1]));
}

#[test]
fn aborts_are_reported_only_for_sequences_the_runner_knows() {
    let ex = FakeExecutor::new(4, V);
    let mut core = core_with(
        EngineConfig {
            max_num_seqs: 1,
            ..cfg(4, 64, 32)
        },
        &ex,
    );
    let _a = add(&mut core, 0, req(vec![1, 2, 3], 10));
    let _b = add(&mut core, 1, req(vec![4, 5], 10)); // waits: max_num_seqs = 1
    core.step();
    core.abort(1); // never scheduled: the runner never heard of it
    core.abort(0); // running: the runner must drop it
    let _c = add(&mut core, 2, req(vec![6], 1));
    core.step();
    let notes = ex.notes.lock().unwrap().clone();
    assert_eq!(notes[0].new, vec![0]);
    assert_eq!(notes[1].aborted, vec![0]);
    assert_eq!(notes[1].new, vec![2]);
    run_to_completion(&mut core);
    assert_runner_in_sync(&core, &ex);
}

#[test]
fn a_failed_step_reports_its_sequences_as_aborted() {
    quiet_injected_panics();
    let mut ex = FakeExecutor::new(4, V);
    ex.err_on = Some(777);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let _a = add(&mut core, 0, req(vec![1, 2], 5));
    core.step();
    let _bad = add(&mut core, 1, req(vec![777], 5));
    assert!(core.step().error.is_some()); // fails both 0 and 1
    let _c = add(&mut core, 2, req(vec![3], 1));
    core.step();
    let notes = ex.notes.lock().unwrap().clone();
    assert_eq!(notes[1].new, vec![1]);
    assert_eq!(notes[2].aborted, vec![0, 1]);
    assert_eq!(notes[2].new, vec![2]);
    run_to_completion(&mut core);
    assert_runner_in_sync(&core, &ex);
}

/// Preemption: the victim is released as preempted and comes back in `new`; every admission
/// shows up in `new` exactly once and every one is released exactly once.
#[test]
fn preempted_sequences_are_released_and_readmitted_as_new() {
    for tokens_per_step in [1, 3] {
        let mut ex = FakeExecutor::new(4, V);
        ex.tokens_per_step = tokens_per_step;
        let cfg = EngineConfig {
            max_model_len: 32,
            ..cfg(4, 6, 64)
        };
        let mut core = core_with(cfg, &ex);
        let mut rxs = Vec::new();
        for i in 0..3u32 {
            let prompt: Vec<u32> = (0..6).map(|k| i * 10 + k).collect();
            rxs.push((prompt.clone(), add(&mut core, i as u64, req(prompt, 8))));
        }
        run_to_completion(&mut core);
        assert!(core.stats().num_preemptions >= 1);
        let all = all_notes(&ex);
        assert!(!all.preempted.is_empty());
        assert!(all.aborted.is_empty());
        let count = |v: &[ReqId], id| v.iter().filter(|&&x| x == id).count();
        // Releases still pending at the end were never delivered; count them too.
        let pending = core.scheduler().pending_updates().clone();
        for id in 0..3 {
            let preempted = count(&all.preempted, id) + count(&pending.preempted, id);
            assert_eq!(count(&all.new, id), 1 + preempted, "seq {id}");
            assert_eq!(
                count(&all.finished, id) + count(&pending.finished, id),
                1,
                "seq {id}"
            );
        }
        assert_runner_in_sync(&core, &ex);
        for (prompt, rx) in &mut rxs {
            assert_eq!(
                collect(rx)[&0],
                (expected_output(prompt, 0, 8, V), Some(FinishReason::Length))
            );
        }
    }
}

#[test]
fn child_sequences_have_their_own_ids_and_lifecycles() {
    let ex = FakeExecutor::new(4, V);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let mut r = req(vec![1, 2, 3, 4, 5], 6);
    r.params.n = 3;
    let _rx = add(&mut core, 10, r);
    core.step();
    core.abort_seq(11);
    core.step();
    let notes = ex.notes.lock().unwrap().clone();
    assert_eq!(notes[0].new, vec![10, 11, 12]);
    assert_eq!(notes[1].aborted, vec![11]);
    run_to_completion(&mut core);
    assert_runner_in_sync(&core, &ex);
}

// ---------------------------------------------------------------------------------------
// 2. Several accepted tokens per step
// ---------------------------------------------------------------------------------------

fn multi(tokens_per_step: usize) -> FakeExecutor {
    let mut ex = FakeExecutor::new(4, V);
    ex.tokens_per_step = tokens_per_step;
    ex
}

#[test]
fn three_tokens_a_step_stop_exactly_at_max_tokens() {
    let ex = multi(3);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let prompt = vec![1, 2, 3];
    let mut rx = add(&mut core, 0, req(prompt.clone(), 7));
    run_to_completion(&mut core);
    let msgs = drain_now(&mut rx);
    let sizes: Vec<usize> = msgs.iter().map(|m| m.new_token_ids.len()).collect();
    assert_eq!(
        sizes,
        vec![3, 3, 1],
        "the third step's last two tokens are dropped"
    );
    let toks: Vec<u32> = msgs.iter().flat_map(|m| m.new_token_ids.clone()).collect();
    assert_eq!(
        toks,
        expected_output(&prompt, 0, 7, V),
        "each token once, in order"
    );
    let fins: Vec<_> = msgs.iter().map(|m| m.finish_reason).collect();
    assert_eq!(fins, vec![None, None, Some(FinishReason::Length)]);
    // The accepted tokens had no K/V: each later step feeds all three of them.
    assert_eq!(
        ex.schedule_log(),
        vec![vec![(0, 3)], vec![(0, 3)], vec![(0, 3)]]
    );
    let st = core.stats();
    assert_eq!((st.prompt_tokens, st.generation_tokens), (3, 7));
    assert_eq!(st.num_free_blocks, 64);
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
}

#[test]
fn an_eos_in_the_middle_of_the_accepted_tokens_ends_the_sequence_there() {
    let prompt = vec![5, 6, 7];
    let expected = expected_output(&prompt, 0, 20, V);
    let eos = expected[4];
    assert!(!expected[..4].contains(&eos), "pick another prompt");
    for (stop_token, want_reason) in [(false, None), (true, Some(eos))] {
        let ex = multi(3);
        let mut core = core_with(cfg(4, 64, 32), &ex);
        let mut r = req(prompt.clone(), 20);
        if stop_token {
            r.params.stop_token_ids = vec![eos];
        } else {
            r.eos_token_ids = vec![eos];
        }
        let mut rx = add(&mut core, 0, r);
        run_to_completion(&mut core);
        let msgs = drain_now(&mut rx);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].new_token_ids, expected[..3]);
        // The second step accepted [t3, eos, t5]: t5 is dropped.
        assert_eq!(msgs[1].new_token_ids, expected[3..5]);
        assert_eq!(msgs[1].finish_reason, Some(FinishReason::Stop));
        assert_eq!(msgs[1].stop_reason, want_reason);
        assert_eq!(core.stats().generation_tokens, 5);
        assert_runner_in_sync(&core, &ex);
    }
}

#[test]
fn min_tokens_masks_an_early_eos_among_accepted_tokens() {
    let prompt = vec![5, 6, 7];
    let expected = expected_output(&prompt, 0, 20, V);
    let ex = multi(3);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let mut r = req(prompt.clone(), 20);
    r.eos_token_ids = vec![expected[1]]; // an EOS at output 2, ignored until 3 outputs exist
    r.params.min_tokens = 3;
    let mut rx = add(&mut core, 0, r);
    run_to_completion(&mut core);
    let toks = collect(&mut rx).remove(&0).unwrap();
    let stop_at = expected[2..]
        .iter()
        .position(|&t| t == expected[1])
        .map_or(20, |p| p + 3);
    assert_eq!(toks.0, expected[..stop_at]);
}

#[test]
fn accepted_tokens_stop_at_the_model_length() {
    let ex = multi(4);
    let mut core = core_with(
        EngineConfig {
            max_model_len: 16,
            ..cfg(4, 64, 32)
        },
        &ex,
    );
    let prompt: Vec<u32> = (1..=10).collect();
    let mut r = req(prompt.clone(), 1);
    r.params.max_tokens = None;
    let mut rx = add(&mut core, 0, r);
    run_to_completion(&mut core);
    let (toks, fin) = collect(&mut rx).remove(&0).unwrap();
    assert_eq!(toks, expected_output(&prompt, 0, 6, V));
    assert_eq!(fin, Some(FinishReason::Length));
}

/// Multi-token decodes share the token budget: when it runs out a sequence's pending tokens
/// are computed in pieces (no sample until all of them are in), and outputs stay exact.
#[test]
fn multi_token_decodes_are_chunked_under_the_token_budget() {
    let ex = multi(3);
    let mut core = core_with(cfg(4, 64, 4), &ex);
    let (a, b) = (vec![1, 2], vec![3, 4]);
    let mut ra = add(&mut core, 0, req(a.clone(), 9));
    let mut rb = add(&mut core, 1, req(b.clone(), 9));
    run_to_completion(&mut core);
    let log = ex.schedule_log();
    assert_eq!(log[0], vec![(0, 2), (1, 2)]);
    assert_eq!(
        log[1],
        vec![(0, 3), (1, 1)],
        "B gets what is left of the budget"
    );
    assert!(
        log.iter()
            .all(|s| s.iter().map(|x| x.1).sum::<usize>() <= 4)
    );
    assert_eq!(
        collect(&mut ra)[&0],
        (expected_output(&a, 0, 9, V), Some(FinishReason::Length))
    );
    assert_eq!(
        collect(&mut rb)[&0],
        (expected_output(&b, 0, 9, V), Some(FinishReason::Length))
    );
    assert_runner_in_sync(&core, &ex);
    assert_eq!(core.stats().num_free_blocks, 64);
}

#[test]
fn logprobs_come_one_per_accepted_token() {
    let ex = multi(3);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let mut r = req(vec![1, 2, 3], 5);
    r.params.logprobs = Some(1);
    let mut rx = add(&mut core, 0, r);
    run_to_completion(&mut core);
    for m in drain_now(&mut rx) {
        let ids: Vec<u32> = m.logprobs.iter().map(|l| l.token_id).collect();
        assert_eq!(ids, m.new_token_ids);
    }
}

/// An executor whose answer breaks the contract: tokens for a sequence that does not sample,
/// or none for one that does.
struct WrongCount;

impl Executor for WrongCount {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        Ok(batch
            .seqs
            .iter()
            .map(|s| SeqStepOutput {
                tokens: if s.sample {
                    vec![]
                } else {
                    vec![Sampled {
                        id: 1,
                        logprobs: None,
                    }]
                },
                prompt_logprobs: vec![],
            })
            .collect())
    }
}

#[test]
fn a_wrong_token_count_fails_the_step() {
    let mut core = EngineCore::new(cfg(4, 64, 32), Box::new(WrongCount));
    let mut rx = add(&mut core, 0, req(vec![1, 2], 3));
    let rep = core.step();
    assert_eq!(
        rep.error.as_deref(),
        Some("executor output for sequence 0: sample = true but 0 tokens")
    );
    let m = drain_now(&mut rx);
    assert_eq!(m.last().unwrap().finish_reason, Some(FinishReason::Abort));
    assert!(!core.has_work());
}

// ---------------------------------------------------------------------------------------
// 3. Fatal executor errors
// ---------------------------------------------------------------------------------------

const FATAL: &str = "fatal executor error: launching the forward: injected device loss";

#[test]
fn a_fatal_error_stops_the_engine_and_fails_everything_with_the_reason() {
    let mut ex = FakeExecutor::new(4, V);
    ex.fatal_on = Some(999);
    ex.sleep_ms = 5;
    let eng = Engine::start(cfg(4, 64, 32), Box::new(ex));
    let mut long = eng.add_request(req(vec![1, 2, 3], 40)).unwrap();
    long.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut bad = eng.add_request(req(vec![999], 5)).unwrap();
    for s in [&mut long, &mut bad] {
        let last = drain(s).pop().unwrap();
        assert_eq!(last.finish_reason, Some(FinishReason::Abort));
        assert_eq!(last.error.as_deref(), Some(FATAL));
    }
    assert_eq!(eng.death(), Some(FATAL));
    assert_eq!(
        eng.add_request(req(vec![1], 1)).unwrap_err(),
        EngineError::Dead
    );
    eng.shutdown();
}

#[test]
fn a_plain_error_is_not_fatal() {
    let e = anyhow::anyhow!("out of memory for this batch");
    assert!(!FatalError::is_fatal(&e));
    let e = anyhow::Error::new(FatalError("xid 79".into())).context("step 3");
    assert!(FatalError::is_fatal(&e));
    assert_eq!(format!("{e:#}"), "step 3: xid 79");
    assert_eq!(FatalError("x".into()).to_string(), "x");
}

#[test]
fn a_core_driven_synchronously_stops_after_a_fatal_error() {
    let mut ex = FakeExecutor::new(4, V);
    ex.fatal_on = Some(999);
    let mut core = core_with(cfg(4, 64, 32), &ex);
    let mut a = add(&mut core, 0, req(vec![1, 2, 3], 10));
    core.step();
    let mut b = add(&mut core, 1, req(vec![999], 10));
    let rep = core.step();
    assert_eq!(rep.error.as_deref(), Some(FATAL));
    assert_eq!(core.death(), Some(FATAL));
    let (tx, _rx) = ferrum_engine::output_channel();
    assert_eq!(core.add_request(2, req(vec![1], 1), tx).unwrap_err(), FATAL);
    // The next step fails what is left with the reason, and nothing runs again.
    let steps = ex.steps.lock().unwrap().len();
    core.step();
    assert!(!core.has_work());
    assert_eq!(ex.steps.lock().unwrap().len(), steps);
    for rx in [&mut a, &mut b] {
        let last = drain_now(rx).pop().unwrap();
        assert_eq!(last.error.as_deref(), Some(FATAL));
    }
    assert_eq!(core.stats().num_free_blocks, 64);
}

// ---------------------------------------------------------------------------------------
// 4. The executor built on the engine thread
// ---------------------------------------------------------------------------------------

fn factory(ex: FakeExecutor, num_blocks: usize) -> ExecutorFactory {
    Box::new(move || {
        Ok(ExecutorInit {
            executor: Box::new(ex),
            num_blocks,
        })
    })
}

fn start_with(cfg: EngineConfig, f: ExecutorFactory) -> anyhow::Result<(EngineHandle, usize)> {
    Engine::start_with(cfg, f, Box::new(|_| {}))
}

#[test]
fn the_runner_sizes_the_cache() {
    let ex = FakeExecutor::new(4, V);
    let (eng, num_blocks) = start_with(cfg(4, 64, 32), factory(ex.clone(), 10)).unwrap();
    assert_eq!(num_blocks, 10);
    assert_eq!(eng.config().num_blocks, 10);
    assert_eq!(
        eng.snapshot().num_total_blocks,
        10,
        "published before ready"
    );
    assert_eq!(eng.stats().num_total_blocks, 10);
    // Admission checks against the runner's cache (10 blocks of 4 = 40 tokens).
    let err = eng.add_request(req((1..=30).collect(), 20)).unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest(m) if m.contains("holds only 40 tokens")),
        "{err:?}"
    );
    let mut s = eng.add_request(req(vec![1, 2], 3)).unwrap();
    assert_eq!(
        drain(&mut s)
            .iter()
            .flat_map(|o| o.new_token_ids.clone())
            .collect::<Vec<_>>(),
        expected_output(&[1, 2], 0, 3, V)
    );
    eng.shutdown();
}

/// Not `Send`: it could not be built on the caller's thread and moved.
struct ThreadBound {
    inner: FakeExecutor,
    _not_send: Rc<Cell<u32>>,
    built_on: Option<String>,
    ran_on: Arc<Mutex<Vec<Option<String>>>>,
}

impl Executor for ThreadBound {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        let here = std::thread::current().name().map(str::to_string);
        assert_eq!(here, self.built_on);
        self.ran_on.lock().unwrap().push(here);
        self.inner.execute(batch)
    }
}

#[test]
fn the_factory_runs_on_the_engine_thread_and_the_executor_need_not_be_send() {
    let ran_on = Arc::new(Mutex::new(Vec::new()));
    let r = ran_on.clone();
    let f: ExecutorFactory = Box::new(move || {
        Ok(ExecutorInit {
            executor: Box::new(ThreadBound {
                inner: FakeExecutor::new(4, V),
                _not_send: Rc::new(Cell::new(0)),
                built_on: std::thread::current().name().map(str::to_string),
                ran_on: r,
            }),
            num_blocks: 64,
        })
    });
    let (eng, _) = start_with(cfg(4, 64, 32), f).unwrap();
    let mut s = eng.add_request(req(vec![1, 2], 3)).unwrap();
    assert_eq!(drain(&mut s).len(), 3);
    eng.shutdown();
    let ran_on = ran_on.lock().unwrap();
    assert!(!ran_on.is_empty());
    assert!(ran_on.iter().all(|t| t.as_deref() == Some("ferrum-engine")));
}

#[test]
fn factory_failures_are_errors_not_hangs() {
    let f: ExecutorFactory = Box::new(|| anyhow::bail!("no device"));
    let err = start_with(cfg(4, 64, 32), f).err().unwrap();
    assert_eq!(err.to_string(), "no device");

    quiet_injected_panics();
    let f: ExecutorFactory = Box::new(|| panic!("injected factory panic"));
    let err = start_with(cfg(4, 64, 32), f).err().unwrap();
    assert_eq!(
        err.to_string(),
        "building the executor panicked: injected factory panic"
    );

    let err = start_with(cfg(4, 64, 32), factory(FakeExecutor::new(4, V), 0))
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "the executor allocated no KV-cache block");
}

#[test]
fn a_bad_config_is_refused_before_the_factory_runs() {
    let called = Arc::new(Mutex::new(false));
    let c = called.clone();
    let f: ExecutorFactory = Box::new(move || {
        *c.lock().unwrap() = true;
        anyhow::bail!("unreachable")
    });
    let bad = EngineConfig {
        block_size: 0,
        ..cfg(4, 64, 32)
    };
    let err = start_with(bad, f).err().unwrap();
    assert_eq!(err.to_string(), "block_size must be positive");
    assert!(!*called.lock().unwrap());
}

#[test]
#[should_panic(expected = "num_blocks must be positive")]
fn start_still_panics_on_a_bad_config() {
    let _ = Engine::start(cfg(4, 0, 32), Box::new(FakeExecutor::new(4, V)));
}

#[test]
fn the_observer_sees_every_step_of_a_factory_built_engine() {
    let counts: Arc<Mutex<HashMap<&str, u64>>> = Default::default();
    let c = counts.clone();
    let (eng, _) = Engine::start_with(
        cfg(4, 64, 32),
        factory(FakeExecutor::new(4, V), 64),
        Box::new(move |info| {
            *c.lock().unwrap().entry("steps").or_default() += 1;
            *c.lock().unwrap().entry("tokens").or_default() += info.num_tokens as u64;
        }),
    )
    .unwrap();
    let mut s = eng.add_request(req(vec![1, 2, 3], 4)).unwrap();
    drain(&mut s);
    eng.shutdown();
    let counts = counts.lock().unwrap();
    assert_eq!(counts["steps"], 4);
    assert_eq!(counts["tokens"], 3 + 3);
}
