//! Per-request metrics as outputs pass: time to first token, inter-token latency, and the
//! finished request's histograms (vLLM's definitions, from the engine's timestamps). As in
//! vLLM v1, each of a request's `n` sequences counts as a finished request of its own.

use std::time::Instant;

use ferrum_engine::SamplingParams;

use crate::output::SeqDelta;
use crate::state::Shared;

pub struct Tracker {
    state: Shared,
    arrival: Instant,
    prompt_tokens: usize,
    n: usize,
    max_tokens: usize,
    last_token: Vec<Option<Instant>>,
    generated: Vec<usize>,
    done: Vec<bool>,
    unfinished: usize,
}

impl Tracker {
    pub fn new(
        state: &Shared,
        prompt_ids: &[u32],
        params: &SamplingParams,
        arrival: Instant,
    ) -> Self {
        let max_tokens = params
            .max_tokens
            .unwrap_or(state.max_model_len.saturating_sub(prompt_ids.len()));
        Self {
            state: state.clone(),
            arrival,
            prompt_tokens: prompt_ids.len(),
            n: params.n,
            max_tokens,
            last_token: vec![None; params.n],
            generated: vec![0; params.n],
            done: vec![false; params.n],
            unfinished: params.n,
        }
    }

    pub fn observe(&mut self, d: &SeqDelta) {
        let now = Instant::now();
        let i = d.seq_index;
        if !d.token_ids.is_empty() {
            let m = &self.state.metrics;
            match self.last_token[i] {
                None => m.observe_ttft((now - self.arrival).as_secs_f64()),
                Some(t) => m.observe_itl((now - t).as_secs_f64()),
            }
            self.last_token[i] = Some(now);
            self.generated[i] += d.token_ids.len();
        }
        if let Some(f) = &d.finish {
            let t = f.times;
            let secs = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
                (Some(a), Some(b)) if b >= a => (b - a).as_secs_f64(),
                _ => 0.0,
            };
            let sched = t.and_then(|t| t.first_scheduled);
            let first = t.and_then(|t| t.first_token);
            let last = t.and_then(|t| t.last_token);
            let decode = secs(first, last);
            let generated = self.generated[i];
            self.done[i] = true;
            self.unfinished -= 1;
            self.state
                .metrics
                .observe_finished(&ferrum_metrics::FinishedRequest {
                    finished_reason: f.reason,
                    prompt_tokens: self.prompt_tokens,
                    generation_tokens: generated,
                    // vLLM observes `n` once per request, when its last sequence finishes.
                    n: if self.unfinished == 0 { self.n } else { 0 },
                    max_tokens: self.max_tokens,
                    e2e_s: (now - self.arrival).as_secs_f64(),
                    queue_s: secs(Some(self.arrival), sched),
                    prefill_s: secs(sched, first),
                    decode_s: decode,
                    inference_s: secs(sched, last),
                    time_per_output_token_s: (generated > 1)
                        .then(|| decode / (generated - 1) as f64),
                });
        }
    }
}

/// A request dropped before it finished (its client went away) still counts, as an abort:
/// vLLM reports client aborts under `finished_reason="abort"`.
impl Drop for Tracker {
    fn drop(&mut self) {
        let e2e = self.arrival.elapsed().as_secs_f64();
        for i in (0..self.done.len()).filter(|&i| !self.done[i]) {
            self.unfinished -= 1;
            self.state
                .metrics
                .observe_finished(&ferrum_metrics::FinishedRequest {
                    finished_reason: "abort",
                    prompt_tokens: self.prompt_tokens,
                    generation_tokens: self.generated[i],
                    n: if self.unfinished == 0 { self.n } else { 0 },
                    max_tokens: self.max_tokens,
                    e2e_s: e2e,
                    queue_s: 0.0,
                    prefill_s: 0.0,
                    decode_s: 0.0,
                    inference_s: 0.0,
                    time_per_output_token_s: None,
                });
        }
    }
}
