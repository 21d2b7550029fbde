//! `ferrum bench latency` and `ferrum bench throughput`: offline benchmarks with vLLM's option
//! names and report lines, over random prompts (random token ids, as vLLM's random dataset).

use crate::generate::request;
use crate::runtime::Runtime;
use anyhow::{Result, bail};
use clap::Args;
use ferrum_engine::{RequestStream, SamplingParams};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    #[arg(long, default_value_t = 32)]
    pub input_len: usize,
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 3)]
    pub num_iters_warmup: usize,
    #[arg(long, default_value_t = 10)]
    pub num_iters: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    pub output_json: Option<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ThroughputArgs {
    #[arg(long, default_value_t = 128)]
    pub input_len: usize,
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    #[arg(long, default_value_t = 64)]
    pub num_prompts: usize,
    #[arg(long)]
    pub output_json: Option<std::path::PathBuf>,
}

fn random_prompt(rng: &mut impl Rng, vocab: usize, len: usize) -> Vec<u32> {
    // Stay clear of the special tokens at both ends of typical vocabularies.
    let hi = vocab.clamp(2, 32_000) as u32;
    (0..len).map(|_| rng.random_range(1..hi)).collect()
}

fn params(output_len: usize) -> SamplingParams {
    // vLLM's benchmarks: temperature 1, top_p 1, ignore_eos so every request runs to output_len.
    SamplingParams {
        max_tokens: Some(output_len),
        ignore_eos: true,
        ..SamplingParams::default()
    }
}

/// Waits for the stream's first tokens; returns when they came (since `start`) and how many.
fn first_tokens(stream: &mut RequestStream, start: Instant) -> Result<(Duration, usize)> {
    for msg in stream.iter() {
        if let Some(e) = msg.error {
            bail!("request failed: {e}");
        }
        if !msg.new_token_ids.is_empty() || msg.finish_reason.is_some() {
            return Ok((start.elapsed(), msg.new_token_ids.len()));
        }
    }
    Ok((start.elapsed(), 0))
}

/// Waits for the rest of a stream; returns the tokens received.
fn rest(stream: &mut RequestStream) -> Result<usize> {
    let mut n = 0;
    for msg in stream.iter() {
        if let Some(e) = msg.error {
            bail!("request failed: {e}");
        }
        n += msg.new_token_ids.len();
    }
    Ok(n)
}

fn bar(len: usize, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    b.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} {{elapsed}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx]
}

pub fn latency(rt: &Runtime, a: &LatencyArgs) -> Result<()> {
    let vocab = rt.tokenizer.vocab_size();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let run_once = |rng: &mut rand::rngs::StdRng| -> Result<(f64, f64)> {
        let start = Instant::now();
        let mut streams: Vec<RequestStream> = (0..a.batch_size)
            .map(|_| {
                rt.engine.add_request(request(
                    rt,
                    random_prompt(rng, vocab, a.input_len),
                    params(a.output_len),
                    0,
                ))
            })
            .collect::<Result<_, _>>()?;
        // first tokens of every request (they are buffered per request, so reading them in
        // order still times each one), then the rest
        let mut ttft = Duration::ZERO;
        for s in &mut streams {
            ttft = ttft.max(first_tokens(s, start)?.0);
        }
        for s in &mut streams {
            rest(s)?;
        }
        Ok((start.elapsed().as_secs_f64(), ttft.as_secs_f64()))
    };
    let warm = bar(a.num_iters_warmup, "warmup");
    for _ in 0..a.num_iters_warmup {
        run_once(&mut rng)?;
        warm.inc(1);
    }
    warm.finish_and_clear();
    let b = bar(a.num_iters, "bench latency");
    let (spec0, t0) = (rt.engine.stats().spec_decode, Instant::now());
    let (mut lat, mut ttfts) = (Vec::new(), Vec::new());
    for _ in 0..a.num_iters {
        let (l, t) = run_once(&mut rng)?;
        lat.push(l);
        ttfts.push(t);
        b.inc(1);
    }
    b.finish_and_clear();
    lat.sort_by(f64::total_cmp);
    let avg = lat.iter().sum::<f64>() / lat.len() as f64;
    let avg_ttft = ttfts.iter().sum::<f64>() / ttfts.len() as f64;
    let prefill_tps = (a.batch_size * a.input_len) as f64 / avg_ttft;
    let decode_tps = (a.batch_size * a.output_len.saturating_sub(1)) as f64 / (avg - avg_ttft);
    println!("Avg latency: {avg:.4} seconds");
    for p in [10.0, 25.0, 50.0, 75.0, 90.0, 99.0] {
        println!(
            "{p:.0}% percentile latency: {:.4} seconds",
            percentile(&lat, p)
        );
    }
    println!(
        "Avg time to first token (prefill of {}×{}): {avg_ttft:.4} seconds = {prefill_tps:.1} prompt tok/s",
        a.batch_size, a.input_len
    );
    println!(
        "Decode after the first token: {decode_tps:.1} tok/s ({:.2} ms per step)",
        1000.0 * (avg - avg_ttft) / a.output_len.saturating_sub(1).max(1) as f64
    );
    print_spec_decode(rt, &spec0, t0.elapsed().as_secs_f64());
    if let Some(path) = &a.output_json {
        let pct: serde_json::Map<_, _> = [10.0, 25.0, 50.0, 75.0, 90.0, 99.0]
            .iter()
            .map(|&p| (format!("{p:.0}"), json!(percentile(&lat, p))))
            .collect();
        let v = json!({"avg_latency": avg, "latencies": lat, "percentiles": pct, "avg_ttft": avg_ttft,
                       "prefill_tokens_per_s": prefill_tps, "decode_tokens_per_s": decode_tps});
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}

pub fn throughput(rt: &Runtime, a: &ThroughputArgs) -> Result<()> {
    let vocab = rt.tokenizer.vocab_size();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let prompts: Vec<Vec<u32>> = (0..a.num_prompts)
        .map(|_| random_prompt(&mut rng, vocab, a.input_len))
        .collect();
    let b = bar(a.num_prompts, "bench throughput");
    let start = Instant::now();
    let mut streams: Vec<RequestStream> = prompts
        .into_iter()
        .map(|p| {
            rt.engine
                .add_request(request(rt, p, params(a.output_len), 0))
        })
        .collect::<Result<_, _>>()?;
    let mut out_tokens = 0;
    for s in &mut streams {
        out_tokens += first_tokens(s, start)?.1 + rest(s)?;
        b.inc(1);
    }
    let secs = start.elapsed().as_secs_f64();
    b.finish_and_clear();
    let in_tokens = a.num_prompts * a.input_len;
    let s = rt.engine.stats();
    println!(
        "Throughput: {:.2} requests/s, {:.2} total tokens/s, {:.2} output tokens/s",
        a.num_prompts as f64 / secs,
        (in_tokens + out_tokens) as f64 / secs,
        out_tokens as f64 / secs
    );
    println!("Total num prompt tokens:  {in_tokens}");
    println!("Total num output tokens:  {out_tokens}");
    println!("Preemptions: {}", s.num_preemptions);
    print_spec_decode(rt, &Default::default(), secs);
    if let Some(path) = &a.output_json {
        let v = json!({"elapsed_time": secs, "num_requests": a.num_prompts, "total_num_tokens": in_tokens + out_tokens,
                       "requests_per_second": a.num_prompts as f64 / secs, "tokens_per_second": (in_tokens + out_tokens) as f64 / secs,
                       "output_tokens_per_second": out_tokens as f64 / secs});
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}

/// vLLM's "SpecDecoding metrics: ..." line over the measured run, when speculation is on.
fn print_spec_decode(rt: &Runtime, before: &ferrum_engine::SpecDecodeStats, secs: f64) {
    if rt.engine.config().speculative.is_none() {
        return;
    }
    let now = rt.engine.stats().spec_decode;
    match ferrum_server::stats_log::spec_decode_line(before, &now, secs) {
        Some(line) => println!("{line}"),
        None => println!("SpecDecoding metrics: no drafts proposed"),
    }
}
