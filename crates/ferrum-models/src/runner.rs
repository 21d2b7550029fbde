//! The CPU runner: the engine's [`Executor`] over a [`Decoder`] and its paged K/V storage. It
//! flattens a scheduled step into one varlen [`ForwardBatch`], runs the forward once, and samples
//! each sequence from its own logits row (prompt logprobs from the rows before it).

use crate::batch::{ForwardBatch, SeqSpan};
use crate::decoder::Decoder;
use crate::kv_cache::KvCache;
use anyhow::Result;
use ferrum_engine::{Executor, SeqStepOutput, StepBatch, sample, token_logprobs};

pub struct CpuRunner {
    decoder: Decoder,
    kv: KvCache,
}

impl CpuRunner {
    pub fn new(decoder: Decoder, num_blocks: usize, block_size: usize) -> CpuRunner {
        let kv = KvCache::new(&decoder.cfg, num_blocks, block_size);
        CpuRunner { decoder, kv }
    }
}

impl Executor for CpuRunner {
    fn execute(&mut self, step: &StepBatch<'_>) -> Result<Vec<SeqStepOutput>> {
        let mut batch = ForwardBatch {
            tokens: Vec::new(),
            seqs: Vec::new(),
            logits_rows: Vec::new(),
        };
        for s in &step.seqs {
            let q_start = batch.tokens.len();
            batch.tokens.extend_from_slice(s.new_tokens());
            batch.seqs.push(SeqSpan {
                q_start,
                q_len: s.num_new,
                ctx_len: s.num_computed + s.num_new,
                block_table: s.block_table,
            });
            for pos in s.prompt_logprob_positions() {
                batch.logits_rows.push(q_start + pos - s.num_computed);
            }
            if s.sample {
                batch.logits_rows.push(q_start + s.num_new - 1);
            }
        }
        let mut logits = self.decoder.forward(&batch, &mut self.kv)?;
        let vocab = self.decoder.cfg.vocab_size;
        let mut rows = logits.chunks_mut(vocab);
        let mut outputs = Vec::with_capacity(step.seqs.len());
        for s in &step.seqs {
            let k = s.params.prompt_logprobs.unwrap_or(0);
            let prompt_logprobs = s
                .prompt_logprob_positions()
                .map(|pos| {
                    token_logprobs(
                        rows.next().expect("one row per prompt position"),
                        s.tokens[pos + 1],
                        k,
                    )
                })
                .collect();
            let token = s
                .sample
                .then(|| sample(rows.next().expect("one row per sampled sequence"), s));
            outputs.push(SeqStepOutput {
                token,
                prompt_logprobs,
            });
        }
        Ok(outputs)
    }
}
