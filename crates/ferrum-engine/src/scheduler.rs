//! The scheduler (vLLM v1's `Scheduler.schedule` / `update_from_output`): one token budget
//! per step, running sequences first (decodes and unfinished prefill chunks), then waiting
//! ones in policy order; preemption by recompute when the cache runs out.

use std::collections::{BTreeMap, HashMap};
use std::mem;
use std::time::Instant;

use crate::admission::max_seq_len;
use crate::config::{EngineConfig, SchedulingPolicy};
use crate::executor::{ReqId, SeqStepOutput, StepBatch, StepSeq};
use crate::kv_cache::KvCacheManager;
use crate::request::{RequestOutput, Seq};

/// One sequence's share of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub id: ReqId,
    pub num_new: usize,
}

/// What one `schedule()` decided: plain data, in batch order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerOutput {
    pub scheduled: Vec<ScheduledSeq>,
    /// Sequences preempted (freed, sent back to waiting) while scheduling this step.
    pub preempted: Vec<ReqId>,
}

impl SchedulerOutput {
    pub fn num_tokens(&self) -> usize {
        self.scheduled.iter().map(|s| s.num_new).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerCounters {
    pub num_preemptions: u64,
    /// Prompt tokens of sequences that produced their first token (once per sequence).
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
}

/// Changes to the set of sequences the runner holds state for, not yet delivered in a
/// [`StepBatch`] (see there). A sequence is "known to the runner" exactly while it is running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerUpdates {
    pub new: Vec<ReqId>,
    pub finished: Vec<ReqId>,
    pub aborted: Vec<ReqId>,
    pub preempted: Vec<ReqId>,
}

impl RunnerUpdates {
    pub fn is_empty(&self) -> bool {
        self.new.is_empty()
            && self.finished.is_empty()
            && self.aborted.is_empty()
            && self.preempted.is_empty()
    }
}

/// How a sequence leaves the scheduler, for the runner's notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Finished,
    Aborted,
}

/// A waiting sequence's place: (priority, order, id), smallest first. FCFS uses priority 0 and
/// an order counter; the priority policy uses (priority, arrival).
pub type WaitKey = (i64, i64, ReqId);

pub struct Scheduler {
    cfg: EngineConfig,
    max_seq_len: usize,
    kv: KvCacheManager,
    seqs: HashMap<ReqId, Seq>,
    /// Ordered by [`WaitKey`]: removal by key is O(log n), so an abort never scans the queue.
    waiting: BTreeMap<WaitKey, ReqId>,
    /// At most `max_num_seqs` long, so removing from it is bounded by the config, not the load.
    running: Vec<ReqId>,
    /// Request (first sequence id) -> (n, sequences still known): aborting a request visits
    /// exactly its own sequences.
    groups: HashMap<ReqId, (usize, usize)>,
    next_arrival: u64,
    /// FCFS queue ends: new sequences take `back` (counting up), preempted ones `front`
    /// (counting down), so the map's order is the queue's.
    fcfs_back: i64,
    fcfs_front: i64,
    counters: SchedulerCounters,
    /// Runner notifications since the last executed step.
    updates: RunnerUpdates,
    /// Speculative decoding's counters (all zero without it).
    spec: crate::spec::SpecDecodeStats,
}

impl Scheduler {
    pub fn new(cfg: EngineConfig) -> Self {
        cfg.assert_sane();
        let num_spec = cfg.speculative.map_or(0, |c| c.num_speculative_tokens);
        Self {
            max_seq_len: max_seq_len(&cfg),
            kv: KvCacheManager::new(cfg.num_blocks, cfg.block_size, cfg.enable_prefix_caching),
            cfg,
            seqs: HashMap::new(),
            waiting: BTreeMap::new(),
            running: Vec::new(),
            groups: HashMap::new(),
            next_arrival: 0,
            fcfs_back: 0,
            fcfs_front: -1,
            counters: SchedulerCounters::default(),
            updates: RunnerUpdates::default(),
            spec: crate::spec::SpecDecodeStats::new(num_spec),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn kv(&self) -> &KvCacheManager {
        &self.kv
    }

    pub fn counters(&self) -> SchedulerCounters {
        self.counters
    }

    /// Speculative decoding's acceptance counters.
    pub fn spec_stats(&self) -> &crate::spec::SpecDecodeStats {
        &self.spec
    }

    pub fn seq(&self, id: ReqId) -> Option<&Seq> {
        self.seqs.get(&id)
    }

    pub fn running(&self) -> &[ReqId] {
        &self.running
    }

    pub fn waiting(&self) -> impl Iterator<Item = ReqId> + '_ {
        self.waiting.values().copied()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Runner notifications accumulated since the last [`Self::take_updates`].
    pub fn pending_updates(&self) -> &RunnerUpdates {
        &self.updates
    }

    /// Hands over the accumulated runner notifications (for the step about to execute).
    pub fn take_updates(&mut self) -> RunnerUpdates {
        mem::take(&mut self.updates)
    }

    pub fn next_arrival(&mut self) -> u64 {
        self.next_arrival += 1;
        self.next_arrival - 1
    }

    /// Queues the sequences of one request (already validated).
    pub fn add(&mut self, group: Vec<Seq>) {
        if let Some(first) = group.first() {
            self.groups.insert(first.parent, (group.len(), group.len()));
        }
        for mut s in group {
            s.update_block_hashes(self.cfg.block_size);
            let id = s.id;
            self.seqs.insert(id, s);
            self.enqueue(id, false);
        }
    }

    /// FCFS: new sequences at the back, preempted ones at the front. Priority: by
    /// (priority, arrival), which also puts a preempted sequence back where it belongs.
    fn enqueue(&mut self, id: ReqId, preempted: bool) {
        let key = match self.cfg.scheduling_policy {
            SchedulingPolicy::Fcfs if preempted => {
                self.fcfs_front -= 1;
                (0, self.fcfs_front + 1, id)
            }
            SchedulingPolicy::Fcfs => {
                self.fcfs_back += 1;
                (0, self.fcfs_back - 1, id)
            }
            SchedulingPolicy::Priority => {
                let (p, a, id) = self.priority_key(id);
                (p as i64, a as i64, id)
            }
        };
        self.seqs.get_mut(&id).unwrap().wait_key = Some(key);
        self.waiting.insert(key, id);
    }

    fn priority_key(&self, id: ReqId) -> (i32, u64, ReqId) {
        let s = &self.seqs[&id];
        (s.priority, s.arrival, s.id)
    }

    /// Decides this step. Running sequences first, in order, each taking
    /// `min(remaining tokens, budget)`; when one cannot get a block, preempt (the last running
    /// under FCFS, the worst (priority, arrival) under Priority) until it fits or is itself the
    /// victim. Waiting sequences are admitted only in steps without preemption (as vLLM).
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut out = SchedulerOutput::default();
        let mut budget = self.cfg.max_num_batched_tokens;

        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let s = &self.seqs[&id];
            let mut num_new = (s.num_tokens() - s.num_computed).min(budget);
            if num_new == 0 {
                i += 1;
                continue;
            }
            // speculative decoding: a decode gets its draft on top, within the budget
            let num_draft = self.propose(id, budget - num_new);
            num_new += num_draft;
            let mut scheduled = false;
            loop {
                let s = &self.seqs[&id];
                if self
                    .kv
                    .allocate_slots(id, &s.block_hashes, s.num_computed, num_new, &[])
                {
                    scheduled = true;
                    break;
                }
                let s = self.seqs.get_mut(&id).unwrap();
                if !s.draft.is_empty() {
                    // no room for the draft: try without it before preempting anyone
                    num_new -= s.draft.len();
                    s.draft.clear();
                    continue;
                }
                let v = self.pick_victim();
                let victim = self.running.remove(v);
                if v < i {
                    // Already scheduled this step: give its tokens back.
                    if let Some(k) = out.scheduled.iter().position(|x| x.id == victim) {
                        budget += out.scheduled.remove(k).num_new;
                    }
                    i -= 1;
                }
                self.preempt(victim);
                out.preempted.push(victim);
                if victim == id {
                    break;
                }
            }
            if !scheduled {
                break;
            }
            out.scheduled.push(ScheduledSeq { id, num_new });
            budget -= num_new;
            i += 1;
        }

        if out.preempted.is_empty() {
            self.admit_waiting(&mut out, &mut budget);
        }
        out
    }

    /// Sets the draft of running sequence `id` (cleared when none) if it is a decode (exactly
    /// its last token lacks K/V) and speculation is on; at most `room` tokens, and never more
    /// than the sequence could still emit after this step. Returns the draft's length.
    fn propose(&mut self, id: ReqId, room: usize) -> usize {
        let max_seq_len = self.max_seq_len;
        let s = self.seqs.get_mut(&id).unwrap();
        s.draft.clear();
        let Some(spec) = self.cfg.speculative else {
            return 0;
        };
        if s.num_tokens() - s.num_computed != 1 || s.prompt_logprobs_from().is_some() {
            return 0;
        }
        // this step emits up to 1 + k tokens: stay within max_tokens
        let left = s.max_tokens.saturating_sub(s.num_output_tokens());
        let k = room.min(left.saturating_sub(1));
        let draft = spec.propose(&s.tokens, max_seq_len, k);
        s.draft.extend_from_slice(draft);
        s.draft.len()
    }

    fn pick_victim(&self) -> usize {
        match self.cfg.scheduling_policy {
            SchedulingPolicy::Fcfs => self.running.len() - 1,
            SchedulingPolicy::Priority => (0..self.running.len())
                .max_by_key(|&k| self.priority_key(self.running[k]))
                .unwrap(),
        }
    }

    /// Frees everything and requeues; the sequence will recompute prompt + outputs later.
    fn preempt(&mut self, id: ReqId) {
        let s = self.seqs.get_mut(&id).unwrap();
        s.draft.clear();
        // `num_computed` is still the pre-step value: blocks published this step are withdrawn.
        self.kv.free(id, s.num_computed);
        s.num_computed = 0;
        s.num_preemptions += 1;
        s.times.preempted(Instant::now());
        self.counters.num_preemptions += 1;
        self.updates.preempted.push(id);
        self.enqueue(id, true);
    }

    fn admit_waiting(&mut self, out: &mut SchedulerOutput, budget: &mut usize) {
        while let Some((_, &id)) = self.waiting.first_key_value() {
            if *budget == 0 || self.running.len() >= self.cfg.max_num_seqs {
                break;
            }
            let s = &self.seqs[&id];
            let (hits, hit_tokens) = if s.skips_prefix_cache() {
                (Vec::new(), 0)
            } else {
                self.kv.computed_blocks(&s.block_hashes, s.num_tokens())
            };
            let mut num_new = s.num_tokens() - hit_tokens;
            // Without chunked prefill a prefill runs whole, so wait for a step with room; only a
            // sequence longer than any step's budget (a preempted one that grew past it) is
            // chunked anyway, or it could never run again.
            if !self.cfg.enable_chunked_prefill
                && num_new > *budget
                && num_new <= self.cfg.max_num_batched_tokens
            {
                break;
            }
            num_new = num_new.min(*budget);
            if !self
                .kv
                .allocate_slots(id, &s.block_hashes, hit_tokens, num_new, &hits)
            {
                break;
            }
            let first_time = s.num_preemptions == 0;
            let (num_tokens, records) = (s.num_tokens(), !s.skips_prefix_cache());
            if first_time && records && self.kv.caching_enabled() {
                // vLLM's prefix_cache_queries/hits count first admissions only, in tokens.
                self.kv.record_prefix_query(num_tokens, hit_tokens);
            }
            let s = self.seqs.get_mut(&id).unwrap();
            s.num_computed = hit_tokens;
            s.num_cached_tokens.get_or_insert(hit_tokens);
            s.wait_key = None;
            s.times.scheduled(Instant::now());
            self.waiting.pop_first();
            self.running.push(id);
            self.updates.new.push(id);
            out.scheduled.push(ScheduledSeq { id, num_new });
            *budget -= num_new;
        }
    }

    /// Borrowed view of the step for the executor, without runner notifications.
    pub fn batch(&self, out: &SchedulerOutput) -> StepBatch<'_> {
        self.batch_with(out, RunnerUpdates::default())
    }

    /// Borrowed view of the step for the executor, carrying `updates` (from
    /// [`Self::take_updates`]).
    pub fn batch_with(&self, out: &SchedulerOutput, updates: RunnerUpdates) -> StepBatch<'_> {
        let seqs = out
            .scheduled
            .iter()
            .map(|sc| {
                let s = &self.seqs[&sc.id];
                // `sc.num_new` counts the draft too; the step contract separates them
                let num_new = sc.num_new - s.draft.len();
                StepSeq {
                    req_id: s.id,
                    seq_index: s.seq_index,
                    tokens: &s.tokens,
                    num_prompt_tokens: s.num_prompt_tokens,
                    num_computed: s.num_computed,
                    num_new,
                    block_table: self.kv.block_table(s.id),
                    sample: s.num_computed + num_new == s.num_tokens(),
                    params: &s.params,
                    prompt_logprobs_from: s.prompt_logprobs_from(),
                    eos_token_ids: &s.eos_token_ids,
                    draft: &s.draft,
                }
            })
            .collect();
        let mut matchers: Vec<_> = out
            .scheduled
            .iter()
            .map(|sc| self.seqs[&sc.id].matcher.as_ref())
            .collect();
        if matchers.iter().all(Option::is_none) {
            matchers.clear();
        }
        StepBatch {
            seqs,
            matchers,
            new_seqs: updates.new,
            finished_seqs: updates.finished,
            aborted_seqs: updates.aborted,
            preempted_seqs: updates.preempted,
        }
    }

    /// Checks the executor's answer against the batch before anything is applied, so a
    /// malformed answer fails the step cleanly instead of corrupting state.
    pub fn check_outputs(
        &self,
        out: &SchedulerOutput,
        res: &[SeqStepOutput],
    ) -> Result<(), String> {
        if res.len() != out.scheduled.len() {
            return Err(format!(
                "executor returned {} outputs for {} sequences",
                res.len(),
                out.scheduled.len()
            ));
        }
        for (seq, r) in self.batch(out).seqs.iter().zip(res) {
            if seq.sample == r.tokens.is_empty() {
                return Err(format!(
                    "executor output for sequence {}: sample = {} but {} tokens",
                    seq.req_id,
                    seq.sample,
                    r.tokens.len()
                ));
            }
            if let Some(t) = r
                .tokens
                .iter()
                .find(|t| t.id as usize >= self.cfg.vocab_size)
            {
                return Err(format!("executor sampled token {} >= vocab size", t.id));
            }
            let n = r.tokens.len();
            if !seq.draft.is_empty()
                && (n > seq.draft.len() + 1
                    || r.tokens[..n - 1]
                        .iter()
                        .zip(seq.draft)
                        .any(|(t, &d)| t.id != d))
            {
                return Err(format!(
                    "executor output for sequence {}: {n} tokens are not accepted drafts plus one",
                    seq.req_id
                ));
            }
            let want = seq.prompt_logprob_positions().len();
            if r.prompt_logprobs.len() != want {
                return Err(format!(
                    "executor returned {} prompt logprobs for sequence {}, expected {want}",
                    r.prompt_logprobs.len(),
                    seq.req_id
                ));
            }
        }
        Ok(())
    }

    /// Applies a successful step: advances computed counts, appends the accepted tokens one by
    /// one (checking stops after each and dropping the rest once one hits), frees finished
    /// sequences, and sends each sequence's output on its stream (one message per sequence
    /// per step, with all its new tokens). The appended tokens have no K/V yet: the next
    /// schedule feeds all of them (`num_tokens - num_computed`).
    /// Returns the parents whose stream receiver is gone (the caller aborts them).
    pub fn update(&mut self, out: &SchedulerOutput, res: Vec<SeqStepOutput>) -> Vec<ReqId> {
        let bs = self.cfg.block_size;
        let now = Instant::now();
        let mut finished = Vec::new();
        let mut disconnected = Vec::new();
        let mut failed = Vec::new();
        for (sc, r) in out.scheduled.iter().zip(res) {
            let s = self.seqs.get_mut(&sc.id).unwrap();
            let num_draft = mem::take(&mut s.draft).len();
            let num_real = sc.num_new - num_draft;
            let positions = prompt_positions(s, num_real);
            s.num_computed += num_real;
            if num_draft > 0 {
                // speculative decoding: the accepted drafts' K/V were written this step and
                // count; the rejected ones' blocks are given back (they were never published:
                // block hashes cover only the sequence's own tokens)
                let accepted = r.tokens.len().saturating_sub(1);
                s.num_computed += accepted;
                self.kv.truncate(sc.id, s.num_computed);
                self.spec.observe(num_draft, accepted);
            }
            if let Some(next) = s.prompt_logprobs_next.as_mut() {
                *next = (*next).max(positions.end);
                s.pending_prompt_logprobs.extend(r.prompt_logprobs);
            }
            if r.tokens.is_empty() {
                continue;
            }
            let mut new_token_ids = Vec::with_capacity(r.tokens.len());
            let mut logprobs = Vec::new();
            let mut stop = None;
            let mut grammar_error = None;
            for tok in r.tokens {
                s.tokens.push(tok.id);
                new_token_ids.push(tok.id);
                logprobs.extend(tok.logprobs);
                if s.num_output_tokens() == 1 {
                    self.counters.prompt_tokens += s.num_prompt_tokens as u64;
                }
                self.counters.generation_tokens += 1;
                stop = s.check_stop(self.max_seq_len);
                if stop.is_some() {
                    break;
                }
                // structured output: advance the grammar; a refused token fails this request
                // only. Once the grammar is finished its mask allows only EOS, so the next
                // token ends the request (vLLM's behaviour); under `ignore_eos` (or before
                // `min_tokens`) those EOS tokens are not fed to the finished grammar.
                if let Some(m) = &s.matcher {
                    let mut m = m.lock();
                    if !m.is_finished()
                        && let Err(e) = m.accept(tok.id)
                    {
                        grammar_error = Some(format!("structured output: {e}"));
                        break;
                    }
                }
            }
            if let Some(e) = grammar_error {
                tracing::warn!(seq = sc.id, "{e}");
                s.times.finished(now);
                if s.tx.send(s.abort_output(Some(e))).is_err() {
                    disconnected.push(s.parent);
                }
                failed.push(sc.id);
                continue;
            }
            s.update_block_hashes(bs);
            s.times.token(now);
            if stop.is_some() {
                s.times.finished(now);
            }
            let msg = RequestOutput {
                seq_index: s.seq_index,
                new_token_ids,
                logprobs,
                prompt_logprobs: mem::take(&mut s.pending_prompt_logprobs),
                finish_reason: stop.map(|(f, _)| f),
                stop_reason: stop.and_then(|(_, r)| r),
                num_cached_tokens: s.num_cached_tokens.unwrap_or(0),
                error: None,
                times: stop.map(|_| s.times),
            };
            if s.tx.send(msg).is_err() {
                disconnected.push(s.parent);
            }
            if stop.is_some() {
                finished.push(sc.id);
            }
        }
        for id in finished {
            self.remove(id, Exit::Finished);
        }
        for id in failed {
            self.remove(id, Exit::Aborted);
        }
        disconnected.sort_unstable();
        disconnected.dedup();
        disconnected
    }

    /// A failed step: every sequence in it finishes with `error`; the rest carry on.
    pub fn fail(&mut self, out: &SchedulerOutput, error: &str) {
        for sc in &out.scheduled {
            if let Some(s) = self.seqs.get_mut(&sc.id) {
                s.times.finished(Instant::now());
                let _ = s.tx.send(s.abort_output(Some(error.to_string())));
                // `num_computed` is pre-step: blocks published for this step are withdrawn.
                self.remove(sc.id, Exit::Aborted);
            }
        }
    }

    /// Aborts `id` as a request (all its sequences) or, if it names no request, as a single
    /// child sequence. Visits only the request's own sequences.
    pub fn abort(&mut self, id: ReqId, error: Option<&str>) {
        match self.groups.get(&id) {
            Some(&(n, _)) => (id..id + n as u64).for_each(|sid| self.abort_one(sid, error)),
            None => self.abort_one(id, error),
        }
    }

    /// Aborts exactly the sequence `id` (one of a request's `n`), leaving its siblings running:
    /// what a stop string found in one output needs.
    pub fn abort_seq(&mut self, id: ReqId) {
        self.abort_one(id, None);
    }

    fn abort_one(&mut self, id: ReqId, error: Option<&str>) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.times.finished(Instant::now());
            let _ = s.tx.send(s.abort_output(error.map(str::to_string)));
            self.remove(id, Exit::Aborted);
        }
    }

    /// Aborts everything (shutdown).
    pub fn abort_all(&mut self, error: Option<&str>) {
        let ids: Vec<ReqId> = self.seqs.keys().copied().collect();
        for id in ids {
            self.abort_one(id, error);
        }
    }

    /// Forgets a sequence. A running one is known to the runner, which is told how it ended; a
    /// waiting one is not (never admitted, or its preemption was reported already).
    fn remove(&mut self, id: ReqId, exit: Exit) {
        if let Some(s) = self.seqs.remove(&id) {
            self.kv.free(id, s.num_computed);
            match s.wait_key {
                Some(key) => {
                    self.waiting.remove(&key);
                }
                None => {
                    self.running.retain(|&r| r != id);
                    match exit {
                        Exit::Finished => self.updates.finished.push(id),
                        Exit::Aborted => self.updates.aborted.push(id),
                    }
                }
            }
            if let Some(g) = self.groups.get_mut(&s.parent) {
                g.1 -= 1;
                if g.1 == 0 {
                    self.groups.remove(&s.parent);
                }
            }
        }
    }

    /// Cross-checks scheduler and cache: only running sequences hold blocks, each exactly
    /// `ceil(num_computed / block_size)` of them (between steps), ref counts match the tables,
    /// every known sequence is queued exactly once, and the pool's own invariants hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.kv.check()?;
        for (id, table) in self.kv.holders() {
            if !self.running.contains(&id) {
                return Err(format!("sequence {id} holds blocks but is not running"));
            }
            let s = &self.seqs[&id];
            let want = s.num_computed.div_ceil(self.cfg.block_size);
            if table.len() != want {
                return Err(format!(
                    "sequence {id}: {} blocks for {} computed tokens",
                    table.len(),
                    s.num_computed
                ));
            }
        }
        let queued = self.running.len() + self.waiting.len();
        if queued != self.seqs.len() {
            return Err(format!("{queued} queued but {} sequences", self.seqs.len()));
        }
        for id in self.running.iter().chain(self.waiting.values()) {
            if !self.seqs.contains_key(id) {
                return Err(format!("queued sequence {id} is unknown"));
            }
        }
        if self.running.len() > self.cfg.max_num_seqs {
            return Err("more running sequences than max_num_seqs".into());
        }
        Ok(())
    }
}

/// Prompt positions this step covered (for advancing the prompt-logprob cursor).
fn prompt_positions(s: &Seq, num_new: usize) -> std::ops::Range<usize> {
    let end = (s.num_computed + num_new).min(s.num_prompt_tokens.saturating_sub(1));
    s.num_computed..end.max(s.num_computed)
}
