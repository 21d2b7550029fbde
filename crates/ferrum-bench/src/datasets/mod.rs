//! Benchmark prompts (vLLM's `benchmarks/datasets.py`): random, sharegpt,
//! prefix_repetition and custom.

pub mod random;
pub mod sharegpt;

use std::path::Path;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::args::ServeArgs;
use ferrum_tokenizer::Tokenizer;

/// One benchmark request (vLLM's `SampleRequest`, text prompts only).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    pub prompt: String,
    /// The prompt's token count as the dataset measured it.
    pub prompt_len: usize,
    /// `max_tokens` for the request.
    pub expected_output_len: usize,
    /// Sent as `x-request-id`.
    pub request_id: Option<String>,
}

/// The requests for `args.dataset_name` (vLLM's `get_samples`).
pub fn get_samples(
    args: &ServeArgs,
    tok: &Tokenizer,
    request_id_prefix: &str,
) -> Result<Vec<SampleRequest>> {
    let path = || {
        args.dataset_path.as_deref().with_context(|| {
            format!(
                "--dataset-path is required for --dataset-name {}",
                args.dataset_name
            )
        })
    };
    match args.dataset_name.as_str() {
        "random" => random::sample_random(tok, args, request_id_prefix),
        "prefix_repetition" => random::sample_prefix_repetition(tok, args),
        "sharegpt" => {
            // Convenience over vLLM: without --dataset-path, the copy fetch_sharegpt.sh
            // installs.
            let cached = sharegpt::cached_path();
            let p = match &args.dataset_path {
                Some(p) => p.as_path(),
                None if cached.exists() => cached.as_path(),
                None => bail!(
                    "--dataset-path is required for --dataset-name sharegpt (or fetch {} \
                     with crates/ferrum-bench/fetch_sharegpt.sh)",
                    cached.display()
                ),
            };
            sharegpt::sample(p, tok, args, request_id_prefix)
        }
        "custom" => sample_custom(path()?, tok, args, request_id_prefix),
        other => bail!("Unknown dataset: {other}"),
    }
}

/// vLLM's custom dataset: a `.jsonl` file of `{"prompt": ...}` lines, shuffled with the
/// seed unless --disable-shuffle, each prompt wrapped in the chat template as a user
/// message unless --skip-chat-template, with --custom-output-len output tokens. A
/// --num-prompts of 0 takes every line.
pub fn sample_custom(
    path: &Path,
    tok: &Tokenizer,
    args: &ServeArgs,
    request_id_prefix: &str,
) -> Result<Vec<SampleRequest>> {
    if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
        bail!("Only JSONL format is supported for CustomDataset.");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        let Some(p) = v.get("prompt") else {
            bail!("JSONL file must contain a 'prompt' column.");
        };
        // pandas would read a non-string prompt as its value; text is what is sent.
        prompts.push(p.as_str().map_or_else(|| p.to_string(), str::to_string));
    }
    if !args.disable_shuffle {
        prompts.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
    }
    let n = if args.num_prompts == 0 {
        prompts.len()
    } else {
        args.num_prompts
    };
    let mut samples = Vec::new();
    for (i, mut prompt) in prompts.into_iter().take(n).enumerate() {
        if !args.skip_chat_template {
            let messages = json!([{"role": "user", "content": prompt}]);
            prompt = tok.apply_chat_template(&messages, true, None)?;
        }
        samples.push(SampleRequest {
            prompt_len: tok.encode(&prompt, true)?.len(),
            prompt,
            expected_output_len: args.custom_output_len,
            request_id: Some(format!("{request_id_prefix}{i}")),
        });
    }
    let mut args = args.clone();
    args.num_prompts = n;
    oversample(&mut samples, &args, request_id_prefix)?;
    Ok(samples)
}

/// vLLM's `maybe_oversample_requests`: tops `samples` up to --num-prompts with random
/// copies (fresh request ids), unless --no-oversample.
pub(crate) fn oversample(
    samples: &mut Vec<SampleRequest>,
    args: &ServeArgs,
    request_id_prefix: &str,
) -> Result<()> {
    if args.no_oversample || samples.len() >= args.num_prompts {
        return Ok(());
    }
    if samples.is_empty() {
        bail!("the dataset produced no valid samples to oversample from");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let base = samples.len();
    for i in 0..args.num_prompts - base {
        let mut extra = samples[..base].choose(&mut rng).expect("non-empty").clone();
        extra.request_id = Some(format!("{request_id_prefix}{}", base + i));
        samples.push(extra);
    }
    eprintln!(
        "Oversampled requests to reach {} total samples.",
        args.num_prompts
    );
    Ok(())
}
