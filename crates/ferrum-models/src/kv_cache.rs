//! The paged K/V cache storage: per layer, `num_blocks × block_size` slots of `kv_dim` floats for
//! K and for V. Which sequence owns which block is the engine's business (its block pool); this
//! is only the memory. Allocated zeroed, so pages are committed only as blocks get used.

use crate::config::ModelConfig;

pub struct KvCache {
    pub block_size: usize,
    pub num_blocks: usize,
    pub layers: Vec<LayerKv>,
}

pub struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

impl KvCache {
    pub fn new(cfg: &ModelConfig, num_blocks: usize, block_size: usize) -> KvCache {
        let n = num_blocks * block_size * cfg.kv_dim();
        let layers = (0..cfg.num_layers)
            .map(|_| LayerKv {
                k: vec![0.0; n],
                v: vec![0.0; n],
            })
            .collect();
        KvCache {
            block_size,
            num_blocks,
            layers,
        }
    }

    /// Bytes one block takes across all layers (K and V, f32).
    pub fn bytes_per_block(cfg: &ModelConfig, block_size: usize) -> usize {
        2 * cfg.num_layers * block_size * cfg.kv_dim() * std::mem::size_of::<f32>()
    }
}
