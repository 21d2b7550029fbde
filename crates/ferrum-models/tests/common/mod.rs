//! Shared by the model tests: run one sequence through the paged forward and compare
//! distributions with a reference's top-k log-probabilities.
#![allow(dead_code)]

use ferrum_models::{Decoder, ForwardBatch, KvCache, SeqSpan};
use serde_json::Value;

pub const BLOCK: usize = 16;

pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits
        .iter()
        .map(|&x| (x as f64 - m).exp())
        .sum::<f64>()
        .ln();
    logits.iter().map(|&x| x as f64 - m - z).collect()
}

/// Teacher-forced next-token log-probabilities at every position, prefilled in chunks of `chunk`.
pub fn teacher_forced(model: &Decoder, ids: &[u32], chunk: usize) -> Vec<Vec<f64>> {
    let mut kv = KvCache::new(&model.cfg, ids.len().div_ceil(BLOCK), BLOCK);
    let table: Vec<u32> = (0..kv.num_blocks as u32).rev().collect(); // scattered on purpose
    let vocab = model.cfg.vocab_size;
    let mut out = Vec::new();
    for start in (0..ids.len()).step_by(chunk) {
        let end = (start + chunk).min(ids.len());
        let batch = ForwardBatch {
            tokens: ids[start..end].to_vec(),
            seqs: vec![SeqSpan {
                q_start: 0,
                q_len: end - start,
                ctx_len: end,
                block_table: &table,
            }],
            logits_rows: (0..end - start).collect(),
        };
        let logits = model.forward(&batch, &mut kv).unwrap();
        out.extend(logits.chunks(vocab).map(log_softmax));
    }
    out
}

/// Greedy continuation of `prompt` for `n` tokens (prefill, then one-token decode steps).
pub fn greedy(model: &Decoder, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut kv = KvCache::new(&model.cfg, (prompt.len() + n).div_ceil(BLOCK), BLOCK);
    let table: Vec<u32> = (0..kv.num_blocks as u32).collect();
    let mut seq = prompt.to_vec();
    let mut done = 0;
    let mut out = Vec::new();
    while out.len() < n {
        let batch = ForwardBatch {
            tokens: seq[done..].to_vec(),
            seqs: vec![SeqSpan {
                q_start: 0,
                q_len: seq.len() - done,
                ctx_len: seq.len(),
                block_table: &table,
            }],
            logits_rows: vec![seq.len() - done - 1],
        };
        let logits = model.forward(&batch, &mut kv).unwrap();
        let next = argmax(&logits);
        done = seq.len();
        seq.push(next);
        out.push(next);
    }
    out
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best as u32
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// |Δ logprob| over the reference's top ids at one position, and whether top-1 agrees.
pub fn compare(ours: &[f64], reference: &Value, k: usize) -> (Vec<f64>, bool, f64) {
    let top = ids(&reference["top_ids"]);
    let lps: Vec<f64> = reference["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let deltas = top
        .iter()
        .zip(&lps)
        .take(k)
        .map(|(&t, &lp)| (ours[t as usize] - lp).abs())
        .collect();
    let our_top = ours
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0 as u32;
    (deltas, our_top == top[0], lps[0] - lps[1])
}
