//! One engine step without any threading: `schedule -> execute -> update`. The engine
//! thread drives it; tests (and an offline caller that wants no thread) can drive it directly.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::admission::validate_request;
use crate::config::EngineConfig;
use crate::executor::{Executor, FatalError, ReqId};
use crate::request::{EngineRequest, OutputSender, Seq};
use crate::scheduler::{Scheduler, SchedulerOutput};

/// A snapshot of the engine's gauges and counters (vLLM metric names in the comments).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EngineStats {
    /// `vllm:num_requests_running` (sequences; `n > 1` children count separately, as in vLLM v1).
    pub num_running: usize,
    /// `vllm:num_requests_waiting`.
    pub num_waiting: usize,
    /// `vllm:kv_cache_usage_perc`, as a fraction in [0, 1].
    pub kv_cache_usage: f64,
    pub num_free_blocks: usize,
    pub num_total_blocks: usize,
    /// `vllm:num_preemptions`.
    pub num_preemptions: u64,
    /// `vllm:prefix_cache_queries` / `_hits`, in tokens, first admissions only.
    pub prefix_cache_queries: u64,
    pub prefix_cache_hits: u64,
    /// `vllm:prompt_tokens` / `vllm:generation_tokens`.
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    /// Steps run (including failed ones).
    pub num_steps: u64,
    /// Speculative decoding's counters (`vllm:spec_decode_*`); all zero without it.
    pub spec_decode: crate::spec::SpecDecodeStats,
}

/// What one [`EngineCore::step`] did.
#[derive(Debug, Default)]
pub struct StepReport {
    pub output: SchedulerOutput,
    /// Set when the step failed (executor error, panic, or malformed answer). After a fatal
    /// error it is the reason the core stopped ([`EngineCore::death`]).
    pub error: Option<String>,
}

pub struct EngineCore {
    sched: Scheduler,
    executor: Box<dyn Executor>,
    num_steps: u64,
    /// Set once the executor reported a [`FatalError`]: the core then refuses requests and
    /// its next step aborts what it holds.
    death: Option<String>,
}

impl EngineCore {
    /// Panics on a nonsensical config (zero blocks, zero block size, ...).
    pub fn new(cfg: EngineConfig, executor: Box<dyn Executor>) -> Self {
        Self {
            sched: Scheduler::new(cfg),
            executor,
            num_steps: 0,
            death: None,
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    pub fn has_work(&self) -> bool {
        self.sched.has_work()
    }

    /// Why the core stopped, once the executor has returned a [`FatalError`]. From then on new
    /// requests are refused with this reason, and the next [`Self::step`] aborts every request
    /// still held with it (the engine thread does that itself, after publishing the death).
    pub fn death(&self) -> Option<&str> {
        self.death.as_deref()
    }

    /// Validates and queues a request whose sequences take ids `id .. id + n`; everything it
    /// produces goes to `tx`.
    pub fn add_request(
        &mut self,
        id: ReqId,
        req: EngineRequest,
        tx: OutputSender,
    ) -> Result<(), String> {
        if let Some(reason) = &self.death {
            return Err(reason.clone());
        }
        let max_tokens = validate_request(self.sched.config(), &req)?;
        let arrival = self.sched.next_arrival();
        self.sched.add(Seq::group(id, req, max_tokens, arrival, tx));
        Ok(())
    }

    /// Aborts a request (all its sequences) or one child sequence; frees its blocks.
    pub fn abort(&mut self, id: ReqId) {
        self.sched.abort(id, None);
    }

    /// Aborts one sequence of a request, not its siblings.
    pub fn abort_seq(&mut self, id: ReqId) {
        self.sched.abort_seq(id);
    }

    /// Aborts everything with `error` set (shutdown).
    pub fn abort_all(&mut self, error: &str) {
        self.sched.abort_all(Some(error));
    }

    /// Schedules and runs one step and applies its outcome. Runner notifications accumulated
    /// since the last executed step ride on this step's batch (nothing is executed, and they
    /// stay pending, when nothing is scheduled). A fatal executor error stops the core (see
    /// [`Self::death`]): the report's `error` is the reason.
    pub fn step(&mut self) -> StepReport {
        if let Some(reason) = &self.death {
            self.sched.abort_all(Some(reason));
            return StepReport::default();
        }
        let out = self.sched.schedule();
        if out.is_empty() {
            if out.preempted.is_empty() {
                self.unstick();
            }
            return StepReport {
                output: out,
                error: None,
            };
        }
        self.num_steps += 1;
        let result = {
            let updates = self.sched.take_updates();
            let batch = self.sched.batch_with(&out, updates);
            let executor = &mut self.executor;
            catch_unwind(AssertUnwindSafe(|| executor.execute(&batch)))
        };
        let error = match result {
            Ok(Ok(res)) => match self.sched.check_outputs(&out, &res) {
                Ok(()) => {
                    for parent in self.sched.update(&out, res) {
                        // Nobody is listening any more: stop spending compute on it.
                        self.sched.abort(parent, None);
                    }
                    None
                }
                Err(e) => Some(e),
            },
            Ok(Err(e)) if FatalError::is_fatal(&e) => {
                let reason = format!("fatal executor error: {e:#}");
                tracing::error!(num_seqs = out.scheduled.len(), "{reason}; stopping");
                self.death = Some(reason.clone());
                return StepReport {
                    output: out,
                    error: Some(reason),
                };
            }
            Ok(Err(e)) => Some(format!("executor failed: {e:#}")),
            Err(panic) => Some(format!("executor panicked: {}", panic_message(&*panic))),
        };
        if let Some(e) = &error {
            tracing::error!(num_seqs = out.scheduled.len(), "step failed: {e}");
            self.sched.fail(&out, e);
        }
        StepReport { output: out, error }
    }

    /// Admission guarantees that an idle engine can always schedule the head of the queue;
    /// should that ever not hold, fail the head rather than spin on it forever.
    fn unstick(&mut self) {
        let head = self.sched.waiting().next();
        if self.sched.running().is_empty()
            && let Some(head) = head
        {
            tracing::error!(seq = head, "request cannot be scheduled on an idle engine");
            self.sched.abort(
                head,
                Some("the request cannot be scheduled with this engine configuration"),
            );
        }
    }

    pub fn stats(&self) -> EngineStats {
        let kv = self.sched.kv();
        let (queries, hits) = kv.prefix_cache_stats();
        let c = self.sched.counters();
        EngineStats {
            num_running: self.sched.running().len(),
            num_waiting: self.sched.num_waiting(),
            kv_cache_usage: kv.pool().usage(),
            num_free_blocks: kv.pool().num_free(),
            num_total_blocks: kv.pool().num_blocks(),
            num_preemptions: c.num_preemptions,
            prefix_cache_queries: queries,
            prefix_cache_hits: hits,
            prompt_tokens: c.prompt_tokens,
            generation_tokens: c.generation_tokens,
            num_steps: self.num_steps,
            spec_decode: self.sched.spec_stats().clone(),
        }
    }
}

pub(crate) fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
