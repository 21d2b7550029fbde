//! The engine thread end to end: streams, failure isolation (panic and `Err` in the
//! executor), abort, stats, seeded reproducibility under batching, shutdown.

mod common;

use std::time::Duration;

use common::*;
use ferrum_engine::{
    Engine, EngineError, EngineHandle, Executor, FinishReason, RequestOutput, RequestStream,
    SamplingParams, SeqStepOutput, StepBatch, sample,
};

const V: usize = 1000;

fn start(ex: FakeExecutor) -> EngineHandle {
    quiet_injected_panics();
    Engine::start(cfg(4, 64, 32), Box::new(ex))
}

/// Every message until the stream closes, with a timeout so a hang fails the test.
fn drain(s: &mut RequestStream) -> Vec<RequestOutput> {
    let mut out = Vec::new();
    while let Some(o) = s.recv_timeout(Duration::from_secs(10)) {
        out.push(o);
    }
    out
}

fn tokens(outs: &[RequestOutput], seq_index: usize) -> Vec<u32> {
    outs.iter()
        .filter(|o| o.seq_index == seq_index)
        .flat_map(|o| o.new_token_ids.clone())
        .collect()
}

#[test]
fn stream_delivers_tokens_then_finish_then_closes() {
    let eng = start(FakeExecutor::new(4, V));
    let prompt = vec![1, 2, 3];
    let mut s = eng.add_request(req(prompt.clone(), 5)).unwrap();
    let outs = drain(&mut s);
    assert_eq!(outs.len(), 5, "one message per token");
    assert!(outs[..4].iter().all(|o| o.finish_reason.is_none()));
    assert_eq!(outs[4].finish_reason, Some(FinishReason::Length));
    assert_eq!(outs[4].finish_reason.unwrap().as_str(), "length");
    assert_eq!(tokens(&outs, 0), expected_output(&prompt, 0, 5, V));
    assert!(s.recv().is_none(), "closed after the finish");
    let st = eng.stats();
    assert_eq!((st.num_running, st.num_waiting), (0, 0));
    assert_eq!((st.prompt_tokens, st.generation_tokens), (3, 5));
    assert_eq!(st.kv_cache_usage, 0.0);
    eng.shutdown();
}

#[test]
fn n_children_stream_on_one_channel() {
    let eng = start(FakeExecutor::new(4, V));
    let prompt = vec![4, 5, 6, 7, 8];
    let mut r = req(prompt.clone(), 3);
    r.params.n = 2;
    let mut s = eng.add_request(r).unwrap();
    let outs = drain(&mut s);
    for i in 0..2 {
        assert_eq!(tokens(&outs, i), expected_output(&prompt, i, 3, V));
        let fins: Vec<_> = outs
            .iter()
            .filter(|o| o.seq_index == i)
            .filter_map(|o| o.finish_reason)
            .collect();
        assert_eq!(fins, vec![FinishReason::Length]);
    }
    // Ids: the next request starts after both children's ids.
    let s2 = eng.add_request(req(vec![1], 1)).unwrap();
    assert_eq!(s2.id, s.id + 2);
    eng.shutdown();
}

#[test]
fn executor_panic_fails_only_that_step_and_engine_keeps_serving() {
    let mut ex = FakeExecutor::new(4, V);
    ex.panic_on = Some(666);
    let eng = start(ex.clone());
    let mut bad = eng.add_request(req(vec![666, 1, 2], 4)).unwrap();
    let outs = drain(&mut bad);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].finish_reason, Some(FinishReason::Abort));
    assert_eq!(outs[0].finish_reason.unwrap().as_str(), "abort");
    assert_eq!(
        outs[0].error.as_deref(),
        Some("executor panicked: injected panic")
    );
    assert_eq!(eng.stats().kv_cache_usage, 0.0, "its blocks were freed");

    let mut good = eng.add_request(req(vec![7, 8, 9], 4)).unwrap();
    let outs = drain(&mut good);
    assert_eq!(tokens(&outs, 0), expected_output(&[7, 8, 9], 0, 4, V));
    assert_eq!(
        outs.last().unwrap().finish_reason,
        Some(FinishReason::Length)
    );
    assert!(outs.iter().all(|o| o.error.is_none()));
    assert!(ex.violations().is_empty(), "{:?}", ex.violations());
    eng.shutdown();
}

#[test]
fn executor_error_fails_the_step_with_its_message() {
    let mut ex = FakeExecutor::new(4, V);
    ex.err_on = Some(777);
    let eng = start(ex);
    let mut bad = eng.add_request(req(vec![777, 1], 2)).unwrap();
    let outs = drain(&mut bad);
    assert_eq!(outs.len(), 1);
    assert_eq!(
        outs[0].error.as_deref(),
        Some("executor failed: injected error")
    );
    let mut good = eng.add_request(req(vec![3], 2)).unwrap();
    assert_eq!(tokens(&drain(&mut good), 0), expected_output(&[3], 0, 2, V));
    let st = eng.stats();
    assert_eq!((st.num_free_blocks, st.num_total_blocks), (64, 64));
    eng.shutdown();
}

#[test]
fn a_panic_mid_generation_fails_the_requests_in_that_step_only() {
    let mut ex = FakeExecutor::new(4, V);
    ex.panic_on = Some(666);
    ex.sleep_ms = 10; // `long` needs ~400 ms: ample time for the poison to join it
    let eng = start(ex);
    let mut long = eng.add_request(req(vec![1, 2, 3], 40)).unwrap();
    // Wait until `long` is decoding, then inject the poison: both share the failing step.
    long.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut bad = eng.add_request(req(vec![666], 2)).unwrap();
    let bad_outs = drain(&mut bad);
    assert!(bad_outs.last().unwrap().error.is_some());
    let long_outs = drain(&mut long);
    let last = long_outs.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Abort));
    assert!(last.error.as_deref().unwrap().contains("injected panic"));
    // The engine is still alive and clean.
    let mut after = eng.add_request(req(vec![9], 3)).unwrap();
    assert_eq!(
        tokens(&drain(&mut after), 0),
        expected_output(&[9], 0, 3, V)
    );
    assert_eq!(eng.stats().kv_cache_usage, 0.0);
    eng.shutdown();
}

#[test]
fn abort_frees_blocks_and_ends_the_stream() {
    let mut ex = FakeExecutor::new(4, V);
    ex.sleep_ms = 20; // ~1 s of generation left when the abort arrives
    let eng = start(ex);
    let mut s = eng.add_request(req((1..=9).collect(), 50)).unwrap();
    s.recv_timeout(Duration::from_secs(10)).unwrap();
    s.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(eng.stats().kv_cache_usage > 0.0);
    eng.abort(s.id);
    let outs = drain(&mut s);
    let last = outs.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Abort));
    assert!(last.error.is_none());
    assert!(last.new_token_ids.is_empty());
    let st = eng.stats();
    assert_eq!((st.num_running, st.kv_cache_usage), (0, 0.0));
    eng.abort(s.id); // unknown by now: ignored
    eng.shutdown();
}

/// A stop string in one of `n` outputs ends that sequence only; its sibling runs to the end.
#[test]
fn abort_seq_ends_one_child_and_spares_its_sibling() {
    let mut ex = FakeExecutor::new(4, V);
    ex.sleep_ms = 20;
    let eng = start(ex);
    let mut r = req((1..=9).collect(), 30);
    r.params.n = 2;
    let mut s = eng.add_request(r).unwrap();
    s.recv_timeout(Duration::from_secs(10)).unwrap();
    eng.abort_seq(s.id, 0);
    let outs = drain(&mut s);
    let finish = |i: usize| {
        outs.iter()
            .find(|o| o.seq_index == i && o.finish_reason.is_some())
            .unwrap()
            .finish_reason
    };
    assert_eq!(finish(0), Some(FinishReason::Abort));
    assert_eq!(finish(1), Some(FinishReason::Length));
    assert_eq!(tokens(&outs, 1).len(), 30);
    assert!(tokens(&outs, 0).len() < 30);
    eng.shutdown();
}

#[test]
fn refused_requests_never_reach_the_queue() {
    let eng = start(FakeExecutor::new(4, V));
    let err = eng.add_request(req(vec![], 1)).unwrap_err();
    assert_eq!(
        err,
        EngineError::InvalidRequest("The decoder prompt cannot be empty".into())
    );
    assert_eq!(err.to_string(), "The decoder prompt cannot be empty");
    let mut r = req(vec![1], 1);
    r.params.top_p = 0.0;
    assert_eq!(
        eng.add_request(r).unwrap_err().to_string(),
        "top_p must be in (0, 1], got 0.0."
    );
    assert_eq!(eng.stats().num_waiting, 0);
    eng.shutdown();
}

#[test]
fn shutdown_aborts_pending_requests_and_later_adds_fail() {
    let mut ex = FakeExecutor::new(4, V);
    ex.sleep_ms = 10;
    let eng = start(ex);
    let mut s = eng.add_request(req(vec![1, 2], 60)).unwrap();
    s.recv_timeout(Duration::from_secs(10)).unwrap();
    eng.shutdown();
    let last = drain(&mut s).pop().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Abort));
    assert_eq!(last.error.as_deref(), Some("the engine is shutting down"));
    assert_eq!(
        eng.add_request(req(vec![1], 1)).unwrap_err(),
        EngineError::Dead
    );
    eng.shutdown(); // idempotent
}

/// Logits from a fixed pseudo-random function of the token history, sampled with the
/// engine's own `sample`: what a real runner does, minus the model.
struct SamplingExecutor;

impl Executor for SamplingExecutor {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        Ok(batch
            .seqs
            .iter()
            .map(|s| SeqStepOutput {
                tokens: s
                    .sample
                    .then(|| {
                        let h = next_token(s.tokens, 0, 1 << 30) as u64;
                        let mut logits: Vec<f32> = (0..64u64)
                            .map(|i| ((h ^ (i * 0x9e37_79b9)) % 1000) as f32 / 300.0)
                            .collect();
                        sample(&mut logits, s)
                    })
                    .into_iter()
                    .collect(),
                prompt_logprobs: vec![],
            })
            .collect())
    }
}

fn seeded(seed: u64, n: usize) -> ferrum_engine::EngineRequest {
    ferrum_engine::EngineRequest::new(
        vec![3, 1, 4, 1, 5],
        SamplingParams {
            seed: Some(seed),
            n,
            max_tokens: Some(12),
            ..Default::default()
        },
    )
}

#[test]
fn seeded_requests_reproduce_whatever_they_are_batched_with() {
    let cfg = ferrum_engine::EngineConfig {
        block_size: 4,
        ..ferrum_engine::EngineConfig::new(64, 64, 64)
    };
    let eng = Engine::start(cfg.clone(), Box::new(SamplingExecutor));
    let alone = drain(&mut eng.add_request(seeded(42, 2)).unwrap());
    eng.shutdown();

    let eng = Engine::start(cfg, Box::new(SamplingExecutor));
    let mut others: Vec<_> = (0..4)
        .map(|i| {
            let mut r = seeded(i, 1);
            r.params.seed = (i % 2 == 0).then_some(i);
            r.prompt_token_ids.push(i as u32);
            eng.add_request(r).unwrap()
        })
        .collect();
    let batched = drain(&mut eng.add_request(seeded(42, 2)).unwrap());
    for o in &mut others {
        drain(o);
    }
    eng.shutdown();
    for i in 0..2 {
        assert_eq!(tokens(&alone, i).len(), 12);
        assert_eq!(tokens(&alone, i), tokens(&batched, i), "child {i}");
    }
    assert_ne!(
        tokens(&alone, 0),
        tokens(&alone, 1),
        "children draw differently"
    );
}

#[test]
fn handle_and_stream_can_cross_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<EngineHandle>();
    send::<RequestStream>();
    let eng = start(FakeExecutor::new(4, V));
    let h = eng.clone();
    let t = std::thread::spawn(move || drain(&mut h.add_request(req(vec![2, 7], 3)).unwrap()));
    assert_eq!(
        tokens(&t.join().unwrap(), 0),
        expected_output(&[2, 7], 0, 3, V)
    );
    eng.shutdown();
}

/// A client that goes away aborts its request at once, even one still waiting: it is never
/// computed, and its blocks (if any) come back.
#[test]
fn dropping_a_stream_aborts_its_request_wherever_it_is() {
    let mut ex = FakeExecutor::new(4, V);
    ex.sleep_ms = 20;
    let eng = Engine::start(
        ferrum_engine::EngineConfig {
            max_num_seqs: 1, // the second request waits behind the first
            ..cfg(4, 64, 32)
        },
        Box::new(ex.clone()),
    );
    let mut running = eng.add_request(req(vec![1, 2, 3], 40)).unwrap();
    running.recv_timeout(Duration::from_secs(10)).unwrap();
    let waiting = eng.add_request(req(vec![500, 501], 5)).unwrap();
    let waiting_id = waiting.id;
    drop(waiting);
    drop(running);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while eng.stats().num_running + eng.stats().num_waiting > 0 {
        assert!(std::time::Instant::now() < deadline, "never aborted");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(eng.stats().kv_cache_usage, 0.0);
    assert!(
        !ex.schedule_log()
            .iter()
            .flatten()
            .any(|&(id, _)| id == waiting_id),
        "the dropped waiting request was computed"
    );
    // A stream read to its end does not abort anything on drop.
    let mut s = eng.add_request(req(vec![9], 2)).unwrap();
    assert_eq!(drain(&mut s).len(), 2);
    assert!(s.is_finished());
    eng.shutdown();
}

/// The published snapshot follows the engine without a round trip, and the final message of
/// a sequence carries its timeline in order.
#[test]
fn snapshot_and_timestamps() {
    let mut ex = FakeExecutor::new(4, V);
    ex.sleep_ms = 5;
    let eng = start(ex);
    let mut s = eng.add_request(req(vec![1, 2, 3], 6)).unwrap();
    s.recv_timeout(Duration::from_secs(10)).unwrap();
    let snap = eng.snapshot();
    assert!(
        snap.num_running == 1 && snap.kv_cache_usage > 0.0,
        "{snap:?}"
    );
    let outs = drain(&mut s);
    let t = outs.last().unwrap().times.expect("final message has times");
    let (sched, first, last, fin) = (
        t.first_scheduled.unwrap(),
        t.first_token.unwrap(),
        t.last_token.unwrap(),
        t.finished.unwrap(),
    );
    assert!(t.arrival <= sched && sched <= first && first < last && last <= fin);
    assert!(outs[..outs.len() - 1].iter().all(|o| o.times.is_none()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while eng.snapshot().num_running != 0 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(eng.snapshot().generation_tokens, 6);
    eng.shutdown();
}

/// A panic in the engine's own code (here: its step observer) kills the engine visibly:
/// in-flight requests fail with the reason, new ones are refused, nothing hangs.
#[test]
fn a_crashed_engine_fails_everything_and_says_why() {
    quiet_injected_panics();
    let mut ex = FakeExecutor::new(4, V);
    ex.sleep_ms = 5;
    let mut steps = 0;
    let eng = Engine::start_observed(
        cfg(4, 64, 32),
        Box::new(ex),
        Box::new(move |_| {
            steps += 1;
            if steps == 3 {
                panic!("injected panic");
            }
        }),
    );
    let mut s = eng.add_request(req(vec![1, 2, 3], 40)).unwrap();
    let last = drain(&mut s).pop().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Abort));
    assert_eq!(
        last.error.as_deref(),
        Some("the engine crashed: injected panic")
    );
    assert_eq!(eng.death(), Some("the engine crashed: injected panic"));
    assert_eq!(
        eng.add_request(req(vec![1], 1)).unwrap_err(),
        EngineError::Dead
    );
    eng.shutdown();
}
