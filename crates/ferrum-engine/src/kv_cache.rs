//! Per-request block tables on top of the [`BlockPool`], with prefix caching by chained block
//! hashes (vLLM v1's `KVCacheManager` for a single full-attention group).
//!
//! Only full blocks are cached, and a block is published as soon as it is allocated for the
//! tokens that fill it (like vLLM): a request scheduled later in the same step may hit it
//! (see the K/V ordering contract on [`crate::StepSeq`]). Because that publication precedes the
//! computation, freeing a request whose step never ran ([`KvCacheManager::free`] with its
//! pre-step computed count) withdraws the blocks it published but never computed.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::block_pool::{BlockHash, BlockPool};
use crate::executor::ReqId;

/// Hash of one full block given its parent's hash (`None` for the first block).
pub fn hash_block(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    let half = |salt: u64| {
        let mut s = DefaultHasher::new();
        salt.hash(&mut s);
        parent.hash(&mut s);
        tokens.hash(&mut s);
        s.finish()
    };
    BlockHash(((half(0x9e37_79b9_7f4a_7c15) as u128) << 64) | half(0x5851_f42d_4c95_7f2d) as u128)
}

/// Extends `hashes` to cover every full block of `tokens` (call after tokens grow).
pub fn extend_block_hashes(hashes: &mut Vec<BlockHash>, tokens: &[u32], block_size: usize) {
    let full = tokens.len() / block_size;
    while hashes.len() < full {
        let i = hashes.len();
        let parent = i.checked_sub(1).map(|p| hashes[p]);
        hashes.push(hash_block(
            parent,
            &tokens[i * block_size..(i + 1) * block_size],
        ));
    }
}

#[derive(Debug, Default)]
struct ReqBlocks {
    blocks: Vec<u32>,
    /// Leading blocks already published in the prefix index (or found there).
    num_cached: usize,
}

#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    enable_caching: bool,
    tables: HashMap<ReqId, ReqBlocks>,
    prefix_queries: u64,
    prefix_hits: u64,
}

impl KvCacheManager {
    pub fn new(num_blocks: usize, block_size: usize, enable_caching: bool) -> Self {
        assert!(block_size > 0);
        Self {
            pool: BlockPool::new(num_blocks),
            block_size,
            enable_caching,
            tables: HashMap::new(),
            prefix_queries: 0,
            prefix_hits: 0,
        }
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn caching_enabled(&self) -> bool {
        self.enable_caching
    }

    /// The request's blocks in order (empty if it holds none).
    pub fn block_table(&self, id: ReqId) -> &[u32] {
        self.tables.get(&id).map_or(&[], |t| &t.blocks)
    }

    /// Every request currently holding blocks.
    pub fn holders(&self) -> impl Iterator<Item = (ReqId, &[u32])> {
        self.tables.iter().map(|(&id, t)| (id, t.blocks.as_slice()))
    }

    /// (prefix_cache_queries, prefix_cache_hits) in tokens, as vLLM's metrics count them.
    pub fn prefix_cache_stats(&self) -> (u64, u64) {
        (self.prefix_queries, self.prefix_hits)
    }

    /// Longest run of cached leading blocks for a sequence of `num_tokens` tokens whose full
    /// blocks hash to `hashes`. At most `(num_tokens - 1) / block_size` blocks: the last token
    /// is always recomputed so the step has logits to sample from. Takes no references.
    pub fn computed_blocks(&self, hashes: &[BlockHash], num_tokens: usize) -> (Vec<u32>, usize) {
        if !self.enable_caching || num_tokens == 0 {
            return (Vec::new(), 0);
        }
        let max_blocks = (num_tokens - 1) / self.block_size;
        let hits: Vec<u32> = hashes
            .iter()
            .take(max_blocks)
            .map_while(|&h| self.pool.cached_block(h))
            .collect();
        let n = hits.len() * self.block_size;
        (hits, n)
    }

    /// Counts one lookup in the prefix-cache metrics (called once a request is admitted).
    pub fn record_prefix_query(&mut self, num_tokens: usize, num_hit_tokens: usize) {
        self.prefix_queries += num_tokens as u64;
        self.prefix_hits += num_hit_tokens as u64;
    }

    /// Makes room for `num_new` more tokens after `num_computed` computed ones. For a request
    /// holding no blocks yet, `hits` are the prefix-cache blocks found by
    /// [`Self::computed_blocks`] (already counted in `num_computed`). Publishes the blocks that
    /// become full. Returns false, changing nothing, when the pool cannot supply the blocks.
    pub fn allocate_slots(
        &mut self,
        id: ReqId,
        hashes: &[BlockHash],
        num_computed: usize,
        num_new: usize,
        hits: &[u32],
    ) -> bool {
        let have = self.tables.get(&id).map_or(0, |t| t.blocks.len());
        debug_assert!(
            hits.is_empty() || have == 0,
            "prefix hits for a running request"
        );
        let total_tokens = num_computed + num_new;
        let required = total_tokens.div_ceil(self.block_size);
        let need = required.saturating_sub(have + hits.len());
        // Hit blocks sitting in the free list stop being free once touched.
        let evictable_hits = hits
            .iter()
            .filter(|&&b| self.pool.ref_count(b) == 0)
            .count();
        if need + evictable_hits > self.pool.num_free() {
            return false;
        }
        self.pool.touch(hits);
        let new = self.pool.allocate(need).expect("checked free count");
        let table = self.tables.entry(id).or_insert_with(|| ReqBlocks {
            blocks: Vec::new(),
            num_cached: hits.len(),
        });
        table.blocks.extend_from_slice(hits);
        table.blocks.extend(new);
        if self.enable_caching {
            let full = total_tokens / self.block_size;
            while table.num_cached < full {
                let i = table.num_cached;
                let Some(&h) = hashes.get(i) else { break };
                self.pool.cache(table.blocks[i], h);
                table.num_cached += 1;
            }
        }
        true
    }

    /// Keeps only the blocks holding the first `num_tokens` tokens (speculative decoding's
    /// rollback of rejected drafts); the rest go back to the pool, last first. A returned block
    /// that was published is withdrawn (the scheduler never publishes draft blocks).
    pub fn truncate(&mut self, id: ReqId, num_tokens: usize) {
        let keep = num_tokens.div_ceil(self.block_size);
        let Some(t) = self.tables.get_mut(&id) else {
            return;
        };
        if t.blocks.len() <= keep {
            return;
        }
        let tail = t.blocks.split_off(keep);
        for &b in tail.iter().take(t.num_cached.saturating_sub(keep)) {
            self.pool.uncache(b);
        }
        t.num_cached = t.num_cached.min(keep);
        self.pool.free(tail.iter().rev().copied());
    }

    /// Releases the request's blocks, last block first so its tail is evicted before its
    /// (more shareable) head. `num_valid_tokens` is how many tokens' K/V really were
    /// computed; blocks from `num_valid_tokens / block_size` on that this request published
    /// are withdrawn from the prefix index (a failed or unscheduled step never filled them).
    pub fn free(&mut self, id: ReqId, num_valid_tokens: usize) {
        let Some(t) = self.tables.remove(&id) else {
            return;
        };
        let first_invalid = num_valid_tokens / self.block_size;
        for &b in t.blocks.iter().take(t.num_cached).skip(first_invalid) {
            self.pool.uncache(b);
        }
        self.pool.free(t.blocks.iter().rev().copied());
    }

    /// Checks the pool and that every block's ref count equals the number of tables holding it.
    pub fn check(&self) -> Result<(), String> {
        self.pool.check()?;
        let mut refs = vec![0u32; self.pool.num_blocks()];
        for t in self.tables.values() {
            for &b in &t.blocks {
                refs[b as usize] += 1;
            }
        }
        for (b, &r) in refs.iter().enumerate() {
            if self.pool.ref_count(b as u32) != r {
                return Err(format!(
                    "block {b}: ref count {} but {r} block tables hold it",
                    self.pool.ref_count(b as u32)
                ));
            }
        }
        Ok(())
    }
}
