//! `lnswarm-quorum-bench [--writers 1,16,256] [--secs 10] [--no-etcd]`: committed
//! writes/s and p50/p99 latency of the replicated store of three managers on
//! loopback, against a three-member etcd (Debian's `etcd-server`) started on the same
//! machine in the same run, with the same load: N concurrent writers, each writing a
//! new key with a 256-byte value and waiting for the acknowledgement before the next.
//!
//! Both are driven the same way: gRPC over a pool of 16 HTTP/2 connections to the
//! leader. lnswarm writes are `Raft/ForwardProposal` calls (what a follower manager
//! sends the leader; answered once committed and applied), made with a manager's
//! certificate over mTLS; etcd writes are `KV/Put` over plain HTTP/2. Not a test.

use std::{
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use lnswarm_common::{
    api::{raft_client::RaftClient, ForwardProposalRequest, StoreOp, StoreTxn},
    credentials::Credentials,
    pki::Role,
    tls,
};
use lnswarm_tests::{cluster::ManagerCluster, etcd, process::Proc};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

const VALUE_BYTES: usize = 256;
const POOL: usize = 16;

struct Options {
    writers: Vec<usize>,
    secs: u64,
    etcd: bool,
    /// Keep the data directories and logs (path printed) for a look afterwards.
    keep: bool,
}

fn parse() -> Result<Options> {
    let mut o = Options {
        writers: vec![1, 16, 256],
        secs: 10,
        etcd: true,
        keep: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--writers" => {
                o.writers = it
                    .next()
                    .context("--writers N,N,...")?
                    .split(',')
                    .map(|n| n.trim().parse().context("--writers takes N,N,..."))
                    .collect::<Result<_>>()?
            }
            "--secs" => o.secs = it.next().context("--secs N")?.parse()?,
            "--no-etcd" => o.etcd = false,
            "--keep" => o.keep = true,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(o)
}

struct Measured {
    writes: usize,
    errors: usize,
    window: Duration,
    latencies_us: Vec<u32>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.writes as f64 / self.window.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
    }
}

/// Runs `writers` closed-loop writers for a warm-up second, then measures `secs`.
async fn drive<F, Fut>(writers: usize, secs: u64, write: F) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (measuring, stop, writes, errors, latencies, write) = (
            measuring.clone(),
            stop.clone(),
            writes.clone(),
            errors.clone(),
            latencies.clone(),
            write.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t = Instant::now();
                let ok = write(w, n).await;
                let took = t.elapsed();
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        writes.fetch_add(1, Ordering::Relaxed);
                        mine.push(took.as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::SeqCst);
    let window = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Measured {
        writes: writes.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        window,
        latencies_us,
    }
}

fn value(w: usize, n: u64) -> Vec<u8> {
    let mut v = format!("writer {w} write {n} ").into_bytes();
    v.resize(VALUE_BYTES, b'x');
    v
}

async fn lnswarm_pool(dir: &std::path::Path) -> Result<(ManagerCluster, Vec<RaftClient<Channel>>)> {
    let cluster = ManagerCluster::start(dir, 3, &[]).await;
    let leader = cluster.leader().await;
    // A manager's certificate: ForwardProposal is manager-to-manager.
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let creds = Credentials::load(&cluster.managers[follower].data_dir.join("credentials"))?;
    let mut pool = Vec::new();
    for _ in 0..POOL {
        let ch = tls::connect(
            &cluster.managers[leader].addr,
            &creds.client_tls()?,
            Role::Manager,
        )
        .await?;
        pool.push(RaftClient::new(ch));
    }
    Ok((cluster, pool))
}

async fn run_lnswarm(pool: Vec<RaftClient<Channel>>, writers: usize, secs: u64) -> Measured {
    let pool = Arc::new(pool);
    drive(writers, secs, move |w, n| {
        let mut client = pool[w % POOL].clone();
        async move {
            let txn = StoreTxn {
                checks: vec![],
                ops: vec![StoreOp {
                    key: format!("bench/{w}/{n}"),
                    value: Some(value(w, n)),
                    tags: vec![],
                }],
            };
            client
                .forward_proposal(ForwardProposalRequest {
                    command: txn.encode_to_vec(),
                    origin: "bench".into(),
                    conf_change: vec![],
                })
                .await
                .is_ok()
        }
    })
    .await
}

/// Three etcd members on loopback; returns them and the leader's client URL.
async fn start_etcd(dir: &std::path::Path) -> Result<(Vec<Proc>, String)> {
    let members = etcd::start_cluster(dir, &[])?;
    let urls: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
    let procs: Vec<Proc> = members.into_iter().map(|m| m.proc).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &urls.join(","),
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .output()?;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            let leader = v.as_array().into_iter().flatten().find(|e| {
                let s = &e["Status"];
                s["leader"].as_u64().is_some()
                    && s["leader"].as_u64() == s["header"]["member_id"].as_u64()
            });
            if let Some(e) = leader {
                let url = e["Endpoint"].as_str().unwrap_or_default().to_string();
                return Ok((procs, url));
            }
        }
        if Instant::now() > deadline {
            bail!("etcd did not elect a leader");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn run_etcd(pool: Vec<Channel>, writers: usize, secs: u64) -> Measured {
    let pool = Arc::new(pool);
    drive(writers, secs, move |w, n| {
        let ch = pool[w % POOL].clone();
        async move {
            etcd::put(ch, format!("bench/{w}/{n}").into_bytes(), value(w, n))
                .await
                .is_ok()
        }
    })
    .await
}

fn line(what: &str, n: usize, m: &Measured) -> String {
    format!(
        "| {n} | {what} | {:.0} | {:.2} | {:.2} | {} |",
        m.per_second(),
        m.pct(0.5),
        m.pct(0.99),
        m.errors
    )
}

async fn bench(o: Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    if o.keep {
        println!("# data and logs kept in {}", dir.path().display());
    }
    println!(
        "# lnswarm-quorum-bench: {} s per run, {}-byte values, {} cores, {}, load {}",
        o.secs,
        VALUE_BYTES,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        if cfg!(debug_assertions) {
            "DEBUG build"
        } else {
            "release build"
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let ldir = dir.path().join("lnswarm");
    std::fs::create_dir_all(&ldir)?;
    let (cluster, pool) = lnswarm_pool(&ldir).await?;
    let mut ours = Vec::new();
    for &n in &o.writers {
        let m = run_lnswarm(pool.clone(), n, o.secs).await;
        eprintln!("{}", line("lnswarm 3 managers", n, &m));
        ours.push(m);
    }
    drop(pool);
    drop(cluster);
    let mut theirs = Vec::new();
    if o.etcd {
        let edir = dir.path().join("etcd");
        std::fs::create_dir_all(&edir)?;
        let (procs, url) = start_etcd(&edir).await?;
        let mut pool = Vec::new();
        for _ in 0..POOL {
            pool.push(Endpoint::from_shared(url.clone())?.connect().await?);
        }
        for &n in &o.writers {
            let m = run_etcd(pool.clone(), n, o.secs).await;
            eprintln!("{}", line("etcd 3 members", n, &m));
            theirs.push(m);
        }
        drop(procs);
    }
    println!();
    println!("| writers | system | committed writes/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for (i, &n) in o.writers.iter().enumerate() {
        println!("{}", line("lnswarm, 3 managers", n, &ours[i]));
        if let Some(t) = theirs.get(i) {
            println!("{}", line("etcd, 3 members", n, t));
            println!(
                "| {n} | ratio lnswarm / etcd | {:.2}x | {:.2}x | {:.2}x | |",
                ours[i].per_second() / t.per_second().max(f64::MIN_POSITIVE),
                ours[i].pct(0.5) / t.pct(0.5),
                ours[i].pct(0.99) / t.pct(0.99),
            );
        }
    }
    if o.keep {
        let _ = dir.keep();
    }
    Ok(())
}

fn main() -> Result<()> {
    let o = parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(o))
}
