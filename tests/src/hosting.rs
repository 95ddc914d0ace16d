//! A whole hosting cluster for end-to-end tests: the regtest chain, one manager with
//! a short heartbeat, agents with distinct port ranges, owners registered through
//! `lnswarmctl`, and a watch over the process table that records any moment a node
//! id runs in two processes.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lnswarm_common::{api::node_client::NodeClient, credentials::Credentials};
use serde_json::Value;
use tonic::transport::Channel;

use crate::{
    agents::{agent_states, set_heartbeat, TestAgent},
    bin_path,
    cluster::ManagerCluster,
    lightning::{Regtest, RPC_PASSWORD, RPC_USER},
    manager::TestManager,
    process::run,
    wait, Cluster,
};

pub struct Owner {
    pub name: String,
    pub profile: PathBuf,
    pub node_id: String,
    pub creds: Credentials,
    /// The 24 words `register` showed once.
    pub mnemonic: String,
}

/// An owner's node, registered and scheduled ([`HostingCluster::host`]).
pub struct Hosted {
    pub owner: Owner,
    /// The Node API address Schedule printed.
    pub uri: String,
    /// The agent it runs on.
    pub agent: String,
}

pub struct HostingCluster<C: Cluster = TestManager> {
    pub dir: PathBuf,
    pub regtest: Regtest,
    pub manager: C,
    pub agents: Vec<TestAgent>,
}

impl HostingCluster<TestManager> {
    pub async fn start(dir: &Path, agents: usize) -> Self {
        Self::start_with_ca(dir, agents, None).await
    }

    /// Like [`Self::start`], on the test's own root CA when given.
    pub async fn start_with_ca(
        dir: &Path,
        agents: usize,
        ca: Option<&crate::certs::TestCa>,
    ) -> Self {
        let regtest = Regtest::start(dir).await;
        let manager = TestManager::init(dir, ca).await;
        Self::around(dir, regtest, manager, agents).await
    }
}

impl HostingCluster<ManagerCluster> {
    /// A quorum of `managers` and `agents` agents.
    pub async fn start_quorum(dir: &Path, managers: usize, agents: usize) -> Self {
        Self::start_quorum_with(dir, managers, agents, &[]).await
    }

    /// Like [`Self::start_quorum`], with flags for every manager
    /// (`--webhook-ca-file F`).
    pub async fn start_quorum_serving(
        dir: &Path,
        managers: usize,
        agents: usize,
        flags: &[&str],
    ) -> Self {
        Self::start_quorum_configured(dir, managers, agents, flags, &[]).await
    }

    /// Like [`Self::start_quorum`], with flags for the first manager's `init`.
    pub async fn start_quorum_with(
        dir: &Path,
        managers: usize,
        agents: usize,
        init_flags: &[&str],
    ) -> Self {
        Self::start_quorum_configured(dir, managers, agents, &[], init_flags).await
    }

    async fn start_quorum_configured(
        dir: &Path,
        managers: usize,
        agents: usize,
        flags: &[&str],
        init_flags: &[&str],
    ) -> Self {
        let regtest = Regtest::start(dir).await;
        let cluster =
            ManagerCluster::start_configured(dir, managers, flags, init_flags, None).await;
        Self::around(dir, regtest, cluster, agents).await
    }
}

impl<C: Cluster> HostingCluster<C> {
    /// Points `manager` at the chain, with a short heartbeat, and joins agents.
    async fn around(dir: &Path, regtest: Regtest, manager: C, agents: usize) -> Self {
        set_heartbeat(&manager, 500, 3).await;
        let mut update = manager.ctl();
        update.args([
            "cluster",
            "update",
            "--bitcoind-rpc",
            &format!("{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{}", regtest.port),
        ]);
        let (status, out, err) = run(update);
        assert!(status.success(), "cluster update: {out}{err}");
        let mut app = manager.ctl();
        app.args(["app", "create", "tests", "--out"])
            .arg(dir.join("app"));
        let (status, out, err) = run(app);
        assert!(status.success(), "app create: {out}{err}");
        let base = 40_000 + (std::process::id() % 200) as usize * 100;
        let mut list = Vec::new();
        for i in 0..agents {
            let mut a = TestAgent::join(&manager, dir, &format!("agent-{i}"));
            let first = base + i * 50;
            a.port_range = Some(format!("{first}-{}", first + 49));
            a.start();
            list.push(a);
        }
        let c = HostingCluster {
            dir: dir.to_path_buf(),
            regtest,
            manager,
            agents: list,
        };
        c.wait_agents_ready().await;
        c
    }

    pub async fn wait_agents_ready(&self) {
        let n = self.agents.len();
        wait::until("agents to be READY", Duration::from_secs(30), || async {
            let ready = agent_states(&self.manager)
                .iter()
                .filter(|(_, s)| s == "READY")
                .count();
            (ready >= n).then_some(())
        })
        .await;
    }

    pub fn ca_digest(&self) -> String {
        let mut cmd = self.manager.ctl();
        cmd.args(["cluster", "info", "--format", "json"]);
        let (_, out, _) = run(cmd);
        let v: Value = serde_json::from_str(&out).expect("cluster info JSON");
        v["root_ca_digest"].as_str().unwrap().to_string()
    }

    /// `lnswarmctl node register` into a profile under the test's directory.
    pub fn register(&self, name: &str) -> Owner {
        self.register_seed(name, None)
    }

    /// As [`HostingCluster::register`], bringing the node of `mnemonic` when given.
    pub fn register_seed(&self, name: &str, mnemonic: Option<&str>) -> Owner {
        let profile = self.dir.join("profiles").join(name);
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.args(["--manager", &self.manager.manager_arg(), "--profile-dir"])
            .arg(&profile)
            .args([
                "node",
                "register",
                "--ca-digest",
                &self.ca_digest(),
                "--device",
                name,
                "--app",
            ])
            .arg(self.dir.join("app"));
        if let Some(words) = mnemonic {
            let file = self.dir.join(format!("{name}.mnemonic"));
            std::fs::write(&file, words).unwrap();
            cmd.arg("--mnemonic-file").arg(file);
        }
        let (status, out, err) = run(cmd);
        assert!(status.success(), "register {name}: {out}{err}");
        let node_id = out
            .lines()
            .find_map(|l| l.strip_prefix("node id: "))
            .unwrap()
            .to_string();
        Owner {
            name: name.into(),
            mnemonic: mnemonic.map_or_else(
                || out.lines().last().unwrap_or_default().trim().to_string(),
                str::to_string,
            ),
            creds: Credentials::load(&profile).unwrap(),
            profile,
            node_id,
        }
    }

    /// `lnswarmctl --profile-dir <owner> node <args>`: (success, stdout, stderr).
    pub fn owner_ctl(&self, owner: &Owner, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.args(["--manager", &self.manager.manager_arg(), "--profile-dir"])
            .arg(&owner.profile)
            .arg("node")
            .args(args);
        let (status, out, err) = run(cmd);
        (status.success(), out, err)
    }

    /// Like [`Self::owner_ctl`], parsing JSON output and failing the test on error.
    pub fn owner_json(&self, owner: &Owner, args: &[&str]) -> Value {
        let (ok, out, err) = self.owner_ctl(owner, args);
        assert!(ok, "lnswarmctl node {args:?} as {}: {out}{err}", owner.name);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// `from` pays an invoice of `to` for `msat`; fails the test unless it succeeds.
    pub fn pay(&self, from: &Owner, to: &Owner, msat: u64) {
        let (ok, invoice, err) =
            self.owner_ctl(to, &["invoice", &msat.to_string(), "--description", "x"]);
        assert!(ok, "invoice: {err}");
        let paid = self.owner_json(from, &["pay", invoice.trim()]);
        assert_eq!(
            paid["status"], "succeeded",
            "{} pays {}: {paid}",
            from.name, to.name
        );
    }

    /// `from`, funded on chain with 1 BTC, opens a 500 000 sat channel to `to` and
    /// pays it 25 000 sat over it (so both ends can pay). Returns the channel id.
    pub async fn funded_channel(&self, from: &Owner, to: &Owner) -> String {
        let channel_id = self.open_funded_channel(from, to, 500_000).await;
        self.pay(from, to, 25_000_000);
        // Pay answers at the preimage; the HTLC (and the commitment fee its output
        // costs the opener) leaves both commitments a round trip later. Callers
        // compare balances from here on, so wait until `to` can spend what it got
        // and `from`'s balance holds still.
        let point = self.channel_json(from, &channel_id)["funding_txo"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut last = None;
        wait::until(
            "the first payment to settle on both commitments",
            Duration::from_secs(30),
            || {
                let seen = self.channel_json(to, &point)["max_send_msat"].as_u64();
                let now = self.owner_json(from, &["balances"])["lightning_sats"].clone();
                let steady = last.replace(now.clone()) == Some(now);
                async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    (seen.is_some_and(|m| m > 0) && steady).then_some(())
                }
            },
        )
        .await;
        channel_id
    }

    /// `from`, funded on chain with 1 BTC, opens a channel of `sats` to `to` and
    /// waits until it is usable on both ends; nothing is paid over it. Returns the
    /// channel id as `from` names it.
    pub async fn open_funded_channel(&self, from: &Owner, to: &Owner, sats: u64) -> String {
        self.fund(&[from]).await;
        let channel_id = self.open_channel(from, to, sats);
        self.regtest
            .mine_after_broadcast("the funding transaction", 1, 6)
            .await;
        self.wait_channel_usable_both(from, to, &channel_id).await;
        channel_id
    }

    /// Sends 1 BTC to each owner's node on chain (after maturing coinbase) and
    /// waits until every one can spend it.
    pub async fn fund(&self, owners: &[&Owner]) {
        self.regtest.mine(101).await;
        for o in owners {
            let (_, address, _) = self.owner_ctl(o, &["newaddr"]);
            self.regtest.send(address.trim(), 1.0).await;
        }
        self.regtest.mine(6).await;
        for o in owners {
            wait::until(
                &format!("{}'s funds", o.name),
                Duration::from_secs(60),
                || async {
                    let b = self.owner_json(o, &["balances"]);
                    (b["onchain_spendable_sats"].as_u64()? >= 100_000_000).then_some(())
                },
            )
            .await;
        }
    }

    /// `from` opens a channel of `sats` to `to` at the address `to` listens on;
    /// returns the channel id as `from` names it. The funding transaction is left
    /// unmined.
    pub fn open_channel(&self, from: &Owner, to: &Owner, sats: u64) -> String {
        let info = self.owner_json(to, &["getinfo"]);
        let port = info["listening_addresses"][0]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1
            .to_string();
        let (ok, channel_id, err) = self.owner_ctl(
            from,
            &[
                "open-channel",
                &format!("{}@127.0.0.1:{port}", to.node_id),
                &sats.to_string(),
            ],
        );
        assert!(ok, "open-channel: {err}");
        channel_id.trim().to_string()
    }

    /// Waits until the channel `from` names `channel_id` is usable at `from`'s end
    /// and at `to`'s (found there by its channel point).
    pub async fn wait_channel_usable_both(&self, from: &Owner, to: &Owner, channel_id: &str) {
        self.wait_channel_usable(from, channel_id).await;
        let point = self.channel_json(from, channel_id)["funding_txo"].clone();
        wait::until(
            &format!("{}'s end of the channel to be usable", to.name),
            Duration::from_secs(90),
            || async {
                let chans = self.owner_json(to, &["channels", "--format", "json"]);
                chans
                    .as_array()?
                    .iter()
                    .any(|ch| ch["funding_txo"] == point && ch["is_usable"] == true)
                    .then_some(())
            },
        )
        .await;
    }

    /// `owner`'s channel as `channels --format json` shows it, found by its channel
    /// id or channel point (TXID:VOUT, the same at both ends).
    pub fn channel_json(&self, owner: &Owner, channel: &str) -> Value {
        let chans = self.owner_json(owner, &["channels", "--format", "json"]);
        chans
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|ch| ch["channel_id"] == channel || ch["funding_txo"] == channel)
            })
            .cloned()
            .unwrap_or_else(|| panic!("{} has no channel {channel}: {chans}", owner.name))
    }

    /// The operator's view of one hosted node, or `None` while the cluster does not
    /// answer (an election).
    pub fn try_inspect(&self, node_id: &str) -> Option<Value> {
        let mut cmd = self.manager.ctl();
        cmd.args(["node", "inspect", node_id, "--format", "json"]);
        let (status, out, _) = run(cmd);
        status
            .success()
            .then(|| serde_json::from_str(&out).ok())
            .flatten()
    }

    /// The operator's view of one hosted node.
    pub fn inspect(&self, node_id: &str) -> Value {
        let mut cmd = self.manager.ctl();
        cmd.args(["node", "inspect", node_id, "--format", "json"]);
        let (status, out, err) = run(cmd);
        assert!(status.success(), "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// `lnswarmctl node schedule` as `owner`, which must succeed; returns the Node
    /// API address it prints.
    pub fn schedule(&self, owner: &Owner) -> String {
        let (ok, uri, err) = self.owner_ctl(owner, &["schedule"]);
        assert!(ok, "schedule {}: {err}", owner.name);
        uri.trim().to_string()
    }

    /// The agent `owner`'s node runs on, as the operator sees it.
    pub fn agent_of(&self, owner: &Owner) -> String {
        self.inspect(&owner.node_id)["agent_id"]
            .as_str()
            .expect("the node's agent")
            .to_string()
    }

    /// The first steps of most hosting tests: registers `name`'s node, schedules
    /// it, and finds the agent it runs on.
    pub fn host(&self, name: &str) -> Hosted {
        let owner = self.register(name);
        let uri = self.schedule(&owner);
        let agent = self.agent_of(&owner);
        Hosted { owner, uri, agent }
    }

    /// Waits until the operator sees `owner`'s node running on an agent that `on`
    /// accepts, through elections; returns that agent.
    pub async fn wait_running(
        &self,
        owner: &Owner,
        what: &str,
        timeout: Duration,
        on: impl Fn(&str) -> bool,
    ) -> String {
        wait::until(what, timeout, || async {
            let n = self.try_inspect(&owner.node_id)?;
            let agent = n["agent_id"].as_str()?;
            (n["state"] == "running" && on(agent)).then(|| agent.to_string())
        })
        .await
    }

    /// The `lnswarm-node` processes running `owner`'s node under this cluster.
    pub fn node_pids(&self, owner: &Owner) -> Vec<u32> {
        node_processes(&self.dir)
            .remove(&owner.node_id)
            .unwrap_or_default()
    }

    /// Kills `owner`'s node process (SIGKILL, as a crash) and waits until its agent
    /// has started another; returns the old and the new pid.
    pub async fn crash_node(&self, owner: &Owner) -> (u32, u32) {
        let crashed = self.node_pids(owner)[0];
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(crashed as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let restarted = wait::until(
            &format!("{}'s node to be restarted", owner.name),
            Duration::from_secs(60),
            || async { self.node_pids(owner).into_iter().find(|p| *p != crashed) },
        )
        .await;
        (crashed, restarted)
    }

    /// Waits until `owner`'s channel `channel_id` is usable (peers reconnect after
    /// a move or a restart).
    pub async fn wait_channel_usable(&self, owner: &Owner, channel_id: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let chans = self.owner_json(owner, &["channels", "--format", "json"]);
            let usable = chans.as_array().is_some_and(|a| {
                a.iter()
                    .any(|ch| ch["channel_id"] == channel_id && ch["is_usable"] == true)
            });
            if usable {
                return;
            }
            if std::time::Instant::now() > deadline {
                let peers = self.owner_ctl(owner, &["peers"]);
                panic!(
                    "{}'s channel is not usable after 90 s: {chans}\npeers: {peers:?}",
                    owner.name
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A Node API client for `owner`'s hosted node, at the address the operator
    /// sees now, with the owner's certificate.
    pub async fn node_client(&self, owner: &Owner) -> anyhow::Result<NodeClient<Channel>> {
        let node = self
            .try_inspect(&owner.node_id)
            .ok_or_else(|| anyhow::anyhow!("the cluster does not answer"))?;
        let uri = node["grpc_uri"]
            .as_str()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| anyhow::anyhow!("{} has no Node API address", owner.name))?;
        node_client_at(uri, owner).await
    }

    pub fn agent_index(&self, agent_id: &str) -> usize {
        self.agents
            .iter()
            .position(|a| a.id == agent_id)
            .unwrap_or_else(|| panic!("no agent {agent_id}"))
    }
}

/// A Node API client for `owner`'s node at `uri` (`https://host:port`).
pub async fn node_client_at(uri: &str, owner: &Owner) -> anyhow::Result<NodeClient<Channel>> {
    let ch = lnswarm_common::tls::connect(
        uri.trim_start_matches("https://"),
        &owner.creds.client_tls()?,
        lnswarm_common::tls::ServerIdentity {
            role: lnswarm_common::pki::Role::Node,
            id: Some(owner.node_id.clone()),
        },
    )
    .await?;
    Ok(NodeClient::new(ch))
}

/// `lnswarm-node` processes started from this cluster's agents, by node id. The node
/// id is the directory its config lives in: `<agent>/nodes/<node id>/node.json`.
pub fn node_processes(root: &Path) -> HashMap<String, Vec<u32>> {
    let root = root.to_string_lossy().to_string();
    let mut found: HashMap<String, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.first().is_some_and(|a| a.ends_with("lnswarm-node")) {
            continue;
        }
        let Some(config) = args
            .iter()
            .find(|a| a.starts_with(&root) && a.ends_with("node.json"))
        else {
            continue;
        };
        if let Some(node_id) = Path::new(config)
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
        {
            found.entry(node_id).or_default().push(pid);
        }
    }
    found
}

/// Scans the process table every 50 ms until stopped, recording every sighting of a
/// node id in more than one process (once per set of processes, with the time since
/// the watch started).
pub struct DuplicateWatch {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl DuplicateWatch {
    pub fn start(root: &Path) -> DuplicateWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let flag = stop.clone();
        let started = std::time::Instant::now();
        let handle = std::thread::spawn(move || {
            let mut violations = Vec::new();
            let mut reported = std::collections::HashSet::new();
            while !flag.load(Ordering::Relaxed) {
                for (node, mut pids) in node_processes(&root) {
                    pids.sort_unstable();
                    if pids.len() > 1 && reported.insert((node.clone(), pids.clone())) {
                        violations.push(format!(
                            "at {:.2} s node {node} ran in processes {pids:?}",
                            started.elapsed().as_secs_f64()
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            violations
        });
        DuplicateWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops watching; returns what it saw.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}
