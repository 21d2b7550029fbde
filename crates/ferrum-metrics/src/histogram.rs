//! A lock-free histogram: one atomic count per bucket and the sum as atomic f64 bits.
//!
//! Observations come from the engine and request threads on every token, so they must not
//! take a lock; a scrape reads each atomic once. The scrape is therefore not a consistent
//! cut across buckets and sum while observations race with it, which is harmless for
//! monitoring: `_count` is derived from the buckets, so it always equals the `+Inf` bucket.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub(crate) struct Histogram {
    /// Finite upper bounds, ascending; the implicit last bucket is `+Inf`.
    bounds: Box<[f64]>,
    /// Non-cumulative counts, one per bound plus one for `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

/// What a scrape reads out of a [`Histogram`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    /// Cumulative counts per bound, then `+Inf` last.
    pub cumulative: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl Histogram {
    pub fn new(bounds: Vec<f64>) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds: bounds.into(),
            counts,
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Counts `v` in the first bucket whose bound is >= `v`, as prometheus_client does; a NaN
    /// lands in no bucket but still adds to the sum (prometheus_client's behaviour too).
    pub fn observe(&self, v: f64) {
        if !v.is_nan() {
            let i = self
                .bounds
                .iter()
                .position(|&b| v <= b)
                .unwrap_or(self.bounds.len());
            self.counts[i].fetch_add(1, Relaxed);
        }
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self.sum_bits.fetch_update(Relaxed, Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut acc = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                acc += c.load(Relaxed);
                acc
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            cumulative,
            sum: f64::from_bits(self.sum_bits.load(Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_edges_are_inclusive_and_cumulative() {
        let h = Histogram::new(vec![1.0, 2.0, 5.0]);
        for v in [0.5, 1.0, 1.5, 5.0, 6.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 3, 4, 5]);
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum, 14.0);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new(vec![10.0]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| h.observe(1.0)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let s = h.snapshot();
        assert_eq!(s.count(), 4000);
        assert_eq!(s.sum, 4000.0);
    }
}
