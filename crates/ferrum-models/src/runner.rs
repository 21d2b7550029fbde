//! The runner: the engine's [`Executor`] over a model on a backend. It owns the device side —
//! weights, the workspace sized for the largest step, the paged KV cache it sized itself — and
//! per step flattens the scheduled sequences into one varlen batch, runs the forward once, and
//! samples each sequence from its own logits row (prompt logprobs from the rows before it).

use crate::config::ModelConfig;
use crate::model::{CausalLm, Workspace};
use anyhow::{Result, bail};
use ferrum_backend::{
    Backend, KvDtype, KvSpec, LogitsRow, RowOutput, StepMeta, StepSeq as AttnStepSeq,
};
use ferrum_engine::{Executor, SeqStepOutput, StepBatch};

/// What bounds the runner's memory (vLLM's flags).
#[derive(Clone, Debug)]
pub struct RunnerLimits {
    pub block_size: usize,
    /// The largest step, in tokens (`--max-num-batched-tokens`).
    pub max_num_batched_tokens: usize,
    /// The most sequences in a step (`--max-num-seqs`): logits rows computed at a time.
    pub max_num_seqs: usize,
    pub kv_dtype: KvDtype,
    /// `--kv-cache-memory-bytes`.
    pub kv_cache_memory_bytes: Option<u64>,
    /// `--num-gpu-blocks-override`.
    pub num_blocks_override: Option<usize>,
    /// `--gpu-memory-utilization`.
    pub gpu_memory_utilization: Option<f64>,
    /// Speculative decoding's draft length K (0 without): a sequence may need `1 + K` logits
    /// rows in one step.
    pub num_speculative_tokens: usize,
    /// The longest sequence (`--max-model-len`).
    pub max_model_len: usize,
    /// Decode batch sizes to capture as graphs on a backend that replays them
    /// (`--cuda-graph-sizes`; empty: every step runs eagerly, `--enforce-eager`).
    pub graph_sizes: Vec<usize>,
}

pub struct Runner<B: Backend> {
    be: B,
    model: CausalLm<B>,
    ws: Workspace<B>,
    kv: B::Kv,
    pub num_blocks: usize,
    pub block_size: usize,
    meta: StepMeta,
    /// Decode batch sizes with a captured graph, ascending.
    graph_sizes: Vec<usize>,
    host_logits: Vec<f32>,
    /// Structured output's per-step mask cost.
    pub mask_stats: MaskStats,
}

/// The cost of structured output's token masks, over the steps that had a constrained sequence:
/// the time computing them (on a thread beside the forward) and the time the sampler still
/// waited for them after the forward finished (the part not hidden by the forward).
#[derive(Clone, Debug, Default)]
pub struct MaskStats {
    pub steps: u64,
    pub masks: u64,
    pub compute: std::time::Duration,
    pub waited: std::time::Duration,
}

impl MaskStats {
    fn record(&mut self, m: &ferrum_engine::sampling::StepMasks, waited: std::time::Duration) {
        let n = m.masks.iter().flatten().map(Vec::len).sum::<usize>() as u64;
        self.steps += 1;
        self.masks += n;
        self.compute += m.elapsed;
        self.waited += waited;
        tracing::debug!(
            masks = n,
            compute_us = m.elapsed.as_micros() as u64,
            waited_us = waited.as_micros() as u64,
            "structured output: step masks"
        );
        if self.steps.is_multiple_of(256) {
            tracing::info!(
                steps = self.steps,
                mean_compute_us = (self.compute.as_micros() as u64) / self.steps,
                mean_waited_us = (self.waited.as_micros() as u64) / self.steps,
                "structured output: mask cost per step"
            );
        }
        for (i, e) in &m.errors {
            tracing::warn!(seq = i, "structured output: mask failed: {e}");
        }
    }
}

impl RunnerLimits {
    /// The engine's own bounds (block size, step size, sequences) with an f32 cache of exactly
    /// `cfg.num_blocks` blocks (tests, and callers that size the cache themselves).
    pub fn from_engine(cfg: &ferrum_engine::EngineConfig) -> RunnerLimits {
        RunnerLimits {
            block_size: cfg.block_size,
            max_num_batched_tokens: cfg.max_num_batched_tokens,
            max_num_seqs: cfg.max_num_seqs,
            kv_dtype: KvDtype::F32,
            kv_cache_memory_bytes: None,
            num_blocks_override: Some(cfg.num_blocks),
            gpu_memory_utilization: None,
            num_speculative_tokens: cfg.speculative.map_or(0, |c| c.num_speculative_tokens),
            max_model_len: cfg.max_model_len,
            graph_sizes: Vec::new(),
        }
    }
}

/// Bytes one KV block takes across all layers.
pub fn kv_bytes_per_block(c: &ModelConfig, block_size: usize, dtype: KvDtype) -> usize {
    KvSpec {
        num_layers: c.num_layers,
        num_blocks: 1,
        block_size,
        kv_dim: c.kv_dim(),
        dtype,
    }
    .bytes()
}

/// Tokens per sequence of the profiling forward's step.
const PROFILE_SEQ: usize = 256;

/// One forward at the largest step (`--max-num-batched-tokens` tokens in sequences of
/// [`PROFILE_SEQ`], every logits row), over a one-block KV cache that every position maps to:
/// what the libraries allocate on first use is then in use when the KV cache is sized. Its
/// results are discarded.
fn profile_forward<B: Backend>(
    be: &mut B,
    model: &CausalLm<B>,
    ws: &mut Workspace<B>,
    lim: &RunnerLimits,
) -> Result<()> {
    let c = &model.cfg;
    let bs = lim.block_size;
    let t = lim.max_num_batched_tokens;
    let mut kv = be.alloc_kv(&KvSpec {
        num_layers: c.num_layers,
        num_blocks: 1,
        block_size: bs,
        kv_dim: c.kv_dim(),
        dtype: lim.kv_dtype,
    })?;
    // the step's tokens as sequences of PROFILE_SEQ: the activations are those of any step of t
    // tokens, without attention over t² pairs (seconds of start-up at 8192 tokens; attention
    // allocates nothing that grows with the context)
    let mut seqs = Vec::new();
    let mut entries = 0;
    for start in (0..t).step_by(PROFILE_SEQ) {
        let q_len = PROFILE_SEQ.min(t - start);
        let n = q_len.div_ceil(bs);
        seqs.push(AttnStepSeq {
            q_start: start,
            q_len,
            ctx_len: q_len,
            table: entries..entries + n,
        });
        entries += n;
    }
    let meta = StepMeta {
        tokens: vec![0; t],
        positions: (0..t).map(|p| p % PROFILE_SEQ).collect(),
        slots: (0..t).map(|p| p % bs).collect(),
        seqs,
        block_tables: vec![0; entries],
        block_size: bs,
    };
    let started = std::time::Instant::now();
    be.begin_step(&meta)?;
    model.forward(be, t, &mut kv, ws)?;
    let rows: Vec<usize> = (t.saturating_sub(ws.max_logits)..t).collect();
    model.logits(be, &rows, ws)?;
    // reading one value waits for the device and returns any error of the run
    be.read(&ws.logits, &mut [0f32; 1])?;
    tracing::info!(
        "profiling forward: {t} tokens and {} logits rows in {:.2?}",
        rows.len(),
        started.elapsed()
    );
    Ok(())
}

/// A decode step of `b` rows that reads the first `keys` positions of block 0 (every table
/// entry 0) and writes no K/V (slot `usize::MAX`): what a graph is captured over. The rows of a
/// real step smaller than its graph are padded the same way ([`pad_decode`]).
fn dummy_decode(b: usize, keys: usize, bs: usize) -> StepMeta {
    let entries = keys.div_ceil(bs);
    StepMeta {
        tokens: vec![0; b],
        positions: vec![keys - 1; b],
        slots: vec![usize::MAX; b],
        seqs: (0..b)
            .map(|i| AttnStepSeq {
                q_start: i,
                q_len: 1,
                ctx_len: keys,
                table: i * entries..(i + 1) * entries,
            })
            .collect(),
        block_tables: vec![0; b * entries],
        block_size: bs,
    }
}

/// Captures the decoder's forward for each decode batch size of `lim.graph_sizes` that fits the
/// limits: the step buffers are reserved first (their addresses are baked into the graphs), each
/// size runs once eagerly (so buffers that grow on first use are settled and every kernel the
/// graph records is loaded), then is recorded over a step that sees `--max-model-len` keys (so
/// split-KV's choice for long contexts is baked in). Only the first (smallest) size's eager run
/// sees the full context, which brings up split-KV's kernels and buffer; the others' see one
/// block, as an eager attention over every key of the context, for every size, took most of the
/// capture time (it grows with the context: 4.4 s of the 8B's start at 4k, 31.7 s of
/// Qwen3-30B-A3B's at 16k). A size whose capture fails (an op that cannot be captured, e.g. the
/// grouped MoE path's routing copy) stays eager, with a warning. Returns the sizes captured,
/// ascending.
fn capture_decode_graphs<B: Backend>(
    be: &mut B,
    model: &CausalLm<B>,
    ws: &mut Workspace<B>,
    kv: &mut B::Kv,
    lim: &RunnerLimits,
) -> Result<Vec<usize>> {
    let bs = lim.block_size;
    let per_seq = lim.max_model_len.div_ceil(bs) + 1;
    be.reserve_step(lim.max_num_batched_tokens, lim.max_num_seqs * per_seq)?;
    let mut sizes: Vec<usize> = lim
        .graph_sizes
        .iter()
        .copied()
        .filter(|&b| b >= 1 && b <= lim.max_num_seqs && b <= lim.max_num_batched_tokens)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let started = std::time::Instant::now();
    let mut eager = std::time::Duration::ZERO;
    let (mut captured, mut failed) = (Vec::new(), Vec::new());
    let mut first_error = None;
    let keys = lim.max_model_len.max(1);
    for (i, b) in sizes.into_iter().enumerate() {
        let full = dummy_decode(b, keys, bs);
        let t = std::time::Instant::now();
        if i == 0 {
            be.begin_step(&full)?;
        } else {
            be.begin_step(&dummy_decode(b, keys.min(bs), bs))?;
        }
        model.forward(be, b, kv, ws)?;
        be.begin_step(&full)?;
        eager += t.elapsed();
        be.capture_begin()?;
        let recorded = model.forward(be, b, kv, ws);
        match be.capture_end(b).and(recorded) {
            Ok(()) => captured.push(b),
            Err(e) => {
                failed.push(b);
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        tracing::warn!(
            "decode batches {failed:?} run eagerly: their graph capture failed (the first: {e:#})"
        );
    }
    tracing::info!(
        "captured {} decode graphs (batch sizes {:?}) in {:.2?} ({:.2?} of it their eager runs)",
        captured.len(),
        captured,
        started.elapsed(),
        eager
    );
    Ok(captured)
}

static GRAPH_REPLAYS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Decode steps run as graph replays in this process so far (tests check that graphs run).
pub fn graph_replays() -> u64 {
    GRAPH_REPLAYS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Pads a decode step (every sequence one new token, none with a draft) to `b` rows with rows
/// that write no K/V and read the first sequence's first key.
fn pad_decode(m: &mut StepMeta, b: usize) {
    let first = m.seqs[0].table.start;
    for i in m.tokens.len()..b {
        m.tokens.push(0);
        m.positions.push(0);
        m.slots.push(usize::MAX);
        m.seqs.push(AttnStepSeq {
            q_start: i,
            q_len: 1,
            ctx_len: 1,
            table: first..first + 1,
        });
    }
}

impl<B: Backend> Runner<B> {
    /// Preallocates the workspace for the largest step (on the CPU that is the forward's whole
    /// activation profile: it allocates nothing else), sizes the KV cache from the memory the
    /// limits allow, and allocates it.
    pub fn new(mut be: B, model: CausalLm<B>, lim: &RunnerLimits) -> Result<Runner<B>> {
        let c = &model.cfg;
        // room for one sequence's verification rows on top of one row per sequence
        let max_logits = lim.max_num_seqs + lim.num_speculative_tokens;
        let mut ws = Workspace::new(&be, &model, lim.max_num_batched_tokens, max_logits)?;
        let block_bytes = kv_bytes_per_block(c, lim.block_size, lim.kv_dtype) as u64;
        let num_blocks = match (lim.num_blocks_override, lim.kv_cache_memory_bytes) {
            (Some(n), _) => n,
            (None, Some(bytes)) => (bytes / block_bytes) as usize,
            (None, None) => {
                if be.profile_before_kv_sizing() {
                    profile_forward(&mut be, &model, &mut ws, lim)?;
                }
                (be.kv_cache_budget(lim.gpu_memory_utilization)? / block_bytes) as usize
            }
        };
        if num_blocks == 0 {
            bail!(
                "the KV cache holds no block: one block of {} tokens takes {block_bytes} bytes; raise --kv-cache-memory-bytes",
                lim.block_size
            );
        }
        let spec = KvSpec {
            num_layers: c.num_layers,
            num_blocks,
            block_size: lim.block_size,
            kv_dim: c.kv_dim(),
            dtype: lim.kv_dtype,
        };
        let mut kv = be.alloc_kv(&spec)?;
        if lim.kv_dtype == KvDtype::Fp8E4M3 {
            let scales = model.kv_scales();
            let from_checkpoint = scales.iter().filter(|s| s.is_some()).count();
            for (layer, s) in scales.into_iter().enumerate() {
                let (k, v) = s.unwrap_or((1.0, 1.0));
                be.set_kv_scales(&mut kv, layer, k, v)?;
            }
            tracing::info!(
                "fp8 KV cache: k/v scales from the checkpoint for {from_checkpoint} of {} layers, 1.0 elsewhere",
                c.num_layers
            );
        }
        let graph_sizes = if be.supports_graphs() && !lim.graph_sizes.is_empty() {
            capture_decode_graphs(&mut be, &model, &mut ws, &mut kv, lim)?
        } else {
            Vec::new()
        };
        let host_logits = ferrum_backend::host::committed_zeros(ws.max_logits * c.vocab_size);
        Ok(Runner {
            be,
            model,
            ws,
            kv,
            num_blocks,
            block_size: lim.block_size,
            meta: StepMeta::default(),
            graph_sizes,
            host_logits,
            mask_stats: MaskStats::default(),
        })
    }

    /// Decode batch sizes replayed from captured graphs.
    pub fn graph_sizes(&self) -> &[usize] {
        &self.graph_sizes
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    pub fn backend(&self) -> &B {
        &self.be
    }

    /// Flattens the step's new tokens (varlen) with positions, cache slots and block tables.
    fn prepare(&mut self, step: &StepBatch<'_>) -> Result<Vec<usize>> {
        let bs = self.block_size;
        let m = &mut self.meta;
        m.tokens.clear();
        m.positions.clear();
        m.slots.clear();
        m.seqs.clear();
        m.block_tables.clear();
        m.block_size = bs;
        let mut logits_rows = Vec::new();
        for s in &step.seqs {
            let q_start = m.tokens.len();
            let ctx_len = s.num_computed + s.num_fed();
            if s.block_table.len() < ctx_len.div_ceil(bs) {
                bail!(
                    "block table has {} blocks, {ctx_len} tokens need {}",
                    s.block_table.len(),
                    ctx_len.div_ceil(bs)
                );
            }
            m.tokens.extend_from_slice(s.new_tokens());
            m.tokens.extend_from_slice(s.draft);
            for pos in s.num_computed..ctx_len {
                m.positions.push(pos);
                m.slots
                    .push(s.block_table[pos / bs] as usize * bs + pos % bs);
            }
            let table = m.block_tables.len()..m.block_tables.len() + s.block_table.len();
            m.block_tables.extend_from_slice(s.block_table);
            m.seqs.push(AttnStepSeq {
                q_start,
                q_len: s.num_fed(),
                ctx_len,
                table,
            });
            for pos in s.prompt_logprob_positions() {
                logits_rows.push(q_start + pos - s.num_computed);
            }
            if s.sample {
                // the last new token, then every draft position (speculative decoding)
                let last = q_start + s.num_new - 1;
                logits_rows.extend(last..=last + s.draft.len());
            }
        }
        Ok(logits_rows)
    }
}

impl<B: Backend> Executor for Runner<B> {
    fn execute(&mut self, step: &StepBatch<'_>) -> Result<Vec<SeqStepOutput>> {
        let rows = self.prepare(step)?;
        let t = self.meta.tokens.len();
        // a decode step (one new token per sequence) with a captured graph of at least its size
        // replays the smallest such graph over padded metadata
        let decode = step.seqs.iter().all(|s| s.num_fed() == 1);
        let graph = decode
            .then(|| self.graph_sizes.iter().copied().find(|&b| b >= t))
            .flatten();
        if let Some(b) = graph {
            pad_decode(&mut self.meta, b);
            GRAPH_REPLAYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.be.begin_step(&self.meta)?;
        let vocab = self.model.cfg.vocab_size;
        // structured output: the grammar masks are computed on their own thread while the
        // forward runs, and joined before sampling
        let (fwd, masks, waited) = std::thread::scope(|sc| {
            let masks = (!step.matchers.is_empty())
                .then(|| sc.spawn(|| ferrum_engine::sampling::compute_masks(step, vocab)));
            let fwd = match graph {
                Some(b) => self.be.replay(b),
                None => self.model.forward(&self.be, t, &mut self.kv, &mut self.ws),
            };
            let t_join = std::time::Instant::now();
            let masks = masks.map(|h| h.join().unwrap_or_default());
            (fwd, masks.unwrap_or_default(), t_join.elapsed())
        });
        fwd?;
        if !step.matchers.is_empty() {
            self.mask_stats.record(&masks, waited);
        }
        let mask_rows: Vec<Option<Vec<&[u32]>>> = (0..step.seqs.len())
            .map(|i| masks.of(i).map(|m| m.iter().map(Vec::as_slice).collect()))
            .collect();
        let verify_masks: Vec<Vec<Option<&[u32]>>> = mask_rows
            .iter()
            .map(|m| m.iter().flatten().map(|&r| Some(r)).collect())
            .collect();
        // what each logits row is for, in the order `prepare` listed them
        let mut wants = Vec::with_capacity(rows.len());
        for (i, s) in step.seqs.iter().enumerate() {
            let k = s.params.prompt_logprobs.unwrap_or(0);
            for pos in s.prompt_logprob_positions() {
                wants.push(LogitsRow::Prompt {
                    target: s.tokens[pos + 1],
                    k,
                });
            }
            let mask = mask_rows[i].as_ref().and_then(|m| m.first().copied());
            if s.draft.is_empty() && s.sample {
                wants.push(match mask {
                    Some(mask) => LogitsRow::Constrained { seq: s, mask },
                    None => LogitsRow::Sample(s),
                });
            } else if s.sample {
                wants.push(LogitsRow::Verify {
                    seq: s,
                    masks: &verify_masks[i],
                });
            }
        }
        let mut results = Vec::with_capacity(wants.len());
        // chunks of at most `max_logits` rows that never split a verification's rows
        let (mut row0, mut want0) = (0, 0);
        while want0 < wants.len() {
            let (mut n_rows, mut n_wants) = (0, 0);
            while want0 + n_wants < wants.len() {
                let r = wants[want0 + n_wants].num_rows();
                if n_wants > 0 && n_rows + r > self.ws.max_logits {
                    break;
                }
                n_rows += r;
                n_wants += 1;
            }
            let chunk = &rows[row0..row0 + n_rows];
            let want = &wants[want0..want0 + n_wants];
            self.model.logits(&self.be, chunk, &mut self.ws)?;
            results.extend(
                self.be
                    .sample(&self.ws.logits, vocab, want, &mut self.host_logits)?,
            );
            row0 += n_rows;
            want0 += n_wants;
        }
        let mut results = results.into_iter();
        let mut outputs = Vec::with_capacity(step.seqs.len());
        for s in &step.seqs {
            let mut out = SeqStepOutput::default();
            for _ in s.prompt_logprob_positions() {
                match results.next() {
                    Some(RowOutput::Prompt(lp)) => out.prompt_logprobs.push(lp),
                    other => bail!("expected a prompt logprob row, got {other:?}"),
                }
            }
            if s.sample {
                match results.next() {
                    Some(RowOutput::Sampled(tok)) => out.tokens.push(tok),
                    Some(RowOutput::Verified(toks)) => out.tokens = toks,
                    other => bail!("expected a sampled row, got {other:?}"),
                }
            }
            outputs.push(out);
        }
        Ok(outputs)
    }
}
