//! Shared by the model tests: run one sequence through the paged forward and compare
//! distributions with a reference's top-k log-probabilities.
#![allow(dead_code)]

pub mod llamacpp;

use ferrum_backend::{Backend, CpuBackend, KvDtype, KvSpec, StepMeta, StepSeq};
use ferrum_models::{CausalLm, Workspace};
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

/// One sequence run step by step on a backend: a paged cache of `blocks` blocks with a
/// scattered block table, and a workspace for `max_step` tokens.
struct Session<'m, 'b, B: Backend> {
    model: &'m CausalLm<B>,
    be: &'b mut B,
    kv: B::Kv,
    ws: Workspace<B>,
    table: Vec<u32>,
}

impl<'m, 'b, B: Backend> Session<'m, 'b, B> {
    fn new(
        be: &'b mut B,
        kv_dtype: KvDtype,
        model: &'m CausalLm<B>,
        tokens: usize,
        max_step: usize,
        scattered: bool,
    ) -> Self {
        let c = &model.cfg;
        let blocks = tokens.div_ceil(BLOCK);
        let spec = KvSpec {
            num_layers: c.num_layers,
            num_blocks: blocks,
            block_size: BLOCK,
            kv_dim: c.kv_dim(),
            dtype: kv_dtype,
        };
        let kv = be.alloc_kv(&spec).unwrap();
        let ws = Workspace::new(&*be, model, max_step, max_step).unwrap();
        let mut table: Vec<u32> = (0..blocks as u32).collect();
        if scattered {
            table.reverse();
        }
        Session {
            model,
            be,
            kv,
            ws,
            table,
        }
    }

    /// Feeds `seq[done..]` and returns the logits of the given rows of this step.
    fn step(&mut self, seq: &[u32], done: usize, rows: &[usize]) -> Vec<f32> {
        let positions: Vec<usize> = (done..seq.len()).collect();
        let meta = StepMeta {
            tokens: seq[done..].to_vec(),
            slots: positions
                .iter()
                .map(|&p| self.table[p / BLOCK] as usize * BLOCK + p % BLOCK)
                .collect(),
            positions,
            seqs: vec![StepSeq {
                q_start: 0,
                q_len: seq.len() - done,
                ctx_len: seq.len(),
                table: 0..self.table.len(),
            }],
            block_tables: self.table.clone(),
            block_size: BLOCK,
        };
        self.be.begin_step(&meta).unwrap();
        let m = self.model;
        m.forward(&*self.be, seq.len() - done, &mut self.kv, &mut self.ws)
            .unwrap();
        m.logits(&*self.be, rows, &mut self.ws).unwrap();
        let mut out = vec![0f32; rows.len() * m.cfg.vocab_size];
        self.be.read(&self.ws.logits, &mut out).unwrap();
        out
    }
}

/// Teacher-forced next-token log-probabilities at every position, prefilled in chunks of `chunk`.
pub fn teacher_forced(model: &CausalLm<CpuBackend>, ids: &[u32], chunk: usize) -> Vec<Vec<f64>> {
    teacher_forced_on(&mut CpuBackend::new(), KvDtype::F32, model, ids, chunk)
}

/// [`teacher_forced`] on any backend (its KV cache in `kv_dtype`).
pub fn teacher_forced_on<B: Backend>(
    be: &mut B,
    kv_dtype: KvDtype,
    model: &CausalLm<B>,
    ids: &[u32],
    chunk: usize,
) -> Vec<Vec<f64>> {
    let mut s = Session::new(be, kv_dtype, model, ids.len(), chunk.min(ids.len()), true);
    let vocab = model.cfg.vocab_size;
    let mut out = Vec::new();
    for start in (0..ids.len()).step_by(chunk) {
        let end = (start + chunk).min(ids.len());
        let rows: Vec<usize> = (0..end - start).collect();
        let logits = s.step(&ids[..end], start, &rows);
        out.extend(logits.chunks(vocab).map(log_softmax));
    }
    out
}

/// Greedy continuation of `prompt` for `n` tokens (prefill, then one-token decode steps).
pub fn greedy(model: &CausalLm<CpuBackend>, prompt: &[u32], n: usize) -> Vec<u32> {
    greedy_on(&mut CpuBackend::new(), KvDtype::F32, model, prompt, n)
}

/// [`greedy`] on any backend.
pub fn greedy_on<B: Backend>(
    be: &mut B,
    kv_dtype: KvDtype,
    model: &CausalLm<B>,
    prompt: &[u32],
    n: usize,
) -> Vec<u32> {
    let mut s = Session::new(
        be,
        kv_dtype,
        model,
        prompt.len() + n,
        prompt.len().max(1),
        false,
    );
    let mut seq = prompt.to_vec();
    let mut done = 0;
    let mut out = Vec::new();
    while out.len() < n {
        let logits = s.step(&seq, done, &[seq.len() - done - 1]);
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

pub fn hf_fixture(name: &str) -> std::path::PathBuf {
    // at run time first: a test binary built here and run on the GPU machine finds the
    // fixtures in that machine's checkout (scripts/gpu-check.sh sets it)
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .join("tests/fixtures/hf")
        .join(name)
}

/// Loads `model` (a folder or a GGUF file) and compares its teacher-forced distributions with a
/// transformers `reference.json`: (max |Δ|, mean |Δ|, top-1 agreement) over every position's
/// top-20.
pub fn check_reference(
    name: &str,
    model: &std::path::Path,
    reference: &std::path::Path,
) -> (f64, f64, f64) {
    check_reference_on(&mut CpuBackend::new(), KvDtype::F32, name, model, reference)
}

/// [`check_reference`] with the model loaded onto and run on `be`.
pub fn check_reference_on<B: Backend + ferrum_backend::WeightBytes>(
    be: &mut B,
    kv_dtype: KvDtype,
    name: &str,
    model: &std::path::Path,
    reference: &std::path::Path,
) -> (f64, f64, f64) {
    let opts = ferrum_models::LoadOptions::new(ferrum_models::LoadFormat::Auto, 0);
    let model = ferrum_models::load_on(model, &opts, &*be).unwrap();
    let reference: Value = serde_json::from_slice(&std::fs::read(reference).unwrap()).unwrap();
    let mut stats = DeltaStats::default();
    for p in reference["prompts"].as_array().unwrap() {
        let ours = teacher_forced_on(&mut *be, kv_dtype, &model.model, &ids(&p["ids"]), 1000);
        for (pos, r) in ours.iter().zip(p["positions"].as_array().unwrap()) {
            let (d, top1, _) = compare(pos, r, 20);
            stats.add(&d, top1);
        }
    }
    stats.report(name)
}

/// Two transformers references of the same model and prompts (say bf16 and f32) against each
/// other: |Δ logprob| over the entries of `exact`'s top-20 that `other`'s top-20 also lists,
/// and top-1 agreement. The yardstick for a bf16 forward: how far transformers' own is.
pub fn compare_references(
    name: &str,
    other: &std::path::Path,
    exact: &std::path::Path,
) -> (f64, f64, f64) {
    let read = |p: &std::path::Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (other, exact) = (read(other), read(exact));
    let mut stats = DeltaStats::default();
    let prompts = |v: &Value| v["prompts"].as_array().unwrap().clone();
    for (po, pe) in prompts(&other).iter().zip(&prompts(&exact)) {
        assert_eq!(po["ids"], pe["ids"], "the references' prompts differ");
        let positions = |p: &Value| p["positions"].as_array().unwrap().clone();
        for (o, e) in positions(po).iter().zip(&positions(pe)) {
            let lp = |v: &Value| -> Vec<(u32, f64)> {
                ids(&v["top_ids"])
                    .into_iter()
                    .zip(v["top_logprobs"].as_array().unwrap().iter())
                    .map(|(t, x)| (t, x.as_f64().unwrap()))
                    .collect()
            };
            let (o, e) = (lp(o), lp(e));
            let deltas: Vec<f64> = e
                .iter()
                .filter_map(|(t, x)| o.iter().find(|(u, _)| u == t).map(|(_, y)| (x - y).abs()))
                .collect();
            stats.add(&deltas, o[0].0 == e[0].0);
        }
    }
    stats.report(name)
}

/// Max and mean |Δ logprob| over compared entries, and top-1 agreement over positions.
#[derive(Default)]
pub struct DeltaStats {
    max: f64,
    sum: f64,
    n: usize,
    agree: usize,
    positions: usize,
}

impl DeltaStats {
    /// One position: its entries' |Δ| and whether the top-1 tokens agree.
    pub fn add(&mut self, deltas: &[f64], top1_agrees: bool) {
        self.max = deltas.iter().cloned().fold(self.max, f64::max);
        self.sum += deltas.iter().sum::<f64>();
        self.n += deltas.len();
        self.agree += top1_agrees as usize;
        self.positions += 1;
    }

    /// Prints and returns (max, mean, top-1 agreement).
    pub fn report(&self, label: &str) -> (f64, f64, f64) {
        let stats = (
            self.max,
            self.sum / self.n as f64,
            self.agree as f64 / self.positions as f64,
        );
        eprintln!(
            "{label}: over {} positions max |Δ logprob| {:.2e}, mean {:.2e}, top-1 agreement {:.3}",
            self.positions, stats.0, stats.1, stats.2
        );
        stats
    }
}

/// The default model (SmolLM2 GGUF) behind a real engine of `num_blocks` blocks, the config
/// tweaked before it starts.
pub fn default_model_engine(
    num_blocks: usize,
    tweak: impl FnOnce(&mut ferrum_engine::EngineConfig),
) -> ferrum_engine::EngineHandle {
    let path = ferrum_gguf::default_model_path();
    assert!(
        path.exists(),
        "default model missing at {}: run scripts/setup.sh",
        path.display()
    );
    let model = ferrum_models::load(&path, ferrum_models::LoadFormat::Auto, 0).unwrap();
    let mut cfg = ferrum_engine::EngineConfig::new(num_blocks, 2048, model.config().vocab_size);
    tweak(&mut cfg);
    let limits = ferrum_models::RunnerLimits::from_engine(&cfg);
    let runner = ferrum_models::Runner::new(CpuBackend::new(), model.model, &limits).unwrap();
    ferrum_engine::Engine::start(cfg, Box::new(runner))
}

/// Submits every request at once and returns each one's output tokens (no request may fail).
pub fn run_all(
    e: &ferrum_engine::EngineHandle,
    reqs: &[(Vec<u32>, ferrum_engine::SamplingParams)],
) -> Vec<Vec<u32>> {
    let streams: Vec<_> = reqs
        .iter()
        .map(|(p, sp)| {
            e.add_request(ferrum_engine::EngineRequest::new(p.clone(), sp.clone()))
                .unwrap()
        })
        .collect();
    streams
        .into_iter()
        .map(|mut s| {
            let mut out = Vec::new();
            for m in s.iter() {
                assert!(m.error.is_none(), "{:?}", m.error);
                out.extend(m.new_token_ids);
            }
            out
        })
        .collect()
}
