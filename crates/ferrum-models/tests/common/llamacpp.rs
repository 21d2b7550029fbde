//! Real GGUF models against llama.cpp's fixtures (tests/fixtures/llamacpp_*_logprobs.json, made
//! by scripts/fixtures/llamacpp_reference.py) on any backend: teacher-forced log-probabilities
//! over llama.cpp's top-5, and greedy continuations up to llama.cpp's first near-tie.

use ferrum_backend::{Backend, KvDtype};
use ferrum_models::CausalLm;
use serde_json::Value;

use super::{compare, greedy_on, ids, teacher_forced_on};

/// A top-2 gap (nats) below which llama.cpp's choice is a near-tie that rounding may flip.
pub const GAP: f64 = 0.3;

pub fn fixture(name: &str) -> Value {
    let p = format!(
        "{}/tests/fixtures/llamacpp_{name}_logprobs.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// The GGUF `file` from `$FERRUM_CACHE/models` (`scripts/setup.sh --test-models`).
pub fn model_path(file: &str) -> std::path::PathBuf {
    let path = ferrum_gguf::cached_model_path(file);
    assert!(
        path.exists(),
        "model missing at {}: run scripts/setup.sh --test-models",
        path.display()
    );
    path
}

/// Teacher-forced log-probabilities against llama.cpp's fixture `name`: returns (mean |Δ|,
/// max |Δ|) over llama.cpp's top-5 and the top-1 agreement where llama.cpp's top-2 gap exceeds
/// [`GAP`], each reported.
pub fn teacher_forced_vs_llamacpp<B: Backend>(
    be: &mut B,
    kv: KvDtype,
    model: &CausalLm<B>,
    name: &str,
) -> (f64, f64, f64) {
    let (mut max, mut sum, mut n) = (0f64, 0f64, 0usize);
    let (mut decisive, mut agree) = (0usize, 0usize);
    for p in fixture(name)["prompts"].as_array().unwrap() {
        let mut seq = ids(&p["prompt_ids"]);
        seq.extend(ids(&p["continuation_ids"]));
        let ours = teacher_forced_on(&mut *be, kv, model, &seq, 64);
        for (pos, r) in ours.iter().zip(p["positions"].as_array().unwrap()) {
            let (d, top1, gap) = compare(pos, r, 5);
            max = d.iter().cloned().fold(max, f64::max);
            sum += d.iter().sum::<f64>();
            n += d.len();
            if gap > GAP {
                decisive += 1;
                agree += top1 as usize;
            }
        }
    }
    let (mean, rate) = (sum / n as f64, agree as f64 / decisive as f64);
    eprintln!(
        "{name} on {} vs llama.cpp: {n} top-5 entries, mean |Δ logprob| {mean:.4}, max {max:.4}; \
         top-1 agreement {agree}/{decisive} = {rate:.4} where llama.cpp's top-2 gap > {GAP}",
        be.device_name()
    );
    (mean, max, rate)
}

/// Greedy continuations against llama.cpp's, each up to llama.cpp's first near-tie: returns
/// (tokens equal to llama.cpp's before our first difference, tokens compared), summed over the
/// fixture's prompts, each prompt reported.
pub fn greedy_vs_llamacpp<B: Backend>(
    be: &mut B,
    kv: KvDtype,
    model: &CausalLm<B>,
    name: &str,
) -> (usize, usize) {
    let (mut same, mut total) = (0, 0);
    for p in fixture(name)["prompts"].as_array().unwrap() {
        let prompt = ids(&p["prompt_ids"]);
        let theirs = ids(&p["continuation_ids"]);
        let positions = p["positions"].as_array().unwrap();
        // the continuation token i is predicted at position prompt.len() - 1 + i
        let gap = |i: usize| {
            let lp = &positions[prompt.len() - 1 + i]["top_logprobs"];
            lp[0].as_f64().unwrap() - lp[1].as_f64().unwrap()
        };
        let safe = (0..theirs.len()).take_while(|&i| gap(i) >= GAP).count();
        let ours = greedy_on(&mut *be, kv, model, &prompt, safe);
        let equal = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
        eprintln!(
            "{name}: {equal:>3} of {safe:>3} greedy tokens equal to llama.cpp's (of {}) before its first near-tie",
            theirs.len()
        );
        same += equal;
        total += safe;
    }
    (same, total)
}
