//! vLLM's periodic stats line while the server is busy (`--disable-log-stats` turns it off).

use std::time::{Duration, Instant};

use crate::state::Shared;

/// Logs every `interval` when anything ran since the last line.
pub fn spawn(state: Shared, interval: Duration) {
    tokio::spawn(async move {
        let mut last = state.engine.snapshot();
        let mut at = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let now = state.engine.snapshot();
            let secs = at.elapsed().as_secs_f64();
            at = Instant::now();
            let prompt = now.prompt_tokens.saturating_sub(last.prompt_tokens) as f64 / secs;
            let generation =
                now.generation_tokens.saturating_sub(last.generation_tokens) as f64 / secs;
            let busy =
                prompt > 0.0 || generation > 0.0 || now.num_running > 0 || now.num_waiting > 0;
            if busy {
                let q = now
                    .prefix_cache_queries
                    .saturating_sub(last.prefix_cache_queries);
                let h = now.prefix_cache_hits.saturating_sub(last.prefix_cache_hits);
                let hit = if q == 0 {
                    0.0
                } else {
                    100.0 * h as f64 / q as f64
                };
                tracing::info!(
                    "Engine 000: Avg prompt throughput: {prompt:.1} tokens/s, Avg generation throughput: {generation:.1} tokens/s, \
                     Running: {} reqs, Waiting: {} reqs, GPU KV cache usage: {:.1}%, Prefix cache hit rate: {hit:.1}%",
                    now.num_running,
                    now.num_waiting,
                    100.0 * now.kv_cache_usage
                );
            }
            last = now;
        }
    });
}
