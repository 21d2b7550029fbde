//! `ferrum generate`: one prompt streamed to stdout, or a JSON-lines file of prompts submitted
//! to the engine at once (vLLM's `LLM.generate(prompts)`), answered in input order.

use crate::request_json::{self, JsonRequest, Prompt};
use crate::runtime::Runtime;
use anyhow::{Context, Result, bail};
use ferrum_engine::{EngineRequest, SamplingParams, TokenLogprobs};
use ferrum_server::output::{RequestResult, drive_blocking};
use serde_json::{Value, json};
use std::io::Write;

/// vLLM's `SamplingParams.max_tokens` default for offline generation.
pub const DEFAULT_MAX_TOKENS: usize = 16;

pub fn encode(rt: &Runtime, prompt: &Prompt) -> Result<Vec<u32>> {
    match prompt {
        Prompt::Text(t) => rt.tokenizer.encode(t, true),
        Prompt::Ids(ids) => Ok(ids.clone()),
    }
}

pub fn request(
    rt: &Runtime,
    ids: Vec<u32>,
    params: SamplingParams,
    priority: i32,
) -> EngineRequest {
    EngineRequest {
        prompt_token_ids: ids,
        params,
        priority,
        eos_token_ids: rt.tokenizer.eos_token_ids().to_vec(),
        arrival_time: None,
    }
}

pub fn single(rt: &Runtime, prompt: &str, params: SamplingParams) -> Result<()> {
    let ids = rt.tokenizer.encode(prompt, true)?;
    let stream = rt.engine.add_request(request(rt, ids, params.clone(), 0))?;
    let mut stdout = std::io::stdout().lock();
    let res = drive_blocking(&rt.engine, &rt.tokenizer, stream, &params, |_, text| {
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    })?;
    let _ = writeln!(stdout);
    if let Some(e) = res.error() {
        bail!("generation failed: {e}");
    }
    Ok(())
}

fn logprobs_json(rt: &Runtime, lps: &[TokenLogprobs]) -> Value {
    let tok = |id: u32| rt.tokenizer.id_to_token(id).unwrap_or_default();
    lps.iter()
        .map(|l| {
            json!({"token_id": l.token_id, "token": tok(l.token_id), "logprob": l.logprob, "rank": l.rank,
                   "top": l.top.iter().map(|&(id, lp)| json!({"token_id": id, "token": tok(id), "logprob": lp})).collect::<Vec<_>>()})
        })
        .collect()
}

pub fn batch(rt: &Runtime, file: &std::path::Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut reqs: Vec<(usize, JsonRequest, Vec<u32>)> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", file.display(), n + 1))?;
        let obj = v.as_object().with_context(|| {
            format!("{} line {}: expected a JSON object", file.display(), n + 1)
        })?;
        let defaults = SamplingParams {
            max_tokens: rt.defaults.max_tokens.or(Some(DEFAULT_MAX_TOKENS)),
            ..rt.defaults.clone()
        };
        let r = request_json::parse(obj, &defaults)
            .with_context(|| format!("{} line {}", file.display(), n + 1))?;
        let ids = encode(rt, &r.prompt)?;
        reqs.push((reqs.len(), r, ids));
    }
    // Submit everything first (the engine batches them), then drain each stream on its own thread.
    let results: Vec<Result<(usize, RequestResult)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|(_, r, ids)| {
                let submitted =
                    rt.engine
                        .add_request(request(rt, ids.clone(), r.params.clone(), r.priority));
                scope.spawn(move || -> Result<(usize, RequestResult)> {
                    let stream = submitted?;
                    Ok((
                        ids.len(),
                        drive_blocking(&rt.engine, &rt.tokenizer, stream, &r.params, |_, _| {})?,
                    ))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("output thread panicked"))
            .collect()
    });
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0;
    for ((index, r, _), res) in reqs.iter().zip(results) {
        let line = match res {
            Err(e) => {
                failed += 1;
                json!({"index": index, "error": format!("{e:#}")})
            }
            Ok((prompt_tokens, res)) => {
                let c = &res.completions[0];
                let reason = |c: &ferrum_server::output::Completion| {
                    c.finish.as_ref().map_or("abort", |f| f.reason)
                };
                let mut o = json!({"index": index, "text": c.text, "token_ids": c.token_ids, "finish_reason": reason(c),
                                   "prompt_tokens": prompt_tokens, "completion_tokens": c.token_ids.len()});
                if r.params.logprobs.is_some() {
                    o["logprobs"] = logprobs_json(rt, &c.logprobs);
                }
                if r.params.prompt_logprobs.is_some() {
                    o["prompt_logprobs"] = logprobs_json(rt, &res.prompt_logprobs);
                }
                if r.params.n > 1 {
                    o["outputs"] = res.completions.iter().map(|c| json!({"text": c.text, "token_ids": c.token_ids, "finish_reason": reason(c)})).collect();
                }
                if let Some(e) = res.error() {
                    failed += 1;
                    o["error"] = e.into();
                }
                o
            }
        };
        writeln!(stdout, "{line}")?;
    }
    let s = rt.engine.stats();
    eprintln!(
        "{}",
        json!({"preemptions": s.num_preemptions, "prefix_cache_queries": s.prefix_cache_queries, "prefix_cache_hits": s.prefix_cache_hits,
               "prompt_tokens": s.prompt_tokens, "generation_tokens": s.generation_tokens,
               "spec_decode_num_drafts": s.spec_decode.num_drafts, "spec_decode_num_draft_tokens": s.spec_decode.num_draft_tokens,
               "spec_decode_num_accepted_tokens": s.spec_decode.num_accepted_tokens,
               "spec_decode_num_accepted_tokens_per_pos": s.spec_decode.num_accepted_tokens_per_pos})
    );
    if failed > 0 {
        bail!(
            "{failed} of {} requests failed (see their `error` fields)",
            reqs.len()
        );
    }
    Ok(())
}
