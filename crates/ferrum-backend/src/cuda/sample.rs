//! Sampling on the device (`kernels/sample.cu`): a step whose rows all need nothing but
//! structured output's token bitmask, temperature, min-p, top-k, top-p and the draw
//! ([`needs_only_filters`]) uploads the bitmasks and copies back one token id per row; every other
//! step (logprobs, penalties, logit bias, allowed ids, pending `min_tokens`, speculative
//! verification, prompt logprobs) goes to the host reference sampler. The draw's uniform comes from the host ([`draw_uniform`]), so a seeded
//! request draws the same `u` on either backend.

use std::cell::RefCell;

use anyhow::{Context, Result, bail};
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use ferrum_engine::StepSeq;
use ferrum_engine::executor::Sampled;
use ferrum_engine::sampling::{draw_uniform, needs_only_filters};

use super::backend::{Arg, CudaBackend, CudaBuf};
use super::step::upload;
use crate::backend::{LogitsRow, RowOutput};

/// Per-row sampling parameters on the device, and the ids the kernels write.
#[derive(Default)]
pub(super) struct DeviceSampling {
    temperature: RefCell<Option<CudaSlice<f32>>>,
    top_k: RefCell<Option<CudaSlice<i32>>>,
    top_p: RefCell<Option<CudaSlice<f32>>>,
    min_p: RefCell<Option<CudaSlice<f32>>>,
    u: RefCell<Option<CudaSlice<f32>>>,
    masks: RefCell<Option<CudaSlice<u32>>>,
    ids: RefCell<Option<CudaSlice<u32>>>,
}

/// A row the device can sample: its sequence and its token bitmask, if constrained.
pub(super) type DeviceRow<'s, 'a> = (&'s StepSeq<'a>, Option<&'s [u32]>);

impl CudaBackend {
    /// Copies `data` into the buffer in `slot` (grown when too small); its device address.
    fn put<T: DeviceRepr + ValidAsZeroBits + Copy>(
        &self,
        slot: &RefCell<Option<CudaSlice<T>>>,
        data: &[T],
    ) -> Result<u64> {
        let mut s = slot.borrow_mut();
        upload(&self.stream, &mut s, data)?;
        Ok(self.ptr(s.as_ref().unwrap()))
    }

    /// The rows when every one can be sampled on the device.
    pub(super) fn device_rows<'a, 's>(
        rows: &'a [LogitsRow<'s, 'a>],
    ) -> Option<Vec<DeviceRow<'s, 'a>>> {
        if rows.is_empty() {
            return None;
        }
        rows.iter()
            .map(|r| match *r {
                LogitsRow::Sample(s) if needs_only_filters(s) => Some((s, None)),
                LogitsRow::Constrained { seq, mask } if needs_only_filters(seq) => {
                    Some((seq, Some(mask)))
                }
                _ => None,
            })
            .collect()
    }

    /// One token per row of `logits` (`vocab` wide), chosen on the device.
    pub(super) fn sample_on_device(
        &self,
        logits: &CudaBuf,
        vocab: usize,
        rows: &[DeviceRow<'_, '_>],
    ) -> Result<Vec<RowOutput>> {
        use Arg::{I, P};
        let n = rows.len();
        let seqs: Vec<&StepSeq<'_>> = rows.iter().map(|r| r.0).collect();
        let constrained = rows.iter().any(|r| r.1.is_some());
        let ds = &self.sampling;
        let ids = {
            let mut s = ds.ids.borrow_mut();
            if s.as_ref().is_none_or(|s| s.len() < n) {
                *s = Some(self.stream.alloc_zeros::<u32>(n.next_power_of_two())?);
            }
            self.ptr(s.as_ref().unwrap())
        };
        let lp = P(self.ptr(&logits.mem));
        if !constrained && seqs.iter().all(|s| s.params.is_greedy()) {
            let args = [lp, I(vocab as i32), P(ids)];
            self.launch("argmax_rows", Self::rows_cfg(n, 1024), &args)?;
        } else {
            let p = |f: fn(&StepSeq<'_>) -> f32| seqs.iter().map(|s| f(s)).collect::<Vec<f32>>();
            // greedy rows: temperature 0 (the kernel's argmax)
            let temperature = p(|s| {
                if s.params.is_greedy() {
                    0.0
                } else {
                    s.params.temperature
                }
            });
            let top_k: Vec<i32> = seqs.iter().map(|s| s.params.top_k).collect();
            // every row's bitmask (all ones where a row has none), or none at all
            let words = vocab.div_ceil(32);
            let masks = if constrained {
                let mut all = Vec::with_capacity(n * words);
                for (_, m) in rows {
                    match m {
                        Some(m) if m.len() == words => all.extend_from_slice(m),
                        Some(m) => bail!("a token bitmask of {} words for {vocab} logits", m.len()),
                        None => all.extend(std::iter::repeat_n(u32::MAX, words)),
                    }
                }
                self.put(&ds.masks, &all)?
            } else {
                0
            };
            let args = [
                lp,
                I(vocab as i32),
                P(self.put(&ds.temperature, &temperature)?),
                P(self.put(&ds.top_k, &top_k)?),
                P(self.put(&ds.top_p, &p(|s| s.params.top_p))?),
                P(self.put(&ds.min_p, &p(|s| s.params.min_p))?),
                P(self.put(&ds.u, &p(|s| draw_uniform(s) as f32))?),
                P(masks),
                I(words as i32),
                P(ids),
            ];
            self.launch("sample_rows", Self::rows_cfg(n, 1024), &args)?;
        }
        let slot = ds.ids.borrow();
        let out = self.stream.clone_dtoh(&slot.as_ref().unwrap().slice(..n))?;
        self.stream.synchronize().context("CUDA stream")?;
        Ok(out
            .into_iter()
            .map(|id| RowOutput::Sampled(Sampled { id, logprobs: None }))
            .collect())
    }
}
