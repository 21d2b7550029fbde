//! The output side of one request, off the engine thread: incremental detokenization and stop
//! strings, one stream of per-sequence deltas shared by the server and the offline commands
//! (`generate`, `chat`). A stop-string hit aborts that sequence in the engine and reports
//! `stop` at once; dropping the stream aborts the whole request (the engine's own rule).

use std::sync::Arc;

use anyhow::Result;
use ferrum_engine::{
    EngineHandle, FinishReason, RequestOutput, RequestStream, SamplingParams, SeqTimes,
    TokenLogprobs,
};
use ferrum_tokenizer::{IncrementalDetokenizer, StopStrings, Tokenizer};

/// What ended a sequence besides EOS: a stop token id or a stop string (vLLM's `stop_reason`).
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    Token(u32),
    Text(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    /// "stop", "length" or "abort" (vLLM's finish reasons).
    pub reason: &'static str,
    pub stop_reason: Option<StopReason>,
    /// Set when the sequence failed (its step failed, or the engine died).
    pub error: Option<String>,
    /// The engine's timeline of the sequence, when the engine sent one.
    pub times: Option<SeqTimes>,
}

/// New output of one of the request's `n` sequences.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqDelta {
    pub seq_index: usize,
    /// Text that is final (held-back text that might start a stop string comes later).
    pub text: String,
    pub token_ids: Vec<u32>,
    /// One per token of `token_ids` when the request asked for logprobs.
    pub logprobs: Vec<TokenLogprobs>,
    /// Prompt logprobs for prompt positions 1.., once, in sequence 0's first delta.
    pub prompt_logprobs: Vec<TokenLogprobs>,
    pub num_cached_tokens: usize,
    pub finish: Option<Finish>,
}

struct SeqState {
    detok: IncrementalDetokenizer,
    stop: StopStrings,
    done: bool,
}

pub struct OutputStream {
    engine: EngineHandle,
    stream: RequestStream,
    seqs: Vec<SeqState>,
    /// Deltas made up when the stream closed early (engine died), handed out one by one.
    pending: Vec<SeqDelta>,
    /// Whether an EOS / stop token that ends a sequence is detokenized into its text.
    include_stop_str_in_output: bool,
}

impl OutputStream {
    pub fn new(
        engine: EngineHandle,
        tokenizer: &Tokenizer,
        stream: RequestStream,
        params: &SamplingParams,
    ) -> Self {
        let seqs = (0..params.n)
            .map(|_| SeqState {
                detok: tokenizer.detokenizer(params.skip_special_tokens),
                stop: StopStrings::new(params.stop.clone(), params.include_stop_str_in_output),
                done: false,
            })
            .collect();
        Self {
            engine,
            stream,
            seqs,
            pending: Vec::new(),
            include_stop_str_in_output: params.include_stop_str_in_output,
        }
    }

    /// The engine's id of the request.
    pub fn id(&self) -> u64 {
        self.stream.id
    }

    /// The next delta; `None` once every sequence has finished.
    pub async fn next(&mut self) -> Option<Result<SeqDelta>> {
        loop {
            let msg = if self.all_done() {
                None
            } else {
                self.stream.recv_async().await
            };
            if let Some(d) = self.step(msg) {
                return d;
            }
        }
    }

    /// [`Self::next`] for synchronous callers (not inside an async runtime).
    pub fn next_blocking(&mut self) -> Option<Result<SeqDelta>> {
        loop {
            let msg = if self.all_done() {
                None
            } else {
                self.stream.recv()
            };
            if let Some(d) = self.step(msg) {
                return d;
            }
        }
    }

    fn all_done(&self) -> bool {
        self.seqs.iter().all(|s| s.done)
    }

    /// `Some(answer)` to hand out, `None` to read on (a message for a finished sequence).
    fn step(&mut self, msg: Option<RequestOutput>) -> Option<Option<Result<SeqDelta>>> {
        let Some(msg) = msg else {
            // Closed: anything unfinished was lost with the engine.
            if self.pending.is_empty() {
                let why = self
                    .engine
                    .death()
                    .unwrap_or("the engine stopped before the request finished")
                    .to_string();
                for (i, s) in self.seqs.iter_mut().enumerate().filter(|(_, s)| !s.done) {
                    s.done = true;
                    self.pending.push(SeqDelta {
                        seq_index: i,
                        finish: Some(Finish {
                            reason: FinishReason::Abort.as_str(),
                            stop_reason: None,
                            error: Some(why.clone()),
                            times: None,
                        }),
                        ..Default::default()
                    });
                }
            }
            return Some(self.pending.pop().map(Ok));
        };
        if self.seqs.get(msg.seq_index).is_none_or(|s| s.done) {
            return None;
        }
        Some(Some(self.apply(msg)))
    }

    fn apply(&mut self, msg: RequestOutput) -> Result<SeqDelta> {
        let i = msg.seq_index;
        let s = &mut self.seqs[i];
        let mut d = SeqDelta {
            seq_index: i,
            prompt_logprobs: msg.prompt_logprobs,
            num_cached_tokens: msg.num_cached_tokens,
            ..Default::default()
        };
        // vLLM: the EOS or stop token that ended the sequence is not part of its text (it
        // would show when special tokens are kept, e.g. under a tool parser).
        let last = msg.new_token_ids.len().wrapping_sub(1);
        let stop_token =
            msg.finish_reason == Some(FinishReason::Stop) && !self.include_stop_str_in_output;
        for (k, &tok) in msg.new_token_ids.iter().enumerate() {
            d.token_ids.push(tok);
            if let Some(lp) = msg.logprobs.get(k) {
                d.logprobs.push(lp.clone());
            }
            if stop_token && k == last {
                break;
            }
            let check = s.stop.push(&s.detok.push(tok)?);
            d.text.push_str(&check.text);
            if check.stopped {
                s.done = true;
                d.finish = Some(Finish {
                    reason: FinishReason::Stop.as_str(),
                    stop_reason: s.stop.matched().map(|m| StopReason::Text(m.to_string())),
                    error: None,
                    times: None,
                });
                self.engine.abort_seq(self.stream.id, i);
                return Ok(d);
            }
        }
        if let Some(reason) = msg.finish_reason {
            s.done = true;
            let tail = s.stop.push(&s.detok.finish()?);
            d.text.push_str(&tail.text);
            let (reason, stop_reason) = if tail.stopped {
                let m = s.stop.matched().map(|m| StopReason::Text(m.to_string()));
                (FinishReason::Stop, m)
            } else {
                d.text.push_str(&s.stop.finish());
                (reason, msg.stop_reason.map(StopReason::Token))
            };
            d.finish = Some(Finish {
                reason: reason.as_str(),
                stop_reason,
                error: msg.error,
                times: msg.times,
            });
        }
        Ok(d)
    }
}

/// Everything one request produced, gathered (offline commands and non-streaming replies).
#[derive(Debug, Default)]
pub struct Completion {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<TokenLogprobs>,
    pub finish: Option<Finish>,
}

#[derive(Debug, Default)]
pub struct RequestResult {
    pub completions: Vec<Completion>,
    pub prompt_logprobs: Vec<TokenLogprobs>,
    pub num_cached_tokens: usize,
}

impl RequestResult {
    pub fn new(n: usize) -> Self {
        Self {
            completions: (0..n).map(|_| Completion::default()).collect(),
            ..Default::default()
        }
    }

    /// Folds one delta in.
    pub fn add(&mut self, d: SeqDelta) {
        self.prompt_logprobs.extend(d.prompt_logprobs);
        self.num_cached_tokens = self.num_cached_tokens.max(d.num_cached_tokens);
        let c = &mut self.completions[d.seq_index];
        c.text.push_str(&d.text);
        c.token_ids.extend(d.token_ids);
        c.logprobs.extend(d.logprobs);
        if d.finish.is_some() {
            c.finish = d.finish;
        }
    }

    /// The first error any sequence reported.
    pub fn error(&self) -> Option<&str> {
        self.completions
            .iter()
            .find_map(|c| c.finish.as_ref()?.error.as_deref())
    }
}

/// Drains a request synchronously; `on_text(seq_index, text)` sees text as soon as it is final.
pub fn drive_blocking(
    engine: &EngineHandle,
    tokenizer: &Arc<Tokenizer>,
    stream: RequestStream,
    params: &SamplingParams,
    mut on_text: impl FnMut(usize, &str),
) -> Result<RequestResult> {
    let mut out = OutputStream::new(engine.clone(), tokenizer, stream, params);
    let mut result = RequestResult::new(params.n);
    while let Some(d) = out.next_blocking() {
        let d = d?;
        if !d.text.is_empty() {
            on_text(d.seq_index, &d.text);
        }
        result.add(d);
    }
    Ok(result)
}
