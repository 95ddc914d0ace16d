//! Percentiles of timed samples, for the benchmark binaries, and a process's
//! memory as /proc shows it.

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

/// A `/proc/PID/status` field in KiB (`"VmRSS:"`, `"VmHWM:"`); 0 if unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l[field.len()..].split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
