//! `lnswarm-hosting-bench`: the benchmark of issue 6. Not a test: it prints figures for
//! docs/BENCHMARKS.md, next to a peer measured on the same machine in the same run.
//!
//! **Latency.** A cluster (lnswarm-regtest, one manager, `--agents` agents with wide
//! port ranges and enough task slots). `--nodes` nodes are registered through the
//! Scheduler API (not timed), then, one after the other, each is scheduled with its
//! owner's certificate and timed from the `Schedule` call until it has returned the
//! `grpc_uri` AND a `Node.GetInfo` over mTLS with that certificate has answered.
//! Every node starts cold (fresh storage on its agent).
//!
//! **Peer.** `--peer` bare `lnswarm-node` cold starts (spawn → Node API health
//! SERVING, as `lnswarm-node-bench` measures it, through the tests' `TestNode`) on
//! the same chain, interleaved with the Schedule calls so both see the same number of
//! idle nodes around them. The ratio of the two is the cluster's overhead.
//!
//! **Capacity.** The latency cluster is torn down; a new one with a single agent is
//! started and idle nodes are scheduled on it one at a time. After each, the VmRSS of
//! the agent and of all its `lnswarm-node` processes is summed; it stops at
//! `--rss-limit-gib`, `--cap` nodes or `--budget-secs`, whichever comes first. Every
//! `--sample-every` nodes it also measures, over a 5 s window, the CPU the idle nodes
//! burn and the machine's load.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/lnswarm-hosting-bench [--nodes 100] [--agents 2] [--peer 20]
//!     [--cap 400] [--rss-limit-gib 8] [--budget-secs 1200] [--sample-every 50]
//!     [--base-port 10000] [--skip-latency] [--skip-capacity]
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use lnswarm_common::{
    api::{
        node_client::NodeClient, scheduler_client::SchedulerClient, ChallengeRequest,
        ChallengeScope, GetInfoRequest, RegistrationRequest, ScheduleRequest,
    },
    credentials::Credentials,
    node_keys,
    pki::{new_key_and_csr, Role},
    seal, tls,
};
use lnswarm_tests::{
    agents::TestAgent,
    certs::TestCa,
    hosting::{node_processes, HostingCluster},
    lightning::{Regtest, TestNode, RPC_PASSWORD, RPC_USER},
    manager::TestManager,
    process::run,
    stats::{ms, status_kib, summary},
};
use tonic::transport::Channel;

struct Options {
    nodes: usize,
    agents: usize,
    peer: usize,
    cap: usize,
    rss_limit_gib: f64,
    budget: Duration,
    sample_every: usize,
    base_port: usize,
    latency: bool,
    capacity: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        nodes: 100,
        agents: 2,
        peer: 20,
        cap: 400,
        rss_limit_gib: 8.0,
        budget: Duration::from_secs(1200),
        sample_every: 50,
        base_port: 10_000,
        latency: true,
        capacity: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--nodes" => o.nodes = value()?.parse()?,
            "--agents" => o.agents = value()?.parse()?,
            "--peer" => o.peer = value()?.parse()?,
            "--cap" => o.cap = value()?.parse()?,
            "--rss-limit-gib" => o.rss_limit_gib = value()?.parse()?,
            "--budget-secs" => o.budget = Duration::from_secs(value()?.parse()?),
            "--sample-every" => o.sample_every = value()?.parse::<usize>()?.max(1),
            "--base-port" => o.base_port = value()?.parse()?,
            "--skip-latency" => o.latency = false,
            "--skip-capacity" => o.capacity = false,
            other => bail!("unknown option {other}"),
        }
    }
    if o.latency && (o.nodes == 0 || o.agents == 0) {
        bail!("--nodes and --agents must be at least 1");
    }
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = parse(&args)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?
        .block_on(bench(opts))
}

/// A hosting cluster like `HostingCluster::start`, but with `ports` ports and `slots`
/// task slots per agent, and the cluster's default heartbeat.
async fn cluster(dir: &Path, agents: usize, slots: u32, ports: usize, base: usize) -> Cluster {
    let regtest = Regtest::start(dir).await;
    let manager = TestManager::init(dir, None).await;
    let mut update = manager.ctl();
    update.args([
        "cluster",
        "update",
        "--bitcoind-rpc",
        &format!("{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{}", regtest.port),
        // The bench registers its owners directly, without invite codes.
        "--open-registration",
        "true",
    ]);
    let (status, out, err) = run(update);
    assert!(status.success(), "cluster update: {out}{err}");
    let mut list = Vec::new();
    for i in 0..agents {
        let mut a = TestAgent::join(&manager, dir, &format!("agent-{i}"));
        let first = base + i * ports;
        a.port_range = Some(format!("{first}-{}", first + ports - 1));
        a.task_slots = Some(slots);
        a.start();
        list.push(a);
    }
    let c = Cluster(HostingCluster {
        dir: dir.to_path_buf(),
        regtest,
        manager,
        agents: list,
    });
    c.wait_agents_ready().await;
    c
}

/// A cluster that, when dropped (also on an error or a panic), kills its agents and
/// then, by pid, the nodes they started: those run in their own process groups and
/// would outlive their agent.
struct Cluster(HostingCluster);

impl std::ops::Deref for Cluster {
    type Target = HostingCluster;
    fn deref(&self) -> &HostingCluster {
        &self.0
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.0.agents {
            a.kill9();
        }
        let root = std::fs::canonicalize(&self.0.dir).unwrap_or(self.0.dir.clone());
        for pids in node_processes(&root).values() {
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

struct Registered {
    id: Vec<u8>,
    creds: Credentials,
}

/// Registers a fresh node through the Scheduler API, as `lnswarmctl node register`.
async fn register(anon: &mut SchedulerClient<Channel>, i: usize) -> Result<Registered> {
    let (_, seed) = node_keys::new_mnemonic();
    let id = hex::decode(node_keys::node_id(&seed)?)?;
    let challenge = anon
        .get_challenge(ChallengeRequest {
            scope: ChallengeScope::Register as i32,
            node_id: id.clone(),
        })
        .await?
        .into_inner();
    let device = format!("bench-{i}");
    let key = new_key_and_csr(&device, Some(Role::User))?;
    let done = anon
        .register(RegistrationRequest {
            node_id: id.clone(),
            network: "regtest".into(),
            signature: node_keys::sign_message(&seed, &challenge.challenge)?,
            challenge: challenge.challenge,
            csr: key.csr_pem.into_bytes(),
            device,
            sealed_seed: seal::seal(&challenge.seal_public_key, &seed)?,
            invite_code: String::new(),
        })
        .await?
        .into_inner();
    Ok(Registered {
        id,
        creds: Credentials {
            cert_pem: String::from_utf8(done.device_cert)?,
            key_pem: key.key_pem,
            ca_pem: String::from_utf8(done.root_ca)?,
        },
    })
}

/// Schedule → grpc_uri → Node.GetInfo over mTLS as the owner. Returns the time and
/// the agent the node landed on. The channel to the manager is open before the clock
/// starts; the connection to the node is part of the measured time.
async fn timed_schedule(c: &HostingCluster, node: &Registered) -> Result<(Duration, String)> {
    let mut scheduler = SchedulerClient::new(c.manager.channel_as(Some(&node.creds)).await);
    let t0 = Instant::now();
    let info = scheduler
        .schedule(ScheduleRequest {
            node_id: node.id.clone(),
        })
        .await?
        .into_inner();
    let addr = info.grpc_uri.trim_start_matches("https://");
    let channel = tls::connect(addr, &node.creds.client_tls()?, Role::Node).await?;
    let got = NodeClient::new(channel)
        .get_info(GetInfoRequest {})
        .await?
        .into_inner();
    let elapsed = t0.elapsed();
    if got.node_id != hex::encode(&node.id) {
        bail!("GetInfo answered for {} instead", got.node_id);
    }
    Ok((elapsed, info.agent_id))
}

/// One bare `lnswarm-node` cold start: spawn → Node API health SERVING.
async fn bare_start(dir: &Path, ca: &TestCa, regtest: &Regtest, i: usize) -> Duration {
    let t0 = Instant::now();
    let mut node = TestNode::start(&format!("peer-{i}"), dir, ca, regtest).await;
    let elapsed = t0.elapsed();
    node.stop();
    elapsed
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the ")" that ends the command name: state is field 3, utime 14.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// (busy, total) jiffies of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// USER_HZ: the unit of /proc's CPU times, 100 on every Linux architecture in use.
fn clk_tck() -> f64 {
    100.0
}

fn nproc() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Over `window`: cores used by `pids`, and the machine's busy fraction.
async fn cpu_window(pids: &[u32], window: Duration) -> (f64, f64) {
    let before: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let (busy0, total0) = machine_ticks();
    tokio::time::sleep(window).await;
    let after: u64 = pids.iter().map(|p| cpu_ticks(*p)).sum();
    let (busy1, total1) = machine_ticks();
    let cores = after.saturating_sub(before) as f64 / clk_tck() / window.as_secs_f64();
    let busy = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    (cores, busy)
}

/// The agent's pid and the pids of the `lnswarm-node` processes it started.
fn agent_pids(agent: &TestAgent) -> (u32, Vec<u32>) {
    let root = std::fs::canonicalize(&agent.data_dir).unwrap_or(agent.data_dir.clone());
    let nodes = node_processes(&root).into_values().flatten().collect();
    (agent.proc.as_ref().map(|p| p.pid()).unwrap_or(0), nodes)
}

async fn latency(opts: &Options, dir: &Path) -> Result<()> {
    let per_agent = 2 * opts.nodes + 100;
    let c = cluster(
        dir,
        opts.agents,
        opts.nodes as u32,
        per_agent,
        opts.base_port,
    )
    .await;
    let mut anon = SchedulerClient::new(c.manager.channel_as(None).await);
    let t = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..opts.nodes {
        nodes.push(register(&mut anon, i).await?);
    }
    eprintln!(
        "registered {} nodes in {:.1} s",
        opts.nodes,
        t.elapsed().as_secs_f64()
    );

    let ca = TestCa::new("bench-peer");
    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir)?;
    let every = (opts.nodes / opts.peer.max(1)).max(1);
    let mut sched = Vec::new();
    let mut bare = Vec::new();
    let mut placed: BTreeMap<String, usize> = BTreeMap::new();
    let load_start = loadavg();
    for (i, node) in nodes.iter().enumerate() {
        let (d, agent) = timed_schedule(&c, node)
            .await
            .with_context(|| format!("scheduling node {i}"))?;
        sched.push(d);
        *placed.entry(agent).or_default() += 1;
        let mut line = format!("node {i}: schedule {:.0} ms", ms(d));
        if (i + 1) % every == 0 && bare.len() < opts.peer {
            let b = bare_start(&peer_dir, &ca, &c.regtest, bare.len()).await;
            line += &format!(", bare start {:.0} ms", ms(b));
            bare.push(b);
        }
        eprintln!("{line}  (load {})", loadavg());
    }
    while bare.len() < opts.peer {
        bare.push(bare_start(&peer_dir, &ca, &c.regtest, bare.len()).await);
    }
    let load_end = loadavg();

    let (s50, s99, smax) = summary(&sched);
    let (b50, b99, bmax) = summary(&bare);
    println!();
    println!(
        "Schedule latency, cold starts of {} registered nodes on {} agents",
        opts.nodes, opts.agents
    );
    println!("(Schedule call -> grpc_uri returned and Node.GetInfo over mTLS answering)");
    println!();
    println!(
        "| {:<44} | {:>8} | {:>8} | {:>8} | {:>4} |",
        "measure", "p50 ms", "p99 ms", "max ms", "n"
    );
    println!(
        "|{:-<46}|{:->10}|{:->10}|{:->10}|{:->6}|",
        "", "", "", "", ""
    );
    println!(
        "| {:<44} | {:>8.0} | {:>8.0} | {:>8.0} | {:>4} |",
        "cluster: Schedule -> GetInfo answers",
        ms(s50),
        ms(s99),
        ms(smax),
        sched.len()
    );
    println!(
        "| {:<44} | {:>8.0} | {:>8.0} | {:>8.0} | {:>4} |",
        "peer: bare lnswarm-node spawn -> SERVING",
        ms(b50),
        ms(b99),
        ms(bmax),
        bare.len()
    );
    println!(
        "| {:<44} | {:>8.2} | {:>8.2} | {:>8.2} | {:>4} |",
        "ratio cluster / bare",
        ms(s50) / ms(b50),
        ms(s99) / ms(b99),
        ms(smax) / ms(bmax),
        ""
    );
    println!();
    println!(
        "target: p50 <= 500 ms ({}), p99 <= 2000 ms ({})",
        if s50 <= Duration::from_millis(500) {
            "met"
        } else {
            "NOT met"
        },
        if s99 <= Duration::from_secs(2) {
            "met"
        } else {
            "NOT met"
        },
    );
    let names: HashMap<String, usize> = c
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.clone(), i))
        .collect();
    let spread: Vec<String> = placed
        .iter()
        .map(|(id, n)| match names.get(id) {
            Some(i) => format!("agent-{i}: {n}"),
            None => format!("{id}: {n}"),
        })
        .collect();
    println!("placement: {}", spread.join(", "));
    println!("load average at start: {load_start}; at end: {load_end}");
    drop(c);
    Ok(())
}

async fn capacity(opts: &Options, dir: &Path) -> Result<()> {
    let ports = 2 * opts.cap + 200;
    let c = cluster(dir, 1, opts.cap as u32, ports, opts.base_port).await;
    let limit_kib = (opts.rss_limit_gib * 1024.0 * 1024.0) as u64;
    let mut anon = SchedulerClient::new(c.manager.channel_as(None).await);
    let started = Instant::now();
    let mut held = 0;
    let mut total_kib = 0;
    let mut lat = Vec::new();
    let mut stop_reason = format!("cap of {} nodes", opts.cap);
    let mut passed = false;
    let mut rows = Vec::new();
    println!();
    println!(
        "Capacity: idle nodes scheduled one at a time on one agent, until the agent's processes' VmRSS passes {} GiB",
        opts.rss_limit_gib
    );
    println!();
    println!(
        "| {:>5} | {:>13} | {:>10} | {:>15} | {:>16} | {:>9} | {:>14} |",
        "nodes",
        "RSS total MiB",
        "MiB / node",
        "schedule p50 ms",
        "idle nodes cores",
        "machine %",
        "load avg"
    );
    println!(
        "|{:->7}|{:->15}|{:->12}|{:->17}|{:->18}|{:->11}|{:->16}|",
        "", "", "", "", "", "", ""
    );
    for i in 0..opts.cap {
        if started.elapsed() > opts.budget {
            stop_reason = format!("time budget of {} s", opts.budget.as_secs());
            break;
        }
        let node = register(&mut anon, i).await?;
        match timed_schedule(&c, &node).await {
            Ok((d, _)) => lat.push(d),
            Err(e) => {
                stop_reason = format!("Schedule of node {} failed: {e:#}", i + 1);
                break;
            }
        }
        held = i + 1;
        let (agent_pid, pids) = agent_pids(&c.agents[0]);
        total_kib = status_kib(agent_pid, "VmRSS:")
            + pids.iter().map(|p| status_kib(*p, "VmRSS:")).sum::<u64>();
        eprintln!(
            "capacity: {held} nodes ({} processes), RSS {:.0} MiB, schedule {:.0} ms, load {}",
            pids.len(),
            total_kib as f64 / 1024.0,
            ms(*lat.last().unwrap()),
            loadavg()
        );
        let over = total_kib >= limit_kib;
        if held % opts.sample_every == 0 || over {
            let recent = &lat[lat.len().saturating_sub(opts.sample_every)..];
            let (p50, _, _) = summary(recent);
            let (cores, busy) = cpu_window(&pids, Duration::from_secs(5)).await;
            let row = format!(
                "| {:>5} | {:>13.0} | {:>10.1} | {:>15.0} | {:>16.2} | {:>8.0}% | {:>14} |",
                held,
                total_kib as f64 / 1024.0,
                total_kib as f64 / 1024.0 / held as f64,
                ms(p50),
                cores,
                busy * 100.0,
                loadavg()
            );
            println!("{row}");
            rows.push(row);
        }
        if over {
            passed = true;
            stop_reason = format!("RSS passed {} GiB", opts.rss_limit_gib);
            break;
        }
    }
    // A last reading after the nodes have idled a while.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (agent_pid, pids) = agent_pids(&c.agents[0]);
    let agent_kib = status_kib(agent_pid, "VmRSS:");
    let nodes_kib: u64 = pids.iter().map(|p| status_kib(*p, "VmRSS:")).sum();
    let (cores, busy) = cpu_window(&pids, Duration::from_secs(10)).await;
    println!();
    println!(
        "stopped at {held} nodes: {stop_reason} (after {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if passed {
        println!(
            "nodes held under {} GiB: {} (node {held} took it over)",
            opts.rss_limit_gib,
            held - 1
        );
    }
    println!(
        "after 10 s idle: {} lnswarm-node processes, nodes VmRSS {:.0} MiB ({:.1} MiB / node), agent VmRSS {:.0} MiB, total {:.0} MiB (was {:.0} MiB at the last schedule)",
        pids.len(),
        nodes_kib as f64 / 1024.0,
        nodes_kib as f64 / 1024.0 / pids.len().max(1) as f64,
        agent_kib as f64 / 1024.0,
        (agent_kib + nodes_kib) as f64 / 1024.0,
        total_kib as f64 / 1024.0
    );
    if nodes_kib > 0 {
        let per_node = nodes_kib as f64 / pids.len().max(1) as f64;
        println!(
            "extrapolated nodes under {} GiB at that RSS per node: {:.0}",
            opts.rss_limit_gib,
            ((limit_kib.saturating_sub(agent_kib)) as f64 / per_node).floor()
        );
    }
    println!(
        "idle nodes' CPU over 10 s: {cores:.2} cores of {}; machine busy {:.0}%; load average {}",
        nproc(),
        busy * 100.0,
        loadavg()
    );
    if !lat.is_empty() {
        let (p50, p99, max) = summary(&lat);
        println!(
            "Schedule latency while filling the agent: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {}",
            ms(p50),
            ms(p99),
            ms(max),
            lat.len()
        );
    }
    drop(c);
    Ok(())
}

async fn bench(opts: Options) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    println!(
        "lnswarm-hosting-bench: {} cores, load average {} at start",
        nproc(),
        loadavg()
    );
    if opts.latency {
        let dir = tmp.path().join("latency");
        std::fs::create_dir_all(&dir)?;
        latency(&opts, &dir).await?;
    }
    if opts.capacity {
        let dir = tmp.path().join("capacity");
        std::fs::create_dir_all(&dir)?;
        capacity(&opts, &dir).await?;
    }
    Ok(())
}
