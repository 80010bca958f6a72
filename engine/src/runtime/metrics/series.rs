//! One series of figures (a count, errors, retries and durations, in an
//! HDR histogram for quantiles and in fixed [`Buckets`] that add up across
//! servers), and what it reports.
//!
//! Owns the bucket bounds. It must never know what is being counted.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The upper bounds, in milliseconds, of the buckets every duration is
/// counted in: 1 ms to a week (a last bucket holds what is longer).
pub const BUCKET_BOUNDS_MS: [u64; 20] = [
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    1_800_000,
    3_600_000,
    21_600_000,
    86_400_000,
    604_800_000,
];

/// Durations counted in the buckets of [`BUCKET_BOUNDS_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Buckets {
    /// `counts[i]`: the durations above bound `i - 1` and at most bound
    /// `i` (not cumulative); the last, the durations above every bound.
    pub counts: [u64; BUCKET_BOUNDS_MS.len() + 1],
    /// Every duration added up, in milliseconds.
    pub sum_ms: u64,
}

impl Buckets {
    pub(super) fn record(&mut self, ms: u64) {
        let i = BUCKET_BOUNDS_MS.partition_point(|&bound| bound < ms);
        if let Some(n) = self.counts.get_mut(i) {
            *n += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// How many durations were counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The series of `step`, allocating its name only the first time.
pub(super) fn step_series<'a>(
    steps: &'a mut BTreeMap<String, Series>,
    step: &str,
) -> &'a mut Series {
    if !steps.contains_key(step) {
        steps.insert(step.to_string(), Series::default());
    }
    steps.get_mut(step).expect("inserted just above")
}

/// One series: how many, how many failed or retried, and how long (ms).
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) count: u64,
    pub(super) errors: u64,
    pub(super) retries: u64,
    pub(super) latency_ms: Histogram<u64>,
    pub(super) buckets: Buckets,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            count: 0,
            errors: 0,
            retries: 0,
            // 1 ms to 30 days at 2 significant digits: constant, valid bounds.
            latency_ms: Histogram::new_with_bounds(1, 30 * 86_400_000, 2)
                .expect("constant histogram bounds are valid"),
            buckets: Buckets::default(),
        }
    }
}

impl Series {
    pub(super) fn record(&mut self, ms: u64) {
        self.count += 1;
        self.latency_ms.saturating_record(ms.max(1));
        self.buckets.record(ms);
    }

    pub(super) fn figures(&self) -> SeriesFigures {
        let q = |p| {
            if self.latency_ms.is_empty() {
                0
            } else {
                // The bucket's lowest value: what was recorded, where the
                // bucket is exact.
                self.latency_ms
                    .lowest_equivalent(self.latency_ms.value_at_quantile(p))
            }
        };
        SeriesFigures {
            count: self.count,
            errors: self.errors,
            retries: self.retries,
            mean_ms: if self.latency_ms.is_empty() {
                0.0
            } else {
                self.latency_ms.mean()
            },
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            buckets: self.buckets.clone(),
        }
    }
}

/// What one series reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesFigures {
    pub count: u64,
    pub errors: u64,
    pub retries: u64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    /// Every duration (count = `count`), for histograms; not in the JSON
    /// view.
    #[serde(skip)]
    pub buckets: Buckets,
}
