//! Measuring both sides alike: latencies into a sorted list for percentiles, and a
//! server's CPU seconds and RSS read from /proc, over several consecutive windows.
//!
//! The machine is a shared VM, and a burst of outside load can double a server's
//! CPU for part of a run. Each side is therefore measured over a few consecutive
//! windows, every window is printed, and the comparison uses each side's median
//! window, so that one disturbed window does not decide it.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// Beats and server CPU in one measurement window.
#[derive(Clone, Copy)]
pub struct Window {
    pub beats: usize,
    pub cpu_s: f64,
}

impl Window {
    pub fn per_cpu_second(&self) -> f64 {
        self.beats as f64 / self.cpu_s.max(1e-9)
    }
}

/// Splits `total` into `count` consecutive windows, reading `beats` and the CPU
/// of `pids` at each boundary.
pub async fn measure_windows(
    total: Duration,
    count: usize,
    beats: &AtomicUsize,
    pids: &[u32],
) -> (Vec<Window>, Duration) {
    let cpu = || pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let count = count.max(1);
    let started = Instant::now();
    let mut windows = Vec::with_capacity(count);
    let (mut beats0, mut cpu0) = (beats.load(Ordering::Relaxed), cpu());
    for i in 1..=count {
        tokio::time::sleep_until((started + total.mul_f64(i as f64 / count as f64)).into()).await;
        let (beats1, cpu1) = (beats.load(Ordering::Relaxed), cpu());
        windows.push(Window {
            beats: beats1 - beats0,
            cpu_s: cpu1 - cpu0,
        });
        (beats0, cpu0) = (beats1, cpu1);
    }
    (windows, started.elapsed())
}

/// What one run measured.
pub struct RunResult {
    pub windows: Vec<Window>,
    pub window: Duration,
    pub latencies_us: Vec<u32>,
    pub server_rss_mib: f64,
    pub errors: usize,
    /// Anything the reader should know (for example agents marked DOWN).
    pub note: String,
}

impl RunResult {
    fn beats(&self) -> usize {
        self.windows.iter().map(|w| w.beats).sum()
    }

    fn cpu_s(&self) -> f64 {
        self.windows.iter().map(|w| w.cpu_s).sum()
    }

    pub fn per_second(&self) -> f64 {
        self.beats() as f64 / self.window.as_secs_f64()
    }

    /// The median window's beats per CPU-second.
    pub fn per_cpu_second(&self) -> f64 {
        let mut v: Vec<f64> = self.windows.iter().map(Window::per_cpu_second).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Every window's beats per CPU-second, in order.
    fn each_window(&self) -> String {
        self.windows
            .iter()
            .map(|w| format!("{:.0}", w.per_cpu_second()))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }

    pub fn line(&self, what: &str, n: usize) -> String {
        format!(
            "{what:30} N={n:>6}: {:>8.1} beats/s  p50 {:>7.2} ms  p99 {:>7.2} ms  CPU {:>6.2} s  {:>8.0} beats/CPU-s (median of {})  RSS {:>7.1} MiB  errors {} {}",
            self.per_second(),
            self.pct(0.50),
            self.pct(0.99),
            self.cpu_s(),
            self.per_cpu_second(),
            self.each_window(),
            self.server_rss_mib,
            self.errors,
            self.note
        )
    }

    pub fn markdown(&self, what: &str, n: usize) -> String {
        format!(
            "| {n} | {what} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {:.1} | {}{} |",
            self.per_second(),
            self.pct(0.50),
            self.pct(0.99),
            self.cpu_s(),
            self.per_cpu_second(),
            self.each_window(),
            self.server_rss_mib,
            self.errors,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            }
        )
    }
}

/// Clock ticks per second, asked once: the CPU is read at every window boundary,
/// and a `getconf` process there would add load of its own.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let ticks: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / clock_ticks()
}

/// Resident set size in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    lnswarm_tests::stats::status_kib(pid, "VmRSS:") as f64 / 1024.0
}

/// This process's open-file limit (children inherit it), from /proc/self/limits.
pub fn fd_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}
