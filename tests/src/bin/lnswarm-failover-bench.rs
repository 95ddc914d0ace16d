//! `lnswarm-failover-bench`: the benchmark of replicated node state. Not a test: it
//! prints figures for docs/BENCHMARKS.md, each next to a peer run on the same
//! machine in the same run.
//!
//! **Payments.** Two hosted nodes with replicated state (a cluster of one manager
//! and two agents) and, as the peer, two bare `lnswarm-node`s on ldk-node's local
//! SQLite, on the same chain. Each pair opens a channel; then `--payments` payments
//! are made in each pair, interleaved, each timed from the Pay call to its answer.
//!
//! **Failover.** A cluster of one manager and three agents hosts one node. `--runs`
//! times: kill -9 the agent running it, and time until the node answers GetInfo
//! from another agent; then the agent is started again. Once with the cluster's
//! default heartbeat (5 s, TTL 15 s) and once with a 1 s one (TTL 3 s); the peer is
//! the TTL itself (the detection floor).
//!
//! **Crash window.** With `--crash-kills K`, after the payments: K times, a burst of
//! 20 payments from one hosted node to the other and a kill -9 of the payer 20 to
//! 300 ms into it; it counts the channels LDK force-closes on restart and the change
//! in what the two nodes hold (on-chain plus channel balances, claimable included).
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/lnswarm-failover-bench [--payments 100] [--managers 3] [--runs 10]
//!     [--crash-kills 0] [--skip-payments] [--skip-failover]
//! ```

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lnswarm_common::api::{self, control_client::ControlClient, InspectHostedNodeRequest};
use lnswarm_tests::{
    agents::set_heartbeat,
    certs::TestCa,
    hosting::{node_processes, HostingCluster, Owner},
    lightning::TestNode,
    stats::{ms, summary},
    wait, Cluster,
};

struct Options {
    crash_kills: usize,
    agent_kills: usize,
    managers: usize,
    payments: usize,
    runs: usize,
    failover: bool,
    payments_on: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        crash_kills: 0,
        agent_kills: 0,
        managers: 3,
        payments: 100,
        runs: 10,
        failover: true,
        payments_on: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--payments" => o.payments = value()?.parse()?,
            "--managers" => o.managers = value()?.parse()?,
            "--crash-kills" => o.crash_kills = value()?.parse()?,
            "--agent-kills" => o.agent_kills = value()?.parse()?,
            "--runs" => o.runs = value()?.parse()?,
            "--skip-failover" => o.failover = false,
            "--skip-payments" => o.payments_on = false,
            other => bail!("unknown option {other}"),
        }
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
        .block_on(async {
            if opts.payments_on {
                let tmp = tempfile::tempdir()?;
                if opts.managers > 1 {
                    let mut c = HostingCluster::start_quorum(tmp.path(), opts.managers, 2).await;
                    let pair = payments(&c, opts.payments, opts.managers).await?;
                    crash_window(&mut c, &pair, opts.crash_kills, Kill::Node).await?;
                    crash_window(&mut c, &pair, opts.agent_kills, Kill::Agent).await?;
                } else {
                    let mut c = HostingCluster::start(tmp.path(), 2).await;
                    let pair = payments(&c, opts.payments, 1).await?;
                    crash_window(&mut c, &pair, opts.crash_kills, Kill::Node).await?;
                    crash_window(&mut c, &pair, opts.agent_kills, Kill::Agent).await?;
                }
            }
            if opts.failover {
                for period in [5_000, 1_000] {
                    failover(opts.runs, period).await?;
                }
            }
            Ok(())
        })
}

fn port_of(addr: &str) -> String {
    addr.rsplit_once(':').unwrap().1.to_string()
}

/// The hosted pair of the payment run, with their channel.
struct Pair {
    a: Owner,
    b: Owner,
    channel_id: String,
}

async fn payments<C: Cluster>(c: &HostingCluster<C>, n: usize, managers: usize) -> Result<Pair> {
    let tmp = tempfile::tempdir()?;
    let (a, b) = (c.register("a"), c.register("b"));
    for o in [&a, &b] {
        let (ok, _, err) = c.owner_ctl(o, &["schedule"]);
        anyhow::ensure!(ok, "schedule: {err}");
    }
    let ca = TestCa::new("peer");
    let peer_dir = tmp.path().join("peer");
    let l1 = TestNode::start("l1", &peer_dir, &ca, &c.regtest).await;
    let l2 = TestNode::start("l2", &peer_dir, &ca, &c.regtest).await;
    let mut c1 = l1.client().await;
    let mut c2 = l2.client().await;

    c.regtest.mine(101).await;
    let (_, addr_a, _) = c.owner_ctl(&a, &["newaddr"]);
    let addr_l1 = c1
        .new_address(api::NewAddressRequest {})
        .await?
        .into_inner()
        .address;
    c.regtest.send(addr_a.trim(), 1.0).await;
    c.regtest.send(&addr_l1, 1.0).await;
    c.regtest.mine(6).await;
    wait::until("funds", Duration::from_secs(60), || {
        let mut c1 = c1.clone();
        let a = &a;
        async move {
            let x = c.owner_json(a, &["balances"]);
            let y = c1
                .balances(api::BalancesRequest {})
                .await
                .ok()?
                .into_inner();
            (x["onchain_spendable_sats"].as_u64()? >= 100_000_000
                && y.onchain_spendable_sats >= 100_000_000)
                .then_some(())
        }
    })
    .await;
    let b_port = port_of(
        c.owner_json(&b, &["getinfo"])["listening_addresses"][0]
            .as_str()
            .unwrap(),
    );
    let (ok, channel_id, err) = c.owner_ctl(
        &a,
        &[
            "open-channel",
            &format!("{}@127.0.0.1:{b_port}", b.node_id),
            "1000000",
        ],
    );
    anyhow::ensure!(ok, "open-channel: {err}");
    let channel_id = channel_id.trim().to_string();
    c1.open_channel(api::OpenChannelRequest {
        node_id: l2.node_id.clone(),
        address: l2.ln_addr.clone(),
        amount_sats: 1_000_000,
        push_msat: 0,
        announce: false,
    })
    .await?;
    c.regtest
        .mine_after_broadcast("funding transactions", 2, 6)
        .await;
    wait::until("usable channels", Duration::from_secs(120), || {
        let mut c1 = c1.clone();
        let a = &a;
        async move {
            let x = c.owner_json(a, &["channels", "--format", "json"]);
            let y = c1
                .list_channels(api::ListChannelsRequest {})
                .await
                .ok()?
                .into_inner();
            (x.as_array()?.iter().any(|ch| ch["is_usable"] == true)
                && y.channels.iter().any(|ch| ch.is_usable))
            .then_some(())
        }
    })
    .await;

    let mut ha = c.node_client(&a).await?;
    let mut hb = c.node_client(&b).await?;
    let (mut hosted, mut local) = (Vec::new(), Vec::new());
    for i in 0..n {
        for (from, to, out) in [
            (&mut ha, &mut hb, &mut hosted),
            (&mut c1, &mut c2, &mut local),
        ] {
            let invoice = to
                .create_invoice(api::CreateInvoiceRequest {
                    amount_msat: 1_000_000,
                    description: format!("bench {i}"),
                    expiry_secs: 600,
                })
                .await?
                .into_inner();
            let t = Instant::now();
            let paid = from
                .pay(api::PayRequest {
                    bolt11: invoice.bolt11,
                    amount_msat: 0,
                })
                .await?
                .into_inner()
                .payment
                .context("a payment")?;
            out.push(t.elapsed());
            anyhow::ensure!(
                paid.status == api::PaymentStatus::Succeeded as i32,
                "payment failed: {paid:?}"
            );
        }
    }
    let (hp50, hp99, _) = summary(&hosted);
    let (lp50, lp99, _) = summary(&local);
    println!("## payments between two nodes, {n} each, interleaved");
    println!(
        "replicated state ({managers} managers): p50 {:.1} ms, p99 {:.1} ms",
        ms(hp50),
        ms(hp99)
    );
    println!(
        "local SQLite (peer):          p50 {:.1} ms, p99 {:.1} ms",
        ms(lp50),
        ms(lp99)
    );
    println!(
        "ratio replicated / local: p50 {:.2}x, p99 {:.2}x",
        ms(hp50) / ms(lp50),
        ms(hp99) / ms(lp99)
    );
    Ok(Pair { a, b, channel_id })
}

/// What both nodes hold: on-chain, channel balances (claimable ones included) and
/// closed channels' outputs waiting to be swept.
async fn holdings<C: Cluster>(c: &HostingCluster<C>, p: &Pair) -> i64 {
    let mut total = 0;
    for o in [&p.a, &p.b] {
        let b = wait::until("balances", Duration::from_secs(60), || async {
            let (ok, out, _) = c.owner_ctl(o, &["balances"]);
            ok.then(|| serde_json::from_str::<serde_json::Value>(&out).ok())
                .flatten()
        })
        .await;
        total += b["onchain_total_sats"].as_i64().unwrap_or(0)
            + b["lightning_sats"].as_i64().unwrap_or(0)
            + b["pending_sweep_sats"].as_i64().unwrap_or(0);
    }
    total
}

/// `Some(usable)` for the channel, `None` when the node no longer has it; `Err`
/// when the node did not answer.
fn channel_state<C: Cluster>(
    c: &HostingCluster<C>,
    o: &Owner,
    id: &str,
) -> Result<Option<bool>, ()> {
    let (ok, out, _) = c.owner_ctl(o, &["channels", "--format", "json"]);
    let chans: serde_json::Value = ok
        .then(|| serde_json::from_str(&out).ok())
        .flatten()
        .ok_or(())?;
    Ok(chans
        .as_array()
        .and_then(|a| a.iter().find(|ch| ch["channel_id"] == id))
        .map(|ch| ch["is_usable"] == true))
}

/// What a crash-window run kills.
#[derive(Clone, Copy, Debug)]
enum Kill {
    /// A's process; its agent restarts it in place.
    Node,
    /// A's agent (1 s heartbeat); A stops when the lease runs out (cleanly, if it
    /// can, in the last second) and fails over to the other agent.
    Agent,
}

/// `kills` times: a burst of payments from A to B, and kill -9 of A's process (or
/// agent) at a random moment 20-300 ms into it. Counts the channels LDK force-closes
/// on restart and the change in what the two nodes hold.
async fn crash_window<C: Cluster>(
    c: &mut HostingCluster<C>,
    p: &Pair,
    kills: usize,
    what: Kill,
) -> Result<()> {
    use rand::Rng;
    if kills == 0 {
        return Ok(());
    }
    if matches!(what, Kill::Agent) {
        set_heartbeat(&c.manager, 1000, 3).await;
    }
    let mut channel_id = p.channel_id.clone();
    let (mut closed, mut deltas) = (0usize, Vec::new());
    for k in 0..kills {
        let before = holdings(c, p).await;
        let mut invoices = Vec::new();
        for i in 0..20 {
            let (ok, inv, err) = c.owner_ctl(
                &p.b,
                &[
                    "invoice",
                    "100000",
                    "--description",
                    &format!("burst {k} {i}"),
                ],
            );
            anyhow::ensure!(ok, "invoice: {err}");
            invoices.push(inv.trim().to_string());
        }
        let mut client = c.node_client(&p.a).await?;
        let burst = tokio::spawn(async move {
            for bolt11 in invoices {
                let _ = client
                    .pay(api::PayRequest {
                        bolt11,
                        amount_msat: 0,
                    })
                    .await;
            }
        });
        let delay = rand::thread_rng().gen_range(20..300);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let old_agent = c.inspect(&p.a.node_id)["agent_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let killed_agent = match what {
            Kill::Node => {
                let pid = node_processes(&c.dir)
                    .get(&p.a.node_id)
                    .and_then(|v| v.first().copied())
                    .context("A's process")?;
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )?;
                None
            }
            Kill::Agent => {
                let i = c.agent_index(&old_agent);
                c.agents[i].kill9();
                Some(i)
            }
        };
        let _ = burst.await;
        let c_ref = &*c;
        wait::until("A to serve again", Duration::from_secs(120), || async {
            let n = c_ref.try_inspect(&p.a.node_id)?;
            (n["state"] == "running"
                && (killed_agent.is_none() || n["agent_id"] != old_agent.as_str()))
            .then_some(())
        })
        .await;
        if let Some(i) = killed_agent {
            c.agents[i].start();
            c.wait_agents_ready().await;
        }
        let c = &*c;
        // Usable again within a minute, or closed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let kept = loop {
            match channel_state(c, &p.a, &channel_id) {
                Ok(Some(true)) => break true,
                Ok(None) => break false,
                _ if Instant::now() > deadline => break false,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = holdings(c, p).await;
        deltas.push(after - before);
        println!(
            "{what:?} kill {k} at {delay} ms: channel {}; holdings {before} -> {after} sats ({:+})",
            if kept { "kept" } else { "force-closed" },
            after - before
        );
        if !kept {
            closed += 1;
            let b_port = port_of(
                c.owner_json(&p.b, &["getinfo"])["listening_addresses"][0]
                    .as_str()
                    .unwrap(),
            );
            c.regtest.mine(6).await;
            let (ok, id, err) = c.owner_ctl(
                &p.a,
                &[
                    "open-channel",
                    &format!("{}@127.0.0.1:{b_port}", p.b.node_id),
                    "1000000",
                ],
            );
            anyhow::ensure!(ok, "reopen: {err}");
            channel_id = id.trim().to_string();
            c.regtest
                .mine_after_broadcast("the new funding transaction", 1, 6)
                .await;
            wait::until("the new channel", Duration::from_secs(120), || async {
                (channel_state(c, &p.a, &channel_id) == Ok(Some(true))).then_some(())
            })
            .await;
        }
    }
    println!(
        "## crash window ({what:?} kills): {closed} of {kills} kills during a payment burst force-closed the channel; holdings change per kill: min {:+} max {:+} sats",
        deltas.iter().min().unwrap_or(&0),
        deltas.iter().max().unwrap_or(&0)
    );
    Ok(())
}

async fn failover(runs: usize, period_ms: u64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut c = HostingCluster::start(tmp.path(), 3).await;
    set_heartbeat(&c.manager, period_ms, 3).await;
    let a = c.register("a");
    let (ok, _, err) = c.owner_ctl(&a, &["schedule"]);
    anyhow::ensure!(ok, "schedule: {err}");
    let mut control = ControlClient::new(c.manager.channel_as(Some(&c.manager.operator())).await);
    let mut took = Vec::new();
    for _ in 0..runs {
        let node = control
            .inspect_hosted_node(InspectHostedNodeRequest {
                node_id: a.node_id.clone(),
            })
            .await?
            .into_inner();
        let i = c.agent_index(&node.agent_id);
        c.agents[i].kill9();
        let t = Instant::now();
        loop {
            let n = control
                .inspect_hosted_node(InspectHostedNodeRequest {
                    node_id: a.node_id.clone(),
                })
                .await?
                .into_inner();
            if n.agent_id != node.agent_id && n.state == api::HostedNodeState::Running as i32 {
                if let Ok(mut client) = c.node_client(&a).await {
                    if client.get_info(api::GetInfoRequest {}).await.is_ok() {
                        break;
                    }
                }
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(120),
                "no failover in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        took.push(t.elapsed());
        c.agents[i].start();
        c.wait_agents_ready().await;
    }
    let ttl = Duration::from_millis(period_ms * 3);
    let (p50, _, max) = summary(&took);
    println!("## failover, agent kill -9 -> GetInfo from another agent, {runs} runs");
    println!(
        "heartbeat {period_ms} ms (TTL {:.0} ms): p50 {:.0} ms, max {:.0} ms; p50 - TTL = {:.0} ms",
        ms(ttl),
        ms(p50),
        ms(max),
        ms(p50) - ms(ttl)
    );
    Ok(())
}
