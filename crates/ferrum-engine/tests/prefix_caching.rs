//! Block pool and KV-cache manager: exact block ids, ref counts and eviction order for
//! scripted sequences (in the spirit of vLLM's tests/v1/core/test_prefix_caching.py; our
//! block 0 is an ordinary block, not a reserved null block).

use ferrum_engine::kv_cache::{extend_block_hashes, hash_block};
use ferrum_engine::{BlockHash, BlockPool, KvCacheManager};

const BS: usize = 4;

fn hashes(tokens: &[u32]) -> Vec<BlockHash> {
    let mut h = Vec::new();
    extend_block_hashes(&mut h, tokens, BS);
    h
}

/// Admit like the scheduler does: look up the prefix, then allocate the rest.
fn admit(kv: &mut KvCacheManager, id: u64, tokens: &[u32]) -> (Vec<u32>, usize) {
    let h = hashes(tokens);
    let (hits, n) = kv.computed_blocks(&h, tokens.len());
    assert!(kv.allocate_slots(id, &h, n, tokens.len() - n, &hits));
    kv.check().unwrap();
    (hits, n)
}

#[test]
fn pool_allocates_in_order_and_frees_to_tail() {
    let mut p = BlockPool::new(5);
    assert_eq!(p.allocate(2), Some(vec![0, 1]));
    assert_eq!(p.allocate(4), None, "only 3 free; nothing taken");
    assert_eq!(p.num_free(), 3);
    p.free([1, 0]);
    assert_eq!(p.free_list(), vec![2, 3, 4, 1, 0]);
    assert_eq!(p.allocate(3), Some(vec![2, 3, 4]));
    assert_eq!(p.num_free() + p.num_used(), 5);
    p.check().unwrap();
}

#[test]
fn touch_removes_from_the_middle_of_the_free_list() {
    let mut p = BlockPool::new(6);
    p.touch(&[3]);
    assert_eq!(p.free_list(), vec![0, 1, 2, 4, 5]);
    p.touch(&[3]);
    assert_eq!(p.ref_count(3), 2);
    p.free([3]);
    assert_eq!(p.free_list(), vec![0, 1, 2, 4, 5]);
    p.free([3]);
    assert_eq!(p.free_list(), vec![0, 1, 2, 4, 5, 3]);
    p.touch(&[0, 5]);
    assert_eq!(p.free_list(), vec![1, 2, 4, 3]);
    p.check().unwrap();
}

#[test]
fn prefill_hit_share_free_and_evict() {
    let mut kv = KvCacheManager::new(10, BS, true);

    // A: 10 tokens = 2 full blocks + 2 tokens. Nothing cached yet.
    let a: Vec<u32> = (0..10).collect();
    assert_eq!(admit(&mut kv, 1, &a), (vec![], 0));
    assert_eq!(kv.block_table(1), &[0, 1, 2]);
    let ha = hashes(&a);
    assert_eq!(ha.len(), 2);
    assert_eq!(kv.pool().cached_block(ha[0]), Some(0));
    assert_eq!(kv.pool().cached_block(ha[1]), Some(1));
    assert_eq!(kv.pool().block_hash(2), None, "partial block is not cached");
    assert_eq!(kv.pool().free_list(), vec![3, 4, 5, 6, 7, 8, 9]);

    // B shares A's first 8 tokens: hits blocks 0 and 1, allocates one more.
    let mut b: Vec<u32> = (0..8).collect();
    b.extend([100, 101, 102]);
    assert_eq!(admit(&mut kv, 2, &b), (vec![0, 1], 8));
    assert_eq!(kv.block_table(2), &[0, 1, 3]);
    let refs: Vec<u32> = (0..4).map(|i| kv.pool().ref_count(i)).collect();
    assert_eq!(refs, vec![2, 2, 1, 1]);

    // Freeing A: only its private last block reaches 0 and goes to the tail.
    kv.free(1, 10);
    assert_eq!(kv.pool().free_list(), vec![4, 5, 6, 7, 8, 9, 2]);
    assert_eq!((kv.pool().ref_count(0), kv.pool().ref_count(1)), (1, 1));

    // Freeing B: its blocks in reverse order, so its tail is evicted before its head.
    kv.free(2, 11);
    assert_eq!(kv.pool().free_list(), vec![4, 5, 6, 7, 8, 9, 2, 3, 1, 0]);
    assert_eq!(kv.pool().num_cached(), 2, "freed blocks stay cached");
    kv.check().unwrap();

    // C hits the free cached blocks 0 and 1: they leave the free list from its end.
    let mut c: Vec<u32> = (0..8).collect();
    c.push(7);
    assert_eq!(admit(&mut kv, 3, &c), (vec![0, 1], 8));
    assert_eq!(kv.block_table(3), &[0, 1, 4]);
    assert_eq!(kv.pool().free_list(), vec![5, 6, 7, 8, 9, 2, 3]);
    kv.free(3, 9);
    assert_eq!(kv.pool().free_list(), vec![5, 6, 7, 8, 9, 2, 3, 4, 1, 0]);

    // D (unrelated, 28 tokens = 7 blocks) drains the LRU head first: 5..9, 2, 3.
    let d: Vec<u32> = (500..528).collect();
    admit(&mut kv, 4, &d);
    assert_eq!(kv.block_table(4), &[5, 6, 7, 8, 9, 2, 3]);
    // E needs 2 blocks: 4 (uncached) then 1, evicting A's second block but not its first.
    let e: Vec<u32> = (900..906).collect();
    admit(&mut kv, 5, &e);
    assert_eq!(kv.block_table(5), &[4, 1]);
    assert_eq!(kv.pool().cached_block(ha[1]), None, "block 1 was evicted");
    assert_eq!(kv.pool().cached_block(ha[0]), Some(0));
    // A's prefix now hits only one block.
    assert_eq!(kv.computed_blocks(&ha, 10), (vec![0], 4));
    kv.check().unwrap();
}

#[test]
fn last_token_is_always_recomputed() {
    let mut kv = KvCacheManager::new(8, BS, true);
    let a: Vec<u32> = (0..8).collect();
    admit(&mut kv, 1, &a);
    // Same 8 tokens: both blocks cached, but only the first may be used.
    assert_eq!(kv.computed_blocks(&hashes(&a), 8), (vec![0], 4));
    assert_eq!(kv.computed_blocks(&hashes(&a), 9).1, 8);
}

#[test]
fn hash_chain_distinguishes_prefixes() {
    let mut kv = KvCacheManager::new(8, BS, true);
    let a: Vec<u32> = vec![0, 1, 2, 3, 4, 5, 6, 7, 8];
    admit(&mut kv, 1, &a);
    // Same second-block tokens after a different first block: no hit at all.
    let g: Vec<u32> = vec![9, 9, 9, 9, 4, 5, 6, 7, 8];
    let hg = hashes(&g);
    assert_ne!(hg[1], hashes(&a)[1]);
    assert_eq!(kv.pool().cached_block(hg[1]), None);
    assert_eq!(kv.computed_blocks(&hg, g.len()), (vec![], 0));
    assert_ne!(
        hash_block(None, &[4, 5, 6, 7]),
        hash_block(Some(hashes(&a)[0]), &[4, 5, 6, 7])
    );
}

#[test]
fn growing_a_request_publishes_blocks_as_they_fill() {
    let mut kv = KvCacheManager::new(8, BS, true);
    let mut t: Vec<u32> = (0..3).collect();
    assert!(kv.allocate_slots(1, &hashes(&t), 0, 3, &[]));
    assert_eq!(kv.pool().num_cached(), 0);
    // Decode: the 4th token fills block 0.
    t.push(3);
    assert!(kv.allocate_slots(1, &hashes(&t), 3, 1, &[]));
    assert_eq!(kv.block_table(1), &[0]);
    assert_eq!(kv.pool().cached_block(hashes(&t)[0]), Some(0));
    t.push(4);
    assert!(kv.allocate_slots(1, &hashes(&t), 4, 1, &[]));
    assert_eq!(kv.block_table(1), &[0, 1]);
    kv.check().unwrap();
}

#[test]
fn freeing_uncomputed_blocks_withdraws_them() {
    let mut kv = KvCacheManager::new(8, BS, true);
    let a: Vec<u32> = (0..9).collect();
    admit(&mut kv, 1, &a);
    assert_eq!(kv.pool().num_cached(), 2);
    // The step that would have computed them failed: only 4 tokens were ever computed.
    kv.free(1, 4);
    assert_eq!(kv.pool().num_cached(), 1);
    assert_eq!(kv.computed_blocks(&hashes(&a), 9), (vec![0], 4));
    kv.check().unwrap();
}

#[test]
fn allocation_failure_changes_nothing_and_counts_evictable_hits() {
    let mut kv = KvCacheManager::new(4, BS, true);
    let a: Vec<u32> = (0..9).collect();
    admit(&mut kv, 1, &a); // blocks 0, 1, 2
    kv.free(1, 9);
    // 4 free blocks, two of them are A's cached prefix. B hits them and needs 3 more: the
    // hits stop being free when touched, so only 2 are left: refused, nothing changed.
    let mut b: Vec<u32> = (0..8).collect();
    b.extend(100..109);
    let hb = hashes(&b);
    let (hits, n) = kv.computed_blocks(&hb, b.len());
    assert_eq!((hits.clone(), n), (vec![0, 1], 8));
    assert!(!kv.allocate_slots(2, &hb, n, b.len() - n, &hits));
    assert_eq!(kv.pool().free_list(), vec![3, 2, 1, 0]);
    assert!(kv.block_table(2).is_empty());
    kv.check().unwrap();
}

#[test]
fn caching_disabled_never_hits() {
    let mut kv = KvCacheManager::new(8, BS, false);
    let a: Vec<u32> = (0..9).collect();
    admit(&mut kv, 1, &a);
    assert_eq!(kv.pool().num_cached(), 0);
    assert_eq!(kv.computed_blocks(&hashes(&a), 9), (vec![], 0));
}
