//! Fake executors shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferrum_engine::{
    EngineConfig, EngineCore, EngineRequest, Executor, FatalError, FinishReason, OutputReceiver,
    ReqId, Sampled, SamplingParams, SeqStepOutput, StepBatch, TokenLogprobs, output_channel,
};

/// The fake model: the next token is a hash of every previous token and the child index.
pub fn next_token(tokens: &[u32], seq_index: usize, vocab: usize) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (seq_index as u64).wrapping_mul(0x9e37_79b9);
    for &t in tokens {
        h ^= t as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % vocab as u64) as u32
}

/// What the fake model generates for `prompt` when nothing stops it early.
pub fn expected_output(prompt: &[u32], seq_index: usize, n: usize, vocab: usize) -> Vec<u32> {
    let mut toks = prompt.to_vec();
    for _ in 0..n {
        toks.push(next_token(&toks, seq_index, vocab));
    }
    toks[prompt.len()..].to_vec()
}

/// Stand-in for a "K/V" entry: a hash of the whole prefix up to and including the position,
/// so a slot holding K/V computed under a different prefix is told apart.
fn prefix_hashes(tokens: &[u32]) -> Vec<u64> {
    let mut h: u64 = 1469598103934665603;
    tokens
        .iter()
        .map(|&t| {
            h = (h ^ t as u64).wrapping_mul(1099511628211).rotate_left(7);
            h
        })
        .collect()
}

/// One sequence of a step as the executor saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub id: ReqId,
    pub num_computed: usize,
    pub num_new: usize,
    pub sample: bool,
    pub block_table: Vec<u32>,
}

/// The runner-state notifications of one executed step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    pub new: Vec<ReqId>,
    pub finished: Vec<ReqId>,
    pub aborted: Vec<ReqId>,
    pub preempted: Vec<ReqId>,
}

/// A fake executor that simulates the paged K/V cache: it writes a prefix hash into each new
/// token's slot and verifies that every slot it is told is computed holds the right one, so
/// wrong block tables or bogus prefix-cache hits show up as `violations` (not panics, which
/// the engine would swallow as step failures).
///
/// It also keeps per-sequence runner state as a real runner would, from the batch's
/// notifications: a released id must be known, a new id unknown and scheduled, every
/// scheduled sequence known, and a known sequence's `num_computed` must be what the runner
/// computed for it so far.
#[derive(Clone)]
pub struct FakeExecutor {
    pub block_size: usize,
    pub vocab: usize,
    slots: Arc<Mutex<HashMap<usize, u64>>>,
    pub violations: Arc<Mutex<Vec<String>>>,
    pub steps: Arc<Mutex<Vec<Vec<Seen>>>>,
    /// Panic when a sequence's prompt starts with this token.
    pub panic_on: Option<u32>,
    /// Return `Err` when a sequence's prompt starts with this token.
    pub err_on: Option<u32>,
    /// Return a [`FatalError`] (under some context) when a sequence's prompt starts with this
    /// token.
    pub fatal_on: Option<u32>,
    pub sleep_ms: u64,
    /// Panic on this many upcoming steps, whatever they contain.
    pub panic_steps: Arc<Mutex<usize>>,
    /// Tokens accepted per sampling sequence per step (1 = plain decoding), each the fake
    /// model's next token after the previous ones: the outputs do not depend on it.
    pub tokens_per_step: usize,
    /// Sequences the runner holds state for -> tokens whose K/V it has computed.
    pub known: Arc<Mutex<HashMap<ReqId, usize>>>,
    /// Every executed step's notifications.
    pub notes: Arc<Mutex<Vec<Notes>>>,
}

impl FakeExecutor {
    pub fn new(block_size: usize, vocab: usize) -> Self {
        Self {
            block_size,
            vocab,
            slots: Default::default(),
            violations: Default::default(),
            steps: Default::default(),
            panic_on: None,
            err_on: None,
            fatal_on: None,
            sleep_ms: 0,
            panic_steps: Default::default(),
            tokens_per_step: 1,
            known: Default::default(),
            notes: Default::default(),
        }
    }

    /// Ids the runner currently holds state for, sorted.
    pub fn known_ids(&self) -> Vec<ReqId> {
        let mut ids: Vec<ReqId> = self.known.lock().unwrap().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Applies the batch's notifications the way a runner must: releases first, then new.
    fn apply_notes(&self, batch: &StepBatch<'_>) {
        let mut known = self.known.lock().unwrap();
        let mut violations = self.violations.lock().unwrap();
        let released = [
            ("finished", &batch.finished_seqs),
            ("aborted", &batch.aborted_seqs),
            ("preempted", &batch.preempted_seqs),
        ];
        for (what, ids) in released {
            for id in ids {
                if known.remove(id).is_none() {
                    violations.push(format!("{what} seq {id} is unknown to the runner"));
                }
            }
        }
        for &id in &batch.new_seqs {
            if known.insert(id, 0).is_some() {
                violations.push(format!("new seq {id} is already known to the runner"));
            }
            match batch.seqs.iter().find(|s| s.req_id == id) {
                // Prefix-cache hits count as computed: their K/V are in the shared blocks.
                Some(s) => {
                    known.insert(id, s.num_computed);
                }
                None => violations.push(format!("new seq {id} is not scheduled")),
            }
        }
        for s in &batch.seqs {
            match known.get(&s.req_id) {
                None => violations.push(format!("scheduled seq {} is unknown", s.req_id)),
                Some(&c) if c != s.num_computed => violations.push(format!(
                    "seq {}: the runner computed {c} tokens, the engine says {}",
                    s.req_id, s.num_computed
                )),
                Some(_) => {}
            }
        }
        self.notes.lock().unwrap().push(Notes {
            new: batch.new_seqs.clone(),
            finished: batch.finished_seqs.clone(),
            aborted: batch.aborted_seqs.clone(),
            preempted: batch.preempted_seqs.clone(),
        });
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// (id, num_new) of every step so far.
    pub fn schedule_log(&self) -> Vec<Vec<(ReqId, usize)>> {
        let steps = self.steps.lock().unwrap();
        steps
            .iter()
            .map(|s| s.iter().map(|x| (x.id, x.num_new)).collect())
            .collect()
    }
}

impl Executor for FakeExecutor {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        self.apply_notes(batch);
        if self.sleep_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
        }
        {
            let mut left = self.panic_steps.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                drop(left);
                panic!("injected step panic");
            }
        }
        let first = |s: &ferrum_engine::StepSeq<'_>| s.tokens.first().copied();
        if let Some(p) = self.panic_on
            && batch.seqs.iter().any(|s| first(s) == Some(p))
        {
            panic!("injected panic");
        }
        if let Some(p) = self.err_on
            && batch.seqs.iter().any(|s| first(s) == Some(p))
        {
            anyhow::bail!("injected error");
        }
        if let Some(p) = self.fatal_on
            && batch.seqs.iter().any(|s| first(s) == Some(p))
        {
            return Err(
                anyhow::Error::new(FatalError("injected device loss".into()))
                    .context("launching the forward"),
            );
        }
        let bs = self.block_size;
        let mut slots = self.slots.lock().unwrap();
        let mut violations = self.violations.lock().unwrap();
        let mut outs = Vec::new();
        let mut seen = Vec::new();
        for s in &batch.seqs {
            seen.push(Seen {
                id: s.req_id,
                num_computed: s.num_computed,
                num_new: s.num_new,
                sample: s.sample,
                block_table: s.block_table.to_vec(),
            });
            let end = s.num_computed + s.num_new;
            if s.block_table.len() != end.div_ceil(bs) {
                violations.push(format!(
                    "seq {}: {} blocks for {end} tokens",
                    s.req_id,
                    s.block_table.len()
                ));
                outs.push(SeqStepOutput::default());
                continue;
            }
            if s.sample != (end == s.tokens.len()) {
                violations.push(format!("seq {}: wrong sample flag", s.req_id));
            }
            let hashes = prefix_hashes(&s.tokens[..end]);
            let slot = |p: usize| s.block_table[p / bs] as usize * bs + p % bs;
            for (p, &h) in hashes.iter().enumerate().take(s.num_computed) {
                if slots.get(&slot(p)) != Some(&h) {
                    violations.push(format!(
                        "seq {}: position {p} (slot {}) does not hold its K/V",
                        s.req_id,
                        slot(p)
                    ));
                    break;
                }
            }
            for (p, &h) in hashes.iter().enumerate().skip(s.num_computed) {
                slots.insert(slot(p), h);
            }
            if let Some(c) = self.known.lock().unwrap().get_mut(&s.req_id) {
                *c = end;
            }
            let prompt_logprobs = s
                .prompt_logprob_positions()
                .map(|j| TokenLogprobs {
                    token_id: s.tokens[j + 1],
                    logprob: -(j as f32),
                    rank: 1,
                    top: vec![],
                })
                .collect();
            let mut tokens = Vec::new();
            if s.sample {
                let mut toks = s.tokens.to_vec();
                for _ in 0..self.tokens_per_step {
                    let id = next_token(&toks, s.seq_index, self.vocab);
                    toks.push(id);
                    tokens.push(Sampled {
                        id,
                        logprobs: s.params.logprobs.map(|_| TokenLogprobs {
                            token_id: id,
                            logprob: 0.0,
                            rank: 1,
                            top: vec![],
                        }),
                    });
                }
            }
            outs.push(SeqStepOutput {
                tokens,
                prompt_logprobs,
            });
        }
        self.steps.lock().unwrap().push(seen);
        Ok(outs)
    }
}

pub fn cfg(block_size: usize, num_blocks: usize, budget: usize) -> EngineConfig {
    EngineConfig {
        block_size,
        max_num_batched_tokens: budget,
        ..EngineConfig::new(num_blocks, 64, 1000)
    }
}

/// A request that generates exactly `max_tokens` tokens (no EOS).
pub fn req(prompt: Vec<u32>, max_tokens: usize) -> EngineRequest {
    EngineRequest::new(
        prompt,
        SamplingParams {
            max_tokens: Some(max_tokens),
            temperature: 0.0,
            ..Default::default()
        },
    )
}

/// Adds a request to a synchronous core, returning its receiver (keep it alive: a request
/// whose receiver is dropped is aborted by the engine).
pub fn add(core: &mut EngineCore, id: ReqId, r: EngineRequest) -> OutputReceiver {
    let (tx, rx) = output_channel();
    core.add_request(id, r, tx).expect("request accepted");
    rx
}

/// Steps until idle (bounded), checking invariants after every step.
pub fn run_to_completion(core: &mut EngineCore) {
    for _ in 0..10_000 {
        if !core.has_work() {
            return;
        }
        core.step();
        core.scheduler().check_invariants().unwrap();
    }
    panic!("engine did not finish");
}

/// Per sequence index: concatenated tokens and the finish reason (from what is queued now).
pub fn collect(rx: &mut OutputReceiver) -> HashMap<usize, (Vec<u32>, Option<FinishReason>)> {
    let mut out: HashMap<usize, (Vec<u32>, Option<FinishReason>)> = HashMap::new();
    while let Ok(o) = rx.try_recv() {
        let e = out.entry(o.seq_index).or_default();
        assert!(e.1.is_none(), "message after finish");
        e.0.extend(o.new_token_ids);
        e.1 = o.finish_reason;
    }
    out
}

/// Keeps the deliberate executor panics out of the test output; other panics print as usual.
pub fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            if !msg.starts_with("injected") {
                default(info);
            }
        }));
    });
}

/// Every message already sent on `rx`.
pub fn drain_now(rx: &mut OutputReceiver) -> Vec<ferrum_engine::RequestOutput> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}
