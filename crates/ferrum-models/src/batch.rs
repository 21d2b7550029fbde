//! The varlen batch a forward runs on: every scheduled sequence's new tokens flattened into one
//! list, with the paged-cache block table that says where each sequence's K/V live.

/// One sequence's slice of the batch.
pub struct SeqSpan<'a> {
    /// Index of its first new token in `ForwardBatch::tokens`.
    pub q_start: usize,
    /// New tokens this step (a prefill chunk, or 1 for decode).
    pub q_len: usize,
    /// Tokens in context once this step's are written: the new ones are positions `ctx_len - q_len ..`.
    pub ctx_len: usize,
    /// Physical cache blocks holding positions `0..ctx_len`, in order.
    pub block_table: &'a [u32],
}

pub struct ForwardBatch<'a> {
    pub tokens: Vec<u32>,
    pub seqs: Vec<SeqSpan<'a>>,
    /// Flattened token indices whose next-token logits the caller wants, in output order.
    pub logits_rows: Vec<usize>,
}

impl<'a> ForwardBatch<'a> {
    /// Position of every flattened token.
    pub fn positions(&self) -> Vec<usize> {
        let mut p = vec![0; self.tokens.len()];
        for s in &self.seqs {
            for i in 0..s.q_len {
                p[s.q_start + i] = s.ctx_len - s.q_len + i;
            }
        }
        p
    }

    /// Cache slot of every flattened token: `block_table[pos / block_size] * block_size + pos % block_size`.
    pub fn slots(&self, block_size: usize) -> anyhow::Result<Vec<usize>> {
        let mut slots = vec![0; self.tokens.len()];
        for s in &self.seqs {
            let needed = s.ctx_len.div_ceil(block_size);
            if s.block_table.len() < needed {
                anyhow::bail!(
                    "block table has {} blocks, {} tokens need {needed}",
                    s.block_table.len(),
                    s.ctx_len
                );
            }
            for i in 0..s.q_len {
                let pos = s.ctx_len - s.q_len + i;
                slots[s.q_start + i] =
                    s.block_table[pos / block_size] as usize * block_size + pos % block_size;
            }
        }
        Ok(slots)
    }
}
