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
                if let Some(line) = spec_decode_line(&last.spec_decode, &now.spec_decode, secs) {
                    tracing::info!("{line}");
                }
            }
            last = now;
        }
    });
}

/// vLLM's `SpecDecodingLogging.log` line over the interval between two snapshots (`None` when
/// no draft was verified in it). Mean acceptance length counts the bonus token; per-position
/// rates are per draft.
pub fn spec_decode_line(
    last: &ferrum_engine::SpecDecodeStats,
    now: &ferrum_engine::SpecDecodeStats,
    secs: f64,
) -> Option<String> {
    let drafts = now.num_drafts.saturating_sub(last.num_drafts);
    if drafts == 0 {
        return None;
    }
    let drafted = now.num_draft_tokens.saturating_sub(last.num_draft_tokens);
    let accepted = now
        .num_accepted_tokens
        .saturating_sub(last.num_accepted_tokens);
    let (drafted_tps, accepted_tps) = if secs > 0.0 {
        (drafted as f64 / secs, accepted as f64 / secs)
    } else {
        (0.0, 0.0)
    };
    let rate = if drafted > 0 {
        accepted as f64 / drafted as f64 * 100.0
    } else {
        f64::NAN
    };
    let mean_len = 1.0 + accepted as f64 / drafts as f64;
    let rates: Vec<String> = now
        .num_accepted_tokens_per_pos
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let before = last
                .num_accepted_tokens_per_pos
                .get(i)
                .copied()
                .unwrap_or(0);
            format!("{:.3}", n.saturating_sub(before) as f64 / drafts as f64)
        })
        .collect();
    Some(format!(
        "SpecDecoding metrics: Mean acceptance length: {mean_len:.2}, Accepted throughput: \
         {accepted_tps:.2} tokens/s, Drafted throughput: {drafted_tps:.2} tokens/s, Accepted: \
         {accepted} tokens, Drafted: {drafted} tokens, Per-position acceptance rate: {}, Avg \
         Draft acceptance rate: {rate:.1}%",
        rates.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_engine::SpecDecodeStats;

    #[test]
    fn spec_decode_line_as_vllm_writes_it() {
        let last = SpecDecodeStats {
            num_drafts: 10,
            num_draft_tokens: 30,
            num_accepted_tokens: 12,
            num_accepted_tokens_per_pos: vec![6, 4, 2],
        };
        assert_eq!(spec_decode_line(&last, &last, 10.0), None);
        let now = SpecDecodeStats {
            num_drafts: 14,
            num_draft_tokens: 42,
            num_accepted_tokens: 18,
            num_accepted_tokens_per_pos: vec![9, 6, 3],
        };
        assert_eq!(
            spec_decode_line(&last, &now, 2.0).unwrap(),
            "SpecDecoding metrics: Mean acceptance length: 2.50, Accepted throughput: 3.00 \
             tokens/s, Drafted throughput: 6.00 tokens/s, Accepted: 6 tokens, Drafted: 12 tokens, \
             Per-position acceptance rate: 0.750, 0.500, 0.250, Avg Draft acceptance rate: 50.0%"
        );
    }
}
