//! The physical KV-cache blocks: ref counts, the free list and the prefix-cache index.
//!
//! The free list is doubly linked through block indices (`prev`/`next` arrays), so a cached
//! block that gets a prefix hit can be pulled out of the middle in O(1). Allocation pops from
//! the head; freeing appends to the tail. Free blocks keep their hash until they are popped,
//! which makes the free list an LRU of cached blocks: the head is evicted first.
//!
//! Invariants (see [`BlockPool::check`]): a block is in the free list iff its ref count is 0;
//! `num_free + num_used == num_blocks`; `block.hash == Some(h)` iff `cached[h] == block`.

use std::collections::HashMap;

/// Chained hash of a full block: it covers the block's tokens and, through the parent hash,
/// every token before it. 128 bits so that accidental collisions (which would silently feed
/// the wrong K/V) are out of reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u128);

const NIL: u32 = u32::MAX;

#[derive(Clone, Debug)]
struct Block {
    ref_cnt: u32,
    hash: Option<BlockHash>,
    prev: u32,
    next: u32,
}

#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<Block>,
    head: u32,
    tail: u32,
    num_free: usize,
    cached: HashMap<BlockHash, u32>,
}

impl BlockPool {
    /// All blocks start free, in id order (so the first allocation gets 0, 1, 2, ...).
    pub fn new(num_blocks: usize) -> Self {
        assert!(num_blocks > 0 && num_blocks < NIL as usize);
        let n = num_blocks as u32;
        let blocks = (0..n)
            .map(|i| Block {
                ref_cnt: 0,
                hash: None,
                prev: if i == 0 { NIL } else { i - 1 },
                next: if i + 1 == n { NIL } else { i + 1 },
            })
            .collect();
        Self {
            blocks,
            head: 0,
            tail: n - 1,
            num_free: num_blocks,
            cached: HashMap::new(),
        }
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks with ref count 0, cached or not (cached ones are evictable).
    pub fn num_free(&self) -> usize {
        self.num_free
    }

    pub fn num_used(&self) -> usize {
        self.blocks.len() - self.num_free
    }

    /// vLLM's `kv_cache_usage`: the fraction of blocks held by some request.
    pub fn usage(&self) -> f64 {
        self.num_used() as f64 / self.blocks.len() as f64
    }

    pub fn ref_count(&self, id: u32) -> u32 {
        self.blocks[id as usize].ref_cnt
    }

    pub fn block_hash(&self, id: u32) -> Option<BlockHash> {
        self.blocks[id as usize].hash
    }

    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    /// The cached block holding this hash, if any (free or in use).
    pub fn cached_block(&self, hash: BlockHash) -> Option<u32> {
        self.cached.get(&hash).copied()
    }

    /// Free list from head (next to be evicted) to tail.
    pub fn free_list(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.num_free);
        let mut cur = self.head;
        while cur != NIL {
            out.push(cur);
            cur = self.blocks[cur as usize].next;
        }
        out
    }

    /// Takes `n` blocks from the head of the free list with ref count 1, evicting their
    /// cached hashes. `None` (and nothing changes) if fewer than `n` are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.num_free {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.head;
            self.unlink(id);
            self.uncache(id);
            self.blocks[id as usize].ref_cnt = 1;
            out.push(id);
        }
        Some(out)
    }

    /// Takes a reference on blocks found by a prefix hit; free ones leave the free list.
    pub fn touch(&mut self, ids: &[u32]) {
        for &id in ids {
            if self.blocks[id as usize].ref_cnt == 0 {
                self.unlink(id);
            }
            self.blocks[id as usize].ref_cnt += 1;
        }
    }

    /// Drops one reference per id, in the given order; blocks reaching 0 go to the free-list
    /// tail in that order (so pass a request's blocks last-first to have its tail evicted first).
    pub fn free(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            let b = &mut self.blocks[id as usize];
            assert!(b.ref_cnt > 0, "double free of block {id}");
            b.ref_cnt -= 1;
            if b.ref_cnt == 0 {
                self.push_tail(id);
            }
        }
    }

    /// Publishes a full, computed block under `hash`. If another block already holds that
    /// hash the index keeps the older one and this block stays uncached.
    pub fn cache(&mut self, id: u32, hash: BlockHash) {
        if self.blocks[id as usize].hash.is_some() {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(hash) {
            e.insert(id);
            self.blocks[id as usize].hash = Some(hash);
        }
    }

    /// Withdraws a block from the prefix index (its contents are not, or no longer, valid).
    pub fn uncache(&mut self, id: u32) {
        if let Some(h) = self.blocks[id as usize].hash.take() {
            self.cached.remove(&h);
        }
    }

    /// Empties the prefix index (vLLM's `reset_prefix_cache`); in-use blocks are untouched.
    pub fn reset_prefix_cache(&mut self) {
        for b in &mut self.blocks {
            b.hash = None;
        }
        self.cached.clear();
    }

    fn unlink(&mut self, id: u32) {
        let (prev, next) = {
            let b = &self.blocks[id as usize];
            (b.prev, b.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.blocks[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.blocks[n as usize].prev = prev,
        }
        let b = &mut self.blocks[id as usize];
        b.prev = NIL;
        b.next = NIL;
        self.num_free -= 1;
    }

    fn push_tail(&mut self, id: u32) {
        let old_tail = self.tail;
        {
            let b = &mut self.blocks[id as usize];
            b.prev = old_tail;
            b.next = NIL;
        }
        match old_tail {
            NIL => self.head = id,
            t => self.blocks[t as usize].next = id,
        }
        self.tail = id;
        self.num_free += 1;
    }

    /// Verifies every invariant in the module docs; `Err` names the first violation.
    pub fn check(&self) -> Result<(), String> {
        let list = self.free_list();
        if list.len() != self.num_free {
            return Err(format!(
                "free list has {} blocks, num_free says {}",
                list.len(),
                self.num_free
            ));
        }
        let mut in_list = vec![false; self.blocks.len()];
        let mut prev = NIL;
        for &id in &list {
            if in_list[id as usize] {
                return Err(format!("block {id} twice in the free list"));
            }
            in_list[id as usize] = true;
            if self.blocks[id as usize].prev != prev {
                return Err(format!("block {id} has a wrong prev link"));
            }
            prev = id;
        }
        if self.tail != prev {
            return Err("free-list tail is not the last block".into());
        }
        for (id, b) in self.blocks.iter().enumerate() {
            if in_list[id] != (b.ref_cnt == 0) {
                return Err(format!(
                    "block {id}: ref count {} but in free list = {}",
                    b.ref_cnt, in_list[id]
                ));
            }
            if let Some(h) = b.hash
                && self.cached.get(&h) != Some(&(id as u32))
            {
                return Err(format!(
                    "block {id} has a hash the index does not map to it"
                ));
            }
        }
        for (h, &id) in &self.cached {
            if self.blocks[id as usize].hash != Some(*h) {
                return Err(format!("index maps a hash to block {id} which lacks it"));
            }
        }
        if self.num_free + self.num_used() != self.blocks.len() {
            return Err("free + used != total".into());
        }
        Ok(())
    }
}
