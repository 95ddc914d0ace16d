//! `lnswarm-chaos`: faults on purpose, with checkers. Not a test but a bench
//! binary (the suite runs a short fixed-seed run of it, `tests/tests/chaos_short.rs`).
//!
//! It starts 3 managers, 3 agents and `--nodes` hosted nodes with channels in a
//! ring, runs payments around the ring and Control API writes, and every few
//! seconds injects one fault chosen at random (`--seed`): kill -9 of the leader, of
//! a follower or of an agent, SIGSTOP of an agent or a manager, a manager restart,
//! kill -9 of a hosted node. Each fault is held for a moment and healed, so the
//! faults are minority faults, one at a time. Not injected: a manager cut off
//! by a network namespace, since every process of the test cluster listens on
//! loopback (see docs/BENCHMARKS.md).
//!
//! Checkers: every acknowledged write is present at the end, whole, read
//! linearizably, and no failed write is half there; no node id runs in two
//! processes (the process table every 50 ms); every node serves again within a
//! bound derived from the settings after every fault; payments agree at both ends
//! and each node's holdings change by exactly what its payments moved (channels
//! lost to a force-close are recorded with the fault that preceded them); no
//! process panicked. Exit status 2 when any invariant was violated.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/lnswarm-chaos --minutes 30 --seed 1 [--nodes 10] [--heartbeat-ms 1000]
//!     [--start-budget-s 30] [--interval-s 4] [--keep-logs]
//! ```
//!
//! The cluster's files and logs are kept when an invariant was violated, or with
//! `--keep-logs` (for a lost channel's cause).

mod checks;
mod directory;
mod faults;
mod load;
mod ring;

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use lnswarm_common::api::ListChannelsRequest;
use lnswarm_tests::{agents::try_agent_states, hosting::DuplicateWatch, stats::summary};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::{
    directory::{Directory, CALL_TIMEOUT},
    faults::{Fault, Targets},
    load::Load,
};

struct Options {
    minutes: f64,
    seed: u64,
    nodes: usize,
    heartbeat_ms: u64,
    start_budget: Duration,
    interval: Duration,
    keep_logs: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        minutes: 2.0,
        seed: 1,
        nodes: 10,
        heartbeat_ms: 1000,
        start_budget: Duration::from_secs(30),
        interval: Duration::from_secs(4),
        keep_logs: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => o.minutes = value()?.parse()?,
            "--seed" => o.seed = value()?.parse()?,
            "--nodes" => o.nodes = value()?.parse()?,
            "--heartbeat-ms" => o.heartbeat_ms = value()?.parse()?,
            "--start-budget-s" => o.start_budget = Duration::from_secs(value()?.parse()?),
            "--interval-s" => o.interval = Duration::from_secs_f64(value()?.parse()?),
            "--keep-logs" => o.keep_logs = true,
            other => bail!("unknown option {other}"),
        }
    }
    anyhow::ensure!(o.nodes >= 2, "--nodes must be at least 2");
    anyhow::ensure!(o.heartbeat_ms >= 100, "--heartbeat-ms must be at least 100");
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse(&args)?;
    let violations = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?
        .block_on(run(&opts))?;
    if violations > 0 {
        std::process::exit(2);
    }
    Ok(())
}

/// The bound within which every node must serve again after a fault: the hold,
/// the time to notice (TTL + margin for an agent, an election plus the new
/// leader's grace of 3 TTLs for a manager, the restart backoff for a node), and
/// the start budget.
fn bound(fault: Fault, hold: Duration, o: &Options) -> Duration {
    let ttl = Duration::from_millis(o.heartbeat_ms * 3);
    let margin = Duration::from_millis(500) + ttl / 20;
    // 10 ticks of 100 ms, randomized up to twice that.
    let election = Duration::from_secs(2);
    let notice = match fault {
        Fault::KillNode => Duration::from_secs(1),
        Fault::KillAgent | Fault::StopAgent => ttl + margin,
        _ => election + 3 * ttl,
    };
    hold + notice + o.start_budget
}

/// One fault, as the timeline shows it.
struct Event {
    fault: Fault,
    target: String,
    at: Duration,
    hold: Duration,
    recovered: Option<Duration>,
}

async fn run(o: &Options) -> Result<usize> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    println!(
        "# lnswarm-chaos: seed {}, {} min, {} nodes, heartbeat {} ms",
        o.seed, o.minutes, o.nodes, o.heartbeat_ms
    );
    let setup = Instant::now();
    let ring::Ring {
        mut cluster,
        owners,
        points,
    } = ring::build(&root, o.nodes, o.heartbeat_ms).await?;
    println!(
        "ring of {} channels usable after {:.0} s",
        points.len(),
        setup.elapsed().as_secs_f64()
    );
    let node_ids: Vec<String> = owners.iter().map(|w| w.node_id.clone()).collect();
    let addrs = cluster
        .manager
        .managers
        .iter()
        .map(|m| m.addr.clone())
        .collect();
    let dir = Arc::new(Directory::new(addrs, cluster.manager.operator(), owners));
    let start_holdings = checks::holdings(&dir).await?;

    let mut rng = StdRng::seed_from_u64(o.seed);
    let started = Instant::now();
    let watch = DuplicateWatch::start(&root);
    let load = Load::start(dir.clone(), o.seed, 2, started);
    let mut events: Vec<Event> = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    let mut lost: BTreeMap<usize, String> = BTreeMap::new();
    let run_for = Duration::from_secs_f64(o.minutes * 60.0);
    {
        let mut miner = tokio::time::interval(Duration::from_secs(10));
        let regtest = &cluster.regtest;
        let mut targets = Targets {
            managers: &mut cluster.manager,
            agents: &mut cluster.agents,
            root: &root,
            nodes: &node_ids,
        };
        let faults = async {
            while started.elapsed() < run_for {
                let pause = o.interval.mul_f64(rng.gen_range(0.5..1.5));
                tokio::time::sleep(pause).await;
                let fault = Fault::ALL[rng.gen_range(0..Fault::ALL.len())];
                let hold = Duration::from_millis(rng.gen_range(1_000..6_000));
                let at = started.elapsed();
                let target = match faults::inject(&mut targets, fault, hold, &mut rng).await {
                    Ok(t) => t,
                    Err(e) => {
                        println!("{:7.1} s  skipped {}: {e}", at.as_secs_f64(), fault.name());
                        continue;
                    }
                };
                let limit = bound(fault, hold, o);
                let recovered =
                    wait_serving(&dir, at, started, limit + Duration::from_secs(60)).await;
                let line = format!(
                    "{:7.1} s  {} ({target}), hold {:.1} s: {}",
                    at.as_secs_f64(),
                    fault.name(),
                    hold.as_secs_f64(),
                    recovered.map_or("nodes did not all serve again".into(), |r| format!(
                        "all nodes serve again after {:.1} s",
                        r.as_secs_f64()
                    ))
                );
                println!("{line}");
                match recovered {
                    Some(r) if r <= limit => {}
                    _ => violations.push(format!(
                        "recovery over its bound of {:.1} s: {line}",
                        limit.as_secs_f64()
                    )),
                }
                for (i, cause) in channels_lost(&dir, &points, &lost).await {
                    println!("          channel n{i} -> n{} lost", (i + 1) % points.len());
                    lost.insert(
                        i,
                        format!(
                            "{} ({target}) at {:.1} s{cause}",
                            fault.name(),
                            at.as_secs_f64()
                        ),
                    );
                }
                if !healthy(targets.managers, targets.agents.len()).await {
                    violations.push(format!(
                        "the cluster did not heal within 60 s after: {line}"
                    ));
                }
                events.push(Event {
                    fault,
                    target,
                    at,
                    hold,
                    recovered,
                });
            }
        };
        let mine = async {
            loop {
                miner.tick().await;
                regtest.mine(1).await;
            }
        };
        tokio::select! {
            _ = faults => {}
            _ = mine => {}
        }
    }
    let (attempts, writes) = load.stop().await;
    let duplicates = watch.finish();

    // Quiet end: let payments in flight resolve, with blocks still coming.
    let records = settle(&dir, &cluster.regtest).await?;
    let tally = checks::payments(&attempts, &records);
    let end_holdings = checks::holdings(&dir).await?;
    let write_violations = checks::writes(&dir, &writes).await?;
    let panics = checks::panics(&root);

    violations.extend(duplicates.iter().map(|d| format!("two processes: {d}")));
    violations.extend(write_violations);
    violations.extend(tally.violations.iter().cloned());
    violations.extend(panics.iter().map(|p| format!("panic: {p}")));
    let mut money = Vec::new();
    let mut total = 0i64;
    for i in 0..node_ids.len() {
        let diff = end_holdings[i] - start_holdings[i] - tally.net_sats[i];
        total += diff;
        let on_lost = lost.contains_key(&i)
            || lost.contains_key(&((i + node_ids.len() - 1) % node_ids.len()));
        let in_flight = tally.in_flight.contains(&i);
        if diff != 0 {
            money.push(format!(
                "n{i}: {diff:+} sats unexplained by payments{}{}",
                if on_lost {
                    " (on a lost channel: fees)"
                } else {
                    ""
                },
                if in_flight {
                    " (an HTLC still in flight)"
                } else {
                    ""
                },
            ));
            // Exact where it can be: no HTLC in flight, and no force-close whose
            // on-chain fees are the node's. A lost channel may cost fees, never
            // bring money.
            if !in_flight && (!on_lost || diff > 0) {
                violations.push(format!(
                    "money: n{i} holds {} sats, started with {}, payments moved {:+}: {diff:+}",
                    end_holdings[i], start_holdings[i], tally.net_sats[i]
                ));
            }
        }
    }
    // Across all nodes, only fees leave and nothing arrives: payments move sats
    // between nodes, an HTLC in flight is nobody's balance, a force-close pays
    // on-chain fees.
    if total > 0 {
        violations.push(format!(
            "money: the nodes together hold {total:+} sats more than they were funded with and paid"
        ));
    }
    money.push(format!("all nodes together: {total:+} sats"));

    report(
        o,
        &events,
        &attempts,
        &writes,
        &tally,
        &lost,
        &money,
        &violations,
    );
    if !violations.is_empty() || o.keep_logs {
        // The logs of every process, for the timeline above.
        let kept = tmp.keep();
        drop(cluster);
        println!("logs kept in {}", kept.display());
    }
    Ok(violations.len())
}

/// Waits until every node answers GetInfo; the time since the fault's injection,
/// or `None` after `limit`.
async fn wait_serving(
    dir: &Directory,
    at: Duration,
    started: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut pending: HashSet<usize> = (0..dir.owners.len()).collect();
    loop {
        let mut still = HashSet::new();
        for &i in &pending {
            if !serves(dir, i).await {
                still.insert(i);
            }
        }
        pending = still;
        let since = started.elapsed() - at;
        if pending.is_empty() {
            return Some(since);
        }
        if since > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn serves(dir: &Directory, i: usize) -> bool {
    let Ok(mut c) = dir.fresh_node(i).await else {
        return false;
    };
    let mut req = tonic::Request::new(lnswarm_common::api::GetInfoRequest {});
    req.set_timeout(Duration::from_secs(3));
    c.get_info(req).await.is_ok()
}

/// Ring channels that node i no longer lists (and that were not lost before),
/// with the reason the node's log gives, if any.
async fn channels_lost(
    dir: &Directory,
    points: &[String],
    lost: &BTreeMap<usize, String>,
) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, point) in points.iter().enumerate() {
        if lost.contains_key(&i) {
            continue;
        }
        let Ok(mut c) = dir.fresh_node(i).await else {
            continue;
        };
        let mut req = tonic::Request::new(ListChannelsRequest {});
        req.set_timeout(CALL_TIMEOUT);
        let Ok(chans) = c.list_channels(req).await else {
            continue;
        };
        if !chans
            .into_inner()
            .channels
            .iter()
            .any(|ch| &ch.funding_txo == point)
        {
            out.push((i, String::new()));
        }
    }
    out
}

/// Every manager agrees on a leader and every agent is READY, within a minute.
async fn healthy(m: &lnswarm_tests::cluster::ManagerCluster, agents: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if m.agreed_leader().await.is_some()
            && try_agent_states(m)
                .is_some_and(|s| s.iter().filter(|(_, s)| s == "READY").count() >= agents)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Waits (up to 2 minutes, a block every 5 s) until no outbound payment is pending
/// at any node; returns every node's final records.
async fn settle(
    dir: &Directory,
    regtest: &lnswarm_tests::lightning::Regtest,
) -> Result<Vec<std::collections::HashMap<String, lnswarm_common::api::Payment>>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let records = checks::payments_of(dir).await?;
        if !checks::outbound_pending(&records) || Instant::now() > deadline {
            // Balances settle a moment after the last payment does.
            tokio::time::sleep(Duration::from_secs(2)).await;
            return Ok(records);
        }
        regtest.mine(1).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &Options,
    events: &[Event],
    attempts: &[load::Attempt],
    writes: &[load::Write],
    tally: &checks::PaymentTally,
    lost: &BTreeMap<usize, String>,
    money: &[String],
    violations: &[String],
) {
    println!("## faults injected: {}", events.len());
    let mut kinds: BTreeMap<Fault, Vec<Duration>> = BTreeMap::new();
    for e in events {
        kinds.entry(e.fault).or_default().extend(e.recovered);
    }
    for (k, rec) in &kinds {
        let n = events.iter().filter(|e| e.fault == *k).count();
        let (p50, p99, _) = if rec.is_empty() {
            (Duration::ZERO, Duration::ZERO, Duration::ZERO)
        } else {
            summary(rec)
        };
        println!(
            "{:22} {n:3}  recovery p50 {:5.1} s  p99 {:5.1} s",
            k.name(),
            p50.as_secs_f64(),
            p99.as_secs_f64()
        );
    }
    println!(
        "## payments: {} attempted, {} succeeded, {} failed, {} unresolved ({} answered succeeded)",
        tally.attempted,
        tally.succeeded,
        tally.failed,
        tally.unresolved,
        attempts
            .iter()
            .filter(|a| a.answer == load::Answer::Succeeded)
            .count()
    );
    // Why payments did not succeed, as their payers answered (most are refusals
    // while a node restarts or its channel is not reestablished yet).
    let mut why: BTreeMap<String, usize> = BTreeMap::new();
    for a in attempts {
        let key = match &a.answer {
            load::Answer::Succeeded => continue,
            load::Answer::Failed => "failed".to_string(),
            load::Answer::Unknown(e) => e.chars().take(70).collect(),
        };
        *why.entry(key).or_default() += 1;
    }
    for (w, n) in &why {
        println!("  {n:4} {w}");
    }
    let acked = writes.iter().filter(|w| w.acked.is_some()).count();
    println!(
        "## control writes: {} attempted, {acked} acknowledged, {} failed or timed out",
        writes.len(),
        writes.len() - acked
    );
    let mut refusals: BTreeMap<&str, usize> = BTreeMap::new();
    for e in writes.iter().filter_map(|w| w.error.as_deref()) {
        *refusals
            .entry(e.split(':').next().unwrap_or(e))
            .or_default() += 1;
    }
    for (why, n) in refusals {
        println!("  {n:4} {why}");
    }
    println!("## channels lost: {}", lost.len());
    for (i, cause) in lost {
        println!("n{i} -> n{}: after {cause}", (i + 1) % o.nodes);
    }
    for m in money {
        println!("{m}");
    }
    println!("## invariant violations: {}", violations.len());
    for v in violations {
        println!("VIOLATION (seed {}): {v}", o.seed);
    }
    if !violations.is_empty() {
        println!("## timeline (seed {})", o.seed);
        for e in events {
            println!(
                "{:7.1} s  {} ({}), hold {:.1} s, recovered {:?}",
                e.at.as_secs_f64(),
                e.fault.name(),
                e.target,
                e.hold.as_secs_f64(),
                e.recovered
            );
        }
    }
}
