//! Sampling on the device (`kernels/sample.cu`), by the host reference sampler's rules
//! (`ferrum_engine::sampling`), so that a step copies back token ids, and the logprobs a row asked
//! for, instead of whole rows of logits:
//! - rows that need only temperature, min-p, top-k, top-p and the draw (after structured
//!   output's bitmask) are sampled straight from the logits;
//! - when a row needs a processor that reads more than its row ([`needs_processors`]: allowed ids,
//!   logit bias, a pending `min_tokens`, penalties), the step's rows are processed into f32 copies,
//!   [`PROCESS_CHUNK`] rows at a time, and sampled from those;
//! - logprobs and prompt logprobs are scored on the device from the raw logits.
//!
//! Greedy speculative verification without processors takes each row's argmax on the device;
//! other verification, and logprobs wider than [`DEVICE_MAX_LOGPROBS`], go to the host. The
//! draw's uniform comes from the host ([`draw_uniform`]), so a seeded request draws the same `u` on
//! either backend.

use std::cell::RefCell;

use anyhow::{Context, Result, bail};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, ValidAsZeroBits};
use ferrum_engine::executor::{Sampled, TokenLogprobs};
use ferrum_engine::sampling::processors::min_tokens_banned;
use ferrum_engine::sampling::{draw_uniform, is_plain_argmax, needs_processors};
use ferrum_engine::{SamplingParams, StepSeq};

use super::backend::{Arg, CudaBackend, CudaBuf};
use super::step::{grow, upload};
use crate::backend::{LogitsRow, RowOutput};

/// The most top logprobs a row may ask for and still be scored on the device: each one is a
/// pass over the row (vLLM's default `max_logprobs` is 20).
pub(super) const DEVICE_MAX_LOGPROBS: usize = 64;

/// Rows processed per launch: the f32 copies they are written to take `vocab × 4` bytes each, so
/// this bounds the scratch (20 MB at a 152k vocabulary) that the KV-cache sizing leaves room for.
const PROCESS_CHUNK: usize = 32;

/// Blocks a row of the temperature-only sampler takes (`SAMPLE_CHUNKS` in sample.cu).
const SAMPLE_CHUNKS: usize = 64;

type Slot<T> = RefCell<Option<CudaSlice<T>>>;

/// The device buffers of sampling: inputs uploaded per step and the outputs the kernels write.
#[derive(Default)]
pub(super) struct DeviceSampling {
    temperature: Slot<f32>,
    top_k: Slot<i32>,
    top_p: Slot<f32>,
    min_p: Slot<f32>,
    u: Slot<f32>,
    masks: Slot<u32>,
    allowed: Slot<u32>,
    sample_rows: Slot<i32>,
    chunk_part: Slot<f32>,
    edit_off: Slot<i32>,
    edit_tok: Slot<u32>,
    edit_bias: Slot<f32>,
    edit_count: Slot<i32>,
    penalties: Slot<f32>,
    processed: Slot<f32>,
    score_rows: Slot<i32>,
    ks: Slot<i32>,
    ids: Slot<u32>,
    lp: Slot<f32>,
    rank: Slot<i32>,
    top_ids: Slot<u32>,
    top_lps: Slot<f32>,
}

/// A row to sample: its logits row, its sequence and its token bitmask, if constrained.
struct SampleRow<'s, 'a> {
    row: usize,
    seq: &'s StepSeq<'a>,
    mask: Option<&'s [u32]>,
}

/// The per-token edits of one row's processors, by token: the logit bias, and how often the token
/// is in the output (`-1`: not seen; `0`: in the prompt only; counted only when a penalty applies),
/// in the layout `process_rows` reads.
#[derive(Default)]
struct Edits {
    off: Vec<i32>,
    tok: Vec<u32>,
    bias: Vec<f32>,
    count: Vec<i32>,
}

impl Edits {
    fn push_row(&mut self, seq: &StepSeq<'_>) {
        let p = seq.params;
        let (prompt, output) = seq.tokens.split_at(seq.num_prompt_tokens);
        let mut e: Vec<(u32, f32, i32)> = p.logit_bias.iter().map(|&(t, b)| (t, b, -1)).collect();
        if p.repetition_penalty != 1.0 {
            e.extend(prompt.iter().map(|&t| (t, 0.0, 0)));
        }
        if p.repetition_penalty != 1.0 || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            e.extend(output.iter().map(|&t| (t, 0.0, 1)));
        }
        // stable: a token's biases stay in the request's order
        e.sort_by_key(|x| x.0);
        if self.off.is_empty() {
            self.off.push(0);
        }
        for run in e.chunk_by(|a, b| a.0 == b.0) {
            self.tok.push(run[0].0);
            self.bias.push(run.iter().map(|x| x.1).sum());
            let seen = run.iter().any(|x| x.2 >= 0);
            let count: i32 = run.iter().map(|x| x.2.max(0)).sum();
            self.count.push(if seen { count } else { -1 });
        }
        self.off.push(self.tok.len() as i32);
    }
}

/// The mask of tokens a row may take after allowed ids and `min_tokens` (all ones: no limit).
fn allowed_mask(seq: &StepSeq<'_>, vocab: usize, out: &mut Vec<u32>) {
    let p = seq.params;
    let words = vocab.div_ceil(32);
    let start = out.len();
    let clear = |out: &mut Vec<u32>, t: u32| {
        if (t as usize) < vocab {
            out[start + t as usize / 32] &= !(1 << (t % 32));
        }
    };
    match &p.allowed_token_ids {
        Some(ids) => {
            out.resize(start + words, 0);
            for &t in ids.iter().filter(|&&t| (t as usize) < vocab) {
                out[start + t as usize / 32] |= 1 << (t % 32);
            }
        }
        None => out.resize(start + words, u32::MAX),
    }
    let banned = min_tokens_banned(
        seq.num_output_tokens(),
        p.min_tokens,
        &p.stop_token_ids,
        seq.eos_token_ids,
        p.ignore_eos,
    );
    for t in banned {
        clear(out, t);
    }
}

/// Greedy verification of `draft` from each verified row's argmax (`argmax[j]`: the row after
/// `draft[..j]`), as the host's `verify` without processors: the drafts up to the first that
/// differs from its row's argmax, then that argmax (or, all accepted, the last row's).
fn accept_greedy(draft: &[u32], argmax: &[u32]) -> Vec<Sampled> {
    let mut out = Vec::with_capacity(argmax.len());
    for (j, &id) in argmax.iter().enumerate() {
        out.push(Sampled { id, logprobs: None });
        if draft.get(j) != Some(&id) {
            break;
        }
    }
    out
}

/// Whether every row can be sampled (or scored) on the device.
pub(super) fn all_on_device(rows: &[LogitsRow<'_, '_>]) -> bool {
    let fits = |k: Option<usize>| k.is_none_or(|k| k <= DEVICE_MAX_LOGPROBS);
    !rows.is_empty()
        && rows.iter().all(|r| match *r {
            LogitsRow::Prompt { k, .. } => fits(Some(k)),
            LogitsRow::Sample(seq) | LogitsRow::Constrained { seq, .. } => {
                fits(seq.params.logprobs)
            }
            LogitsRow::Verify { seq, masks } => {
                is_plain_argmax(seq) && masks.iter().all(Option::is_none)
            }
        })
}

impl CudaBackend {
    /// Copies `data` into the buffer in `slot` (grown when too small); its device address.
    fn put<T: DeviceRepr + ValidAsZeroBits + Copy>(
        &self,
        slot: &Slot<T>,
        data: &[T],
    ) -> Result<u64> {
        let mut s = slot.borrow_mut();
        upload(&self.stream, &mut s, data)?;
        Ok(self.ptr(s.as_ref().unwrap()))
    }

    /// The address of the buffer in `slot`, grown to hold at least `len` values.
    fn scratch<T: DeviceRepr + ValidAsZeroBits>(&self, slot: &Slot<T>, len: usize) -> Result<u64> {
        let mut s = slot.borrow_mut();
        grow(&self.stream, &mut s, len)?;
        Ok(self.ptr(s.as_ref().unwrap()))
    }

    /// The first `len` values of the buffer in `slot`, on the host (not yet synchronized).
    fn fetch<T: DeviceRepr + Default + Clone>(&self, slot: &Slot<T>, len: usize) -> Result<Vec<T>> {
        match slot.borrow().as_ref() {
            Some(s) if len > 0 => Ok(self.stream.clone_dtoh(&s.slice(..len))?),
            _ => Ok(Vec::new()),
        }
    }

    /// One output per row of `logits` (`vocab` wide), chosen or scored on the device
    /// ([`all_on_device`] holds for `rows`).
    pub(super) fn sample_on_device(
        &self,
        logits: &CudaBuf,
        vocab: usize,
        rows: &[LogitsRow<'_, '_>],
    ) -> Result<Vec<RowOutput>> {
        // logits rows: one per entry, or a verification's `1 + drafts`
        let n: usize = rows.iter().map(LogitsRow::num_rows).sum();
        let ds = &self.sampling;
        let words = vocab.div_ceil(32);
        let mut samples = Vec::new();
        // (logits row, k) of every row whose logprobs are wanted
        let mut scored: Vec<(usize, usize)> = Vec::new();
        let mut targets = vec![0u32; n];
        let mut row = 0;
        for r in rows {
            let at = row;
            row += r.num_rows();
            let (seq, mask) = match *r {
                LogitsRow::Prompt { target, k } => {
                    targets[at] = target;
                    scored.push((at, k));
                    continue;
                }
                LogitsRow::Sample(seq) => (seq, None),
                LogitsRow::Constrained { seq, mask } => {
                    if mask.len() != words {
                        bail!("a token bitmask of {} words for {vocab} logits", mask.len());
                    }
                    (seq, Some(mask))
                }
                // greedy without processors ([`all_on_device`]): each row's argmax
                LogitsRow::Verify { seq, .. } => {
                    samples.extend((at..row).map(|row| SampleRow {
                        row,
                        seq,
                        mask: None,
                    }));
                    continue;
                }
            };
            if let Some(k) = seq.params.logprobs {
                scored.push((at, k));
            }
            samples.push(SampleRow { row: at, seq, mask });
        }
        // token ids by logits row: prompt rows hold their target, sampled rows get their draw
        let ids = if rows.iter().any(|r| matches!(r, LogitsRow::Prompt { .. })) {
            self.put(&ds.ids, &targets)?
        } else {
            self.scratch(&ds.ids, n)?
        };
        // structured output's bitmasks by logits row (all ones where a row has none), or none
        let masks = if samples.iter().any(|s| s.mask.is_some()) {
            let mut all = vec![u32::MAX; n * words];
            for s in &samples {
                if let Some(m) = s.mask {
                    all[s.row * words..][..words].copy_from_slice(m);
                }
            }
            self.put(&ds.masks, &all)?
        } else {
            0
        };
        if !samples.is_empty() {
            self.draw_on_device(logits, vocab, &samples, masks, ids)?;
        }
        // the widest top-k asked for: each scored row's slots in the top-k outputs
        let kmax = scored.iter().map(|s| s.1).max().unwrap_or(0).max(1);
        if !scored.is_empty() {
            self.score_on_device(logits, vocab, &scored, kmax, masks, ids)?;
        }
        let ids = self.fetch(&ds.ids, n)?;
        let lp = self.fetch(&ds.lp, scored.len())?;
        let rank = self.fetch(&ds.rank, scored.len())?;
        let top_ids = self.fetch(&ds.top_ids, scored.len() * kmax)?;
        let top_lps = self.fetch(&ds.top_lps, scored.len() * kmax)?;
        self.stream.synchronize().context("CUDA stream")?;
        let mut logprobs: Vec<Option<TokenLogprobs>> = vec![None; n];
        for (j, &(row, k)) in scored.iter().enumerate() {
            let top = (0..k.min(vocab))
                .map(|q| (top_ids[j * kmax + q], top_lps[j * kmax + q]))
                .collect();
            logprobs[row] = Some(TokenLogprobs {
                token_id: ids[row],
                logprob: lp[j],
                rank: rank[j] as usize,
                top,
            });
        }
        let mut row = 0;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let at = row;
            row += r.num_rows();
            out.push(match r {
                LogitsRow::Prompt { .. } => RowOutput::Prompt(logprobs[at].take().expect("scored")),
                LogitsRow::Verify { seq, .. } => {
                    RowOutput::Verified(accept_greedy(seq.draft, &ids[at..row]))
                }
                _ => RowOutput::Sampled(Sampled {
                    id: ids[at],
                    logprobs: logprobs[at].take(),
                }),
            });
        }
        Ok(out)
    }

    /// Draws a token for each of `samples` into `ids` (by logits row).
    fn draw_on_device(
        &self,
        logits: &CudaBuf,
        vocab: usize,
        samples: &[SampleRow<'_, '_>],
        masks: u64,
        ids: u64,
    ) -> Result<()> {
        use Arg::{I, P};
        let ds = &self.sampling;
        let n = samples.len();
        let words = vocab.div_ceil(32);
        let lp = P(self.ptr(&logits.mem));
        let processed = samples.iter().any(|s| needs_processors(s.seq));
        // the logits row of each sample: none (the kernels' identity) when every row samples in
        // order, as in a plain decode step, which then uploads no index
        let identity = samples.iter().enumerate().all(|(j, s)| s.row == j);
        let rows = if identity && !processed {
            0
        } else {
            let rows: Vec<i32> = samples.iter().map(|s| s.row as i32).collect();
            self.put(&ds.sample_rows, &rows)?
        };
        let all_greedy = samples.iter().all(|s| s.seq.params.is_greedy());
        if !processed && masks == 0 && all_greedy {
            let args = [lp, I(vocab as i32), P(rows), P(rows), P(ids)];
            return self.launch("argmax_rows", Self::rows_cfg(n, 1024), &args);
        }
        let params: Vec<&SamplingParams> = samples.iter().map(|s| s.seq.params).collect();
        let f = |g: fn(&SamplingParams) -> f32| params.iter().map(|p| g(p)).collect::<Vec<f32>>();
        // greedy rows: temperature 0 (the kernel's argmax)
        let temperature = f(|p| if p.is_greedy() { 0.0 } else { p.temperature });
        let u: Vec<f32> = samples.iter().map(|s| draw_uniform(s.seq) as f32).collect();
        // temperature only (vLLM's and the OpenAI API's defaults): the row spread over blocks
        let plain = |p: &&SamplingParams| !p.is_greedy() && !p.truncates(vocab);
        if !processed && params.iter().all(plain) {
            let t = self.put(&ds.temperature, &temperature)?;
            let u = self.put(&ds.u, &u)?;
            return self.draw_plain(lp, vocab, n, rows, [t, u], masks, ids);
        }
        let top_k: Vec<i32> = params.iter().map(|p| p.top_k).collect();
        let filters = [
            self.put(&ds.temperature, &temperature)?,
            self.put(&ds.top_k, &top_k)?,
            self.put(&ds.top_p, &f(|p| p.top_p))?,
            self.put(&ds.min_p, &f(|p| p.min_p))?,
            self.put(&ds.u, &u)?,
        ];
        // the filters' arguments from row `j` of this call on (4-byte values)
        let filters_from = |j: usize| filters.map(|a| P(a + 4 * j as u64));
        if !processed {
            let [t, k, p, m, u] = filters_from(0);
            let args = [lp, I(vocab as i32), P(rows), P(rows), t, k, p, m, u];
            let tail = [P(masks), I(words as i32), P(ids)];
            let args: Vec<Arg> = args.into_iter().chain(tail).collect();
            return self.launch("sample_rows", Self::rows_cfg(n, 1024), &args);
        }
        let mut edits = Edits::default();
        let mut penalties = Vec::with_capacity(3 * n);
        let mut allowed = Vec::new();
        let limits = samples.iter().any(|s| {
            let p = s.seq.params;
            p.allowed_token_ids.is_some() || s.seq.num_output_tokens() < p.min_tokens
        });
        for s in samples {
            edits.push_row(s.seq);
            let p = s.seq.params;
            penalties.extend([
                p.repetition_penalty,
                p.frequency_penalty,
                p.presence_penalty,
            ]);
            if limits {
                allowed_mask(s.seq, vocab, &mut allowed);
            }
        }
        let edit_off = self.put(&ds.edit_off, &edits.off)?;
        let edit_args = [
            P(self.put(&ds.edit_tok, &edits.tok)?),
            P(self.put(&ds.edit_bias, &edits.bias)?),
            P(self.put(&ds.edit_count, &edits.count)?),
        ];
        let penalties = self.put(&ds.penalties, &penalties)?;
        let allowed = if limits {
            self.put(&ds.allowed, &allowed)?
        } else {
            0
        };
        let out = self.scratch(&ds.processed, PROCESS_CHUNK.min(n) * vocab)?;
        for j0 in (0..n).step_by(PROCESS_CHUNK) {
            let c = PROCESS_CHUNK.min(n - j0);
            let at = |base: u64, per_row: usize| P(base + (4 * per_row * j0) as u64);
            let allowed = if limits { at(allowed, words) } else { P(0) };
            let head = [lp, I(vocab as i32), at(rows, 1), P(masks), allowed];
            let tail = [I(words as i32), at(edit_off, 1)];
            let args: Vec<Arg> = (head.into_iter().chain(tail).chain(edit_args))
                .chain([at(penalties, 3), P(out)])
                .collect();
            self.launch("process_rows", Self::rows_cfg(c, 1024), &args)?;
            let [t, k, p, m, u] = filters_from(j0);
            let args = [P(out), I(vocab as i32), P(0), at(rows, 1), t, k, p, m, u];
            let tail = [P(0), I(words as i32), P(ids)];
            let args: Vec<Arg> = args.into_iter().chain(tail).collect();
            self.launch("sample_processed", Self::rows_cfg(c, 1024), &args)?;
        }
        Ok(())
    }

    /// Draws for `n` temperature-only rows of `logits` (`lp`; logits row `rows[b]`, none: b) into
    /// `ids`, each row over SAMPLE_CHUNKS blocks: `sample_chunks` (each chunk's max, mass and last
    /// token with mass), then `sample_pick` (the chunk that holds the draw, walked in id order).
    /// `tu`: the rows' temperatures and uniforms on the device.
    #[allow(clippy::too_many_arguments)]
    fn draw_plain(
        &self,
        lp: Arg,
        vocab: usize,
        n: usize,
        rows: u64,
        tu: [u64; 2],
        masks: u64,
        ids: u64,
    ) -> Result<()> {
        use Arg::{I, P};
        let words = I(vocab.div_ceil(32) as i32);
        let part = P(self.scratch(&self.sampling.chunk_part, n * SAMPLE_CHUNKS * 3)?);
        let [t, u] = tu.map(P);
        let chunks = LaunchConfig {
            grid_dim: (n as u32, SAMPLE_CHUNKS as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = [lp, I(vocab as i32), P(rows), t, P(masks), words, part];
        self.launch("sample_chunks", chunks, &args)?;
        let args = [
            lp,
            I(vocab as i32),
            P(rows),
            P(rows),
            t,
            u,
            P(masks),
            words,
            part,
            P(ids),
        ];
        self.launch("sample_pick", Self::rows_cfg(n, 1024), &args)
    }

    /// The raw logprobs of `scored` rows (logits row, top k) for the tokens in `ids`, `kmax`
    /// top-k slots a row.
    fn score_on_device(
        &self,
        logits: &CudaBuf,
        vocab: usize,
        scored: &[(usize, usize)],
        kmax: usize,
        masks: u64,
        ids: u64,
    ) -> Result<()> {
        use Arg::{I, P};
        let ds = &self.sampling;
        let n = scored.len();
        let rows: Vec<i32> = scored.iter().map(|s| s.0 as i32).collect();
        let ks: Vec<i32> = scored.iter().map(|s| s.1 as i32).collect();
        let args = [
            P(self.ptr(&logits.mem)),
            I(vocab as i32),
            P(self.put(&ds.score_rows, &rows)?),
            P(masks),
            I(vocab.div_ceil(32) as i32),
            P(ids),
            P(self.put(&ds.ks, &ks)?),
            I(kmax as i32),
            P(self.scratch(&ds.lp, n)?),
            P(self.scratch(&ds.rank, n)?),
            P(self.scratch(&ds.top_ids, n * kmax)?),
            P(self.scratch(&ds.top_lps, n * kmax)?),
        ];
        self.launch("score_rows", Self::rows_cfg(n, 1024), &args)
    }
}
