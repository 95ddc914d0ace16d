//! Starting and stopping the local cluster's processes. Each writes its log to
//! `DIR/logs/<name>.log`; stopping sends SIGTERM (agents stop their nodes cleanly),
//! waits, and kills what is left.

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use lnswarm_common::{
    api::{
        control_client::ControlClient, AgentState, GetClusterInfoRequest, GetJoinTokenRequest,
        JoinRole, ListAgentsRequest,
    },
    credentials::Credentials,
    pki::Role,
    tls,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use rand::RngCore;
use serde_json::json;
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use super::regtest_rpc::RegtestRpc;

pub struct LocalCluster {
    pub dir: PathBuf,
    /// Whether `dir` is ours to delete when done.
    temporary: bool,
    children: Vec<(String, Child)>,
    pub regtest: RegtestRpc,
    pub managers: Vec<String>,
    pub operator_dir: PathBuf,
    pub ca_digest: String,
}

fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// A workspace binary next to lnswarmctl.
fn binary(name: &str) -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to lnswarmctl; build everything with `cargo build --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl LocalCluster {
    pub async fn start(dir: Option<PathBuf>, managers: usize, agents: usize) -> Result<Self> {
        let (dir, temporary) = match dir {
            Some(d) => (d, false),
            None => {
                let mut r = [0u8; 4];
                rand::thread_rng().fill_bytes(&mut r);
                (
                    std::env::temp_dir().join(format!("lnswarm-dev-{}", hex::encode(r))),
                    true,
                )
            }
        };
        std::fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::fs::canonicalize(&dir)?;
        let mut password = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut password);
        let mut cluster = LocalCluster {
            regtest: RegtestRpc {
                addr: free_addr()?,
                user: "lnswarm".into(),
                password: hex::encode(password),
            },
            operator_dir: dir.join("manager-1").join("operator"),
            dir,
            temporary,
            children: Vec::new(),
            managers: Vec::new(),
            ca_digest: String::new(),
        };
        if let Err(e) = cluster.start_processes(managers, agents).await {
            cluster.stop().await;
            return Err(e);
        }
        Ok(cluster)
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) -> Result<()> {
        let log = std::fs::File::create(self.dir.join("logs").join(format!("{name}.log")))?;
        cmd.stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    async fn start_processes(&mut self, managers: usize, agents: usize) -> Result<()> {
        println!("starting a local cluster in {}", self.dir.display());
        let mut cmd = Command::new(binary("lnswarm-regtest")?);
        cmd.arg("--data-dir")
            .arg(self.dir.join("chain"))
            .args([
                "--rpc-bind",
                &self.regtest.addr,
                "--rpc-user",
                &self.regtest.user,
            ])
            .env("LNSWARM_REGTEST_RPC_PASSWORD", &self.regtest.password);
        self.spawn("regtest", cmd)?;
        poll("the regtest chain", Duration::from_secs(30), || async {
            self.regtest.call("getblockchaininfo", json!([])).await.ok()
        })
        .await?;
        println!(
            "  regtest chain (bitcoind RPC stand-in) on {}",
            self.regtest.addr
        );

        let first = free_addr()?;
        let mut cmd = Command::new(binary("lnswarm-manager")?);
        cmd.args(["init", "--serve", "--data-dir"])
            .arg(self.dir.join("manager-1"))
            .args(["--listen", &first]);
        self.spawn("manager-1", cmd)?;
        self.managers.push(first.clone());
        let mut control = poll("the first manager", Duration::from_secs(30), || async {
            self.control_to(&first).await.ok()
        })
        .await?;
        println!("  manager-1 on {first}");

        if managers > 1 {
            let token = control
                .get_join_token(GetJoinTokenRequest {
                    role: JoinRole::Manager as i32,
                    rotate: false,
                })
                .await?
                .into_inner()
                .token;
            for i in 2..=managers {
                let addr = free_addr()?;
                let mut cmd = Command::new(binary("lnswarm-manager")?);
                cmd.args(["join", "--data-dir"])
                    .arg(self.dir.join(format!("manager-{i}")))
                    .args(["--listen", &addr, "--manager", &first])
                    .env("LNSWARM_MANAGER_TOKEN", &token);
                self.spawn(&format!("manager-{i}"), cmd)?;
                poll(&format!("manager-{i}"), Duration::from_secs(60), || async {
                    self.control_to(&addr).await.ok()
                })
                .await?;
                self.managers.push(addr.clone());
                println!("  manager-{i} on {addr}");
            }
        }

        // Hosted nodes learn the chain from the cluster's settings.
        let (host, port) = self.regtest.addr.rsplit_once(':').expect("host:port");
        let update = lnswarm_common::api::ClusterSettingsUpdate {
            network: Some("regtest".into()),
            chain_source: Some(lnswarm_common::api::ChainSource {
                source: Some(lnswarm_common::api::chain_source::Source::BitcoindRpc(
                    lnswarm_common::api::BitcoindRpc {
                        host: host.into(),
                        port: port.parse()?,
                        user: self.regtest.user.clone(),
                        password: self.regtest.password.clone(),
                    },
                )),
            }),
            ..Default::default()
        };
        control
            .update_cluster_settings(lnswarm_common::api::UpdateClusterSettingsRequest {
                update: Some(update),
            })
            .await?;
        let info = control
            .get_cluster_info(GetClusterInfoRequest {})
            .await?
            .into_inner();
        self.ca_digest = info.root_ca_digest;
        // Owners register through this app credential (registration is gated by
        // an invite code or an app by default).
        crate::app::create(&mut control, "dev", &self.app_dir()).await?;

        let token = control
            .get_join_token(GetJoinTokenRequest {
                role: JoinRole::Worker as i32,
                rotate: false,
            })
            .await?
            .into_inner()
            .token;
        for i in 1..=agents {
            let data_dir = self.dir.join(format!("agent-{i}"));
            let status = Command::new(binary("lnswarm-agent")?)
                .args(["join", "--data-dir"])
                .arg(&data_dir)
                .args(["--manager", &first])
                .env("LNSWARM_JOIN_TOKEN", &token)
                .stdout(Stdio::null())
                .status()
                .await?;
            anyhow::ensure!(status.success(), "agent-{i} could not join");
            let base = 30_000 + 100 * i as u32;
            let mut cmd = Command::new(binary("lnswarm-agent")?);
            cmd.args(["run", "--data-dir"])
                .arg(&data_dir)
                .args(["--port-range", &format!("{}-{}", base, base + 99)]);
            self.spawn(&format!("agent-{i}"), cmd)?;
        }
        poll(
            "the agents to be READY",
            Duration::from_secs(60),
            || async {
                let agents_ready = control
                    .clone()
                    .list_agents(ListAgentsRequest {})
                    .await
                    .ok()?
                    .into_inner()
                    .agents
                    .iter()
                    .filter(|a| {
                        a.status
                            .as_ref()
                            .is_some_and(|s| s.state == AgentState::Ready as i32)
                    })
                    .count();
                (agents_ready >= agents).then_some(())
            },
        )
        .await?;
        println!("  {agents} agent(s) READY");
        Ok(())
    }

    /// The app credential owners register with.
    pub fn app_dir(&self) -> PathBuf {
        self.dir.join("app")
    }

    async fn control_to(&self, addr: &str) -> Result<ControlClient<Channel>> {
        let creds = Credentials::load(&self.operator_dir)?;
        let channel = tls::connect(addr, &creds.client_tls()?, Role::Manager).await?;
        let mut control = ControlClient::new(channel);
        control.get_cluster_info(GetClusterInfoRequest {}).await?;
        Ok(control)
    }

    pub fn print_usage(&self) {
        let m = &self.managers[0];
        let op = self.operator_dir.display();
        println!();
        println!("lnswarm is running. In another shell:");
        println!(
            "  export LNSWARM_MANAGER={m} LNSWARM_CREDENTIALS={op} LNSWARM_APP_CREDENTIALS={}",
            self.app_dir().display()
        );
        println!("  lnswarmctl cluster info");
        println!("  lnswarmctl agent ls");
        println!(
            "  lnswarmctl node register --ca-digest {} --profile alice",
            self.ca_digest
        );
        println!("  lnswarmctl node schedule --profile alice");
        println!("  lnswarmctl node getinfo --profile alice");
        println!(
            "regtest chain RPC: http://{}:{}@{} (generatetoaddress, sendtoaddress)",
            self.regtest.user, self.regtest.password, self.regtest.addr
        );
        println!("logs: {}", self.dir.join("logs").display());
        println!("Ctrl-C stops everything.");
        println!();
    }

    /// SIGTERM to agents first (they stop their nodes), then managers, then the chain.
    pub async fn stop(&mut self) {
        let mut order: Vec<(String, Child)> = std::mem::take(&mut self.children);
        order.sort_by_key(|(name, _)| match name.split('-').next() {
            Some("agent") => 0,
            Some("manager") => 1,
            _ => 2,
        });
        for (name, mut child) in order {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
            match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("{name} did not stop in 30s; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub fn profiles(&self) -> PathBuf {
        self.dir.join("profiles")
    }
}
