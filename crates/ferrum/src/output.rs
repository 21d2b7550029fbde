//! The output side of a request, off the engine thread: incremental detokenization and stop
//! strings (a hit aborts the sequence in the engine and reports `stop`).

use anyhow::Result;
use ferrum_engine::{EngineHandle, RequestStream, SamplingParams, TokenLogprobs};
use ferrum_tokenizer::{IncrementalDetokenizer, StopStrings, Tokenizer};

#[derive(Debug, Default)]
pub struct Completion {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub finish_reason: String,
    pub logprobs: Vec<TokenLogprobs>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct RequestResult {
    pub completions: Vec<Completion>,
    pub prompt_logprobs: Vec<TokenLogprobs>,
    pub num_cached_tokens: usize,
}

struct SeqState {
    detok: IncrementalDetokenizer,
    stop: StopStrings,
    stopped: bool,
    out: Completion,
}

/// Drains the stream to the end; `on_text(seq_index, delta)` sees text as soon as it is final.
pub fn drive(
    engine: &EngineHandle,
    tokenizer: &Tokenizer,
    stream: RequestStream,
    params: &SamplingParams,
    mut on_text: impl FnMut(usize, &str),
) -> Result<RequestResult> {
    let mut seqs: Vec<SeqState> = (0..params.n)
        .map(|_| SeqState {
            detok: tokenizer.detokenizer(params.skip_special_tokens),
            stop: StopStrings::new(params.stop.clone(), params.include_stop_str_in_output),
            stopped: false,
            out: Completion::default(),
        })
        .collect();
    let mut result = RequestResult::default();
    for msg in stream.iter() {
        let i = msg.seq_index;
        let s = &mut seqs[i];
        if msg.seq_index == 0 && !msg.prompt_logprobs.is_empty() {
            result
                .prompt_logprobs
                .extend(msg.prompt_logprobs.iter().cloned());
        }
        result.num_cached_tokens = result.num_cached_tokens.max(msg.num_cached_tokens);
        if !s.stopped {
            for (k, &tok) in msg.new_token_ids.iter().enumerate() {
                s.out.token_ids.push(tok);
                if let Some(lp) = msg.logprobs.get(k) {
                    s.out.logprobs.push(lp.clone());
                }
                let check = s.stop.push(&s.detok.push(tok)?);
                s.out.text.push_str(&check.text);
                on_text(i, &check.text);
                if check.stopped {
                    s.stopped = true;
                    s.out.finish_reason = "stop".into();
                    engine.abort_seq(stream.id, i);
                    break;
                }
            }
        }
        if let Some(reason) = msg.finish_reason {
            if !s.stopped {
                let tail = s.stop.push(&s.detok.finish()?);
                let rest = if tail.stopped {
                    tail.text
                } else {
                    tail.text + &s.stop.finish()
                };
                s.out.text.push_str(&rest);
                on_text(i, &rest);
                s.out.finish_reason = if tail.stopped {
                    "stop".into()
                } else {
                    reason.as_str().into()
                };
            }
            s.out.error = msg.error.clone();
        }
    }
    result.completions = seqs.into_iter().map(|s| s.out).collect();
    Ok(result)
}
