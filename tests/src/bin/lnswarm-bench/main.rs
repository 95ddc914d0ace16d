//! `lnswarm-bench`: benchmarks that start real processes on this machine and print
//! figures next to a peer measured in the same run.
//!
//! `lnswarm-bench dispatcher [--agents 1000,5000,10000] [--period-ms 5000]
//! [--measure-secs 30] [--windows 3] [--no-etcd]`: N simulated agents, each with its own mTLS
//! connection and Session, heartbeating against one manager; then the Kubernetes
//! node-lease model at the same N (one Put per heartbeat against a 3-member etcd,
//! Debian's `etcd-server`). Prints sustained heartbeats/s, p50/p99 latency, CPU
//! seconds and RSS of the server side, and heartbeats per CPU-second for both: each
//! side's measurement is split into consecutive windows, all of them are printed,
//! and the ratio compares the median windows (see `stats`).

mod dispatcher;
mod etcd;
mod stats;

use std::time::Duration;

use anyhow::{bail, Context, Result};

pub struct Options {
    pub agents: Vec<usize>,
    pub period: Duration,
    pub measure: Duration,
    /// How many consecutive windows the measurement is split into.
    pub windows: usize,
    pub etcd: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        agents: vec![1_000, 5_000, 10_000],
        period: Duration::from_millis(5_000),
        measure: Duration::from_secs(30),
        windows: 3,
        etcd: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--agents" => {
                o.agents = value()?
                    .split(',')
                    .map(|n| n.trim().parse().context("--agents takes N,N,..."))
                    .collect::<Result<_>>()?
            }
            "--period-ms" => o.period = Duration::from_millis(value()?.parse()?),
            "--measure-secs" => o.measure = Duration::from_secs(value()?.parse()?),
            "--windows" => o.windows = value()?.parse()?,
            "--no-etcd" => o.etcd = false,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dispatcher") => {
            let opts = parse(&args[1..])?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(run_dispatcher(opts))
        }
        _ => {
            eprintln!(
                "usage: lnswarm-bench dispatcher [--agents 1000,5000,10000] [--period-ms 5000] \
                 [--measure-secs 30] [--windows 3] [--no-etcd]"
            );
            std::process::exit(2)
        }
    }
}

async fn run_dispatcher(opts: Options) -> Result<()> {
    let max = opts.agents.iter().max().copied().unwrap_or(0);
    if let Some(limit) = stats::fd_limit() {
        if (limit as usize) < max + 200 {
            bail!("open-file limit {limit} is too low for {max} agents (raise ulimit -n)");
        }
    }
    println!(
        "# lnswarm-bench dispatcher: period {} ms, measured over {} s per run, {} cores, load {}",
        opts.period.as_millis(),
        opts.measure.as_secs(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut rows = Vec::new();
    for &n in &opts.agents {
        let ours = dispatcher::run(n, &opts).await?;
        println!("{}", ours.line("lnswarm dispatcher", n));
        let theirs = if opts.etcd {
            let t = etcd::run(n, &opts).await?;
            println!("{}", t.line("etcd 3-member, Put per beat", n));
            Some(t)
        } else {
            None
        };
        rows.push((n, ours, theirs));
    }
    println!();
    println!("| N | system | heartbeats/s | p50 ms | p99 ms | server CPU s | beats per CPU-s (median window) | each window | server RSS MiB | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (n, ours, theirs) in &rows {
        println!("{}", ours.markdown("lnswarm dispatcher", *n));
        if let Some(t) = theirs {
            println!("{}", t.markdown("etcd (node-lease model)", *n));
            println!(
                "| {n} | ratio (lnswarm / etcd) | | | | | {:.1}x | | | |",
                ours.per_cpu_second() / t.per_cpu_second().max(f64::MIN_POSITIVE)
            );
        }
    }
    Ok(())
}
