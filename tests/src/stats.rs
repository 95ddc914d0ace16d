//! Percentiles of timed samples, for the benchmark binaries.

use std::time::Duration;

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// (p50, p99, max) of samples.
pub fn summary(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    (
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        *s.last().expect("at least one sample"),
    )
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
