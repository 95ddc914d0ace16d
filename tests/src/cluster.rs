//! A quorum of real managers for tests: `init` one, `join` the others with the
//! manager token, kill and restart them, and find the leader through
//! `lnswarmctl manager ls`. Writes used by the quorum tests are certificate
//! issuances (what every joining agent does): each acknowledged one is a distinct
//! object that any holder can look up on any manager.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lnswarm_common::{
    api::{
        ca_client::CaClient, control_client::ControlClient, GetJoinTokenRequest, IssuanceState,
        IssueNodeCertificateRequest, JoinRole, NodeCertificateStatusRequest,
    },
    credentials::Credentials,
    pki::{new_key_and_csr, Role},
    tls,
};
use tonic::transport::Channel;

use crate::{bin_path, free_addr, process::Proc, wait};

pub struct ClusterManager {
    pub name: String,
    pub addr: String,
    pub data_dir: PathBuf,
    pub proc: Option<Proc>,
}

impl ClusterManager {
    /// The manager id recorded in its data directory.
    pub fn id(&self) -> String {
        let text =
            std::fs::read_to_string(self.data_dir.join("manager.json")).expect("manager.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("manager.json is JSON");
        v["id"].as_str().expect("id").to_string()
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

pub struct ManagerCluster {
    pub dir: PathBuf,
    pub managers: Vec<ClusterManager>,
    /// Extra flags every manager gets (raft tuning).
    pub flags: Vec<String>,
    operator: PathBuf,
    token: String,
}

/// A member as `lnswarmctl manager ls --format json` shows it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub addr: String,
    pub leader: bool,
    pub reachable: bool,
    pub term: u64,
    pub applied: u64,
}

impl ManagerCluster {
    /// `init` one manager and `join` `n - 1` more through it.
    pub async fn start(dir: &Path, n: usize, flags: &[&str]) -> ManagerCluster {
        Self::start_with_ca(dir, n, flags, None).await
    }

    /// Like [`Self::start`], on the test's own root CA when given.
    pub async fn start_with_ca(
        dir: &Path,
        n: usize,
        flags: &[&str],
        ca: Option<&crate::certs::TestCa>,
    ) -> ManagerCluster {
        Self::start_configured(dir, n, flags, &[], ca).await
    }

    /// Like [`Self::start_with_ca`], with flags for `init` only
    /// (`--cert-expiry 20s`).
    pub async fn start_configured(
        dir: &Path,
        n: usize,
        flags: &[&str],
        init_flags: &[&str],
        ca: Option<&crate::certs::TestCa>,
    ) -> ManagerCluster {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let addr = free_addr();
        let data_dir = dir.join("m0");
        let mut cmd = Command::new(bin_path("lnswarm-manager"));
        cmd.args(["init", "--serve", "--data-dir"])
            .arg(&data_dir)
            .args(["--listen", &addr])
            .args(&flags)
            .args(init_flags);
        if let Some(ca) = ca {
            let (cert, key) = ca.write(dir);
            cmd.arg("--ca-cert").arg(cert).arg("--ca-key").arg(key);
        }
        let proc = Proc::spawn("m0", cmd, dir);
        let operator = data_dir.join("operator");
        let mut cluster = ManagerCluster {
            dir: dir.to_path_buf(),
            managers: vec![ClusterManager {
                name: "m0".into(),
                addr,
                data_dir,
                proc: Some(proc),
            }],
            flags,
            operator,
            token: String::new(),
        };
        let token = wait::until(
            "the first manager to serve",
            Duration::from_secs(60),
            || {
                let c = &cluster;
                async move {
                    c.control(0)
                        .await?
                        .get_join_token(GetJoinTokenRequest {
                            role: JoinRole::Manager as i32,
                            rotate: false,
                        })
                        .await
                        .ok()
                        .map(|r| r.into_inner().token)
                }
            },
        )
        .await;
        cluster.token = token;
        for _ in 1..n {
            cluster.join_one().await;
        }
        cluster
    }

    /// Joins one more manager through any running one; waits until every running
    /// manager sees it as a reachable member.
    pub async fn join_one(&mut self) -> usize {
        let i = self.managers.len();
        let name = format!("m{i}");
        let addr = free_addr();
        let data_dir = self.dir.join(&name);
        let via = self.running()[0];
        let mut cmd = Command::new(bin_path("lnswarm-manager"));
        cmd.args(["join", "--data-dir"])
            .arg(&data_dir)
            .args(["--listen", &addr])
            .args(["--token", &self.token])
            .args(["--manager", &self.managers[via].addr])
            .args(&self.flags);
        let proc = Proc::spawn(&name, cmd, &self.dir);
        self.managers.push(ClusterManager {
            name,
            addr: addr.clone(),
            data_dir,
            proc: Some(proc),
        });
        let want = self.running().len();
        wait::until(
            &format!("m{i} to join as a reachable member"),
            Duration::from_secs(60),
            || async {
                let members = self.members(via).await?;
                (members.len() == want && members.iter().all(|m| m.reachable)).then_some(())
            },
        )
        .await;
        i
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.managers.len())
            .filter(|i| self.managers[*i].is_running())
            .collect()
    }

    pub fn operator(&self) -> Credentials {
        Credentials::load(&self.operator).expect("operator credentials")
    }

    pub fn ca_pem(&self) -> String {
        self.operator().ca_pem
    }

    async fn channel(&self, i: usize, creds: Option<&Credentials>) -> Option<Channel> {
        // Until init has written it, there is no operator credential (nor CA) yet.
        let ca = Credentials::load(&self.operator).ok()?.ca_pem;
        manager_channel(&self.managers[i].addr, &ca, creds).await
    }

    /// The Control API of manager `i` with the operator credential.
    pub async fn control(&self, i: usize) -> Option<ControlClient<Channel>> {
        let op = Credentials::load(&self.operator).ok()?;
        Some(ControlClient::new(self.channel(i, Some(&op)).await?))
    }

    /// `lnswarmctl` against manager `i` with the operator credential.
    pub fn ctl(&self, i: usize) -> Command {
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.env("LNSWARM_MANAGER", &self.managers[i].addr)
            .env("LNSWARM_CREDENTIALS", &self.operator);
        cmd
    }

    /// `lnswarmctl manager ls --format json` through manager `i`.
    pub async fn members(&self, i: usize) -> Option<Vec<Member>> {
        let mut cmd = self.ctl(i);
        cmd.args(["manager", "ls", "--format", "json"]);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .ok()?
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            v.as_array()?
                .iter()
                .map(|m| Member {
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                    addr: m["addr"].as_str().unwrap_or_default().to_string(),
                    leader: m["leader"].as_bool().unwrap_or(false),
                    reachable: m["reachable"].as_bool().unwrap_or(false),
                    term: m["term"].as_u64().unwrap_or(0),
                    applied: m["applied_index"].as_u64().unwrap_or(0),
                })
                .collect(),
        )
    }

    /// Index of the manager every running manager agrees leads (and is reachable).
    pub async fn leader(&self) -> usize {
        wait::until(
            "an agreed, reachable leader",
            Duration::from_secs(60),
            || self.agreed_leader(),
        )
        .await
    }

    /// [`ManagerCluster::leader`] asked once: `None` while the running managers do
    /// not agree on a reachable, running leader.
    pub async fn agreed_leader(&self) -> Option<usize> {
        let mut found = None;
        for i in self.running() {
            let members = self.members(i).await?;
            let leader = members.iter().find(|m| m.leader && m.reachable)?;
            let idx = self.managers.iter().position(|m| m.addr == leader.addr)?;
            if found.is_some_and(|f| f != idx) || !self.managers[idx].is_running() {
                return None;
            }
            found = Some(idx);
        }
        found
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.managers[i].proc.take() {
            p.kill9();
        }
    }

    /// `lnswarm-manager run --data-dir D` (plus `extra` flags).
    pub fn restart(&mut self, i: usize, extra: &[&str]) {
        assert!(self.managers[i].proc.is_none(), "m{i} is running");
        let m = &self.managers[i];
        let mut cmd = Command::new(bin_path("lnswarm-manager"));
        cmd.args(["run", "--data-dir"])
            .arg(&m.data_dir)
            .args(&self.flags)
            .args(extra);
        let proc = Proc::spawn(&m.name, cmd, &self.dir);
        self.managers[i].proc = Some(proc);
    }

    /// A write: a worker certificate issued through manager `i` with the worker
    /// token. Returns the new id and credential once acknowledged.
    pub async fn issue_worker(
        &self,
        i: usize,
        worker_token: &str,
    ) -> Result<(String, Credentials), tonic::Status> {
        self.target(i).issue(worker_token).await
    }

    /// What a writer running in its own task needs to write through manager `i`.
    pub fn target(&self, i: usize) -> WriteTarget {
        WriteTarget {
            addr: self.managers[i].addr.clone(),
            ca_pem: self.ca_pem(),
        }
    }

    /// The worker token, read through manager `i`.
    pub async fn worker_token(&self, i: usize) -> String {
        wait::until("the worker token", Duration::from_secs(30), || async {
            self.control(i)
                .await?
                .get_join_token(GetJoinTokenRequest {
                    role: JoinRole::Worker as i32,
                    rotate: false,
                })
                .await
                .ok()
                .map(|r| r.into_inner().token)
        })
        .await
    }

    /// Whether manager `i` knows the certificate `id` (asked by its holder).
    pub async fn knows(&self, i: usize, id: &str, holder: &Credentials) -> bool {
        let Some(channel) = self.channel(i, Some(holder)).await else {
            return false;
        };
        CaClient::new(channel)
            .node_certificate_status(NodeCertificateStatusRequest {
                node_id: id.to_string(),
            })
            .await
            .map(|r| r.into_inner().state == IssuanceState::Issued as i32)
            .unwrap_or(false)
    }

    /// Waits (bounded) until manager `i` knows every certificate in `written`.
    pub async fn wait_knows_all(&self, i: usize, written: &[(String, Credentials)]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut missing: Vec<&(String, Credentials)> = written.iter().collect();
        loop {
            let mut still = Vec::new();
            for w in missing {
                if !self.knows(i, &w.0, &w.1).await {
                    still.push(w);
                }
            }
            missing = still;
            if missing.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "m{i} still lacks {} of {} acknowledged writes, e.g. {}",
                missing.len(),
                written.len(),
                missing[0].0
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl crate::Cluster for ManagerCluster {
    fn ctl(&self) -> Command {
        let mut cmd = Command::new(bin_path("lnswarmctl"));
        cmd.env("LNSWARM_MANAGER", self.manager_arg())
            .env("LNSWARM_CREDENTIALS", &self.operator);
        cmd
    }

    fn manager_arg(&self) -> String {
        self.running()
            .into_iter()
            .map(|i| self.managers[i].addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn any_addr(&self) -> String {
        self.managers[self.running()[0]].addr.clone()
    }

    fn operator(&self) -> Credentials {
        ManagerCluster::operator(self)
    }

    async fn channel_as(&self, creds: Option<&Credentials>) -> Channel {
        wait::until("a manager to answer", Duration::from_secs(30), || async {
            for i in self.running() {
                if let Some(c) = self.channel(i, creds).await {
                    return Some(c);
                }
            }
            None
        })
        .await
    }
}

/// A channel to the manager at `addr`, trusting `ca`, as `creds` (or anonymous);
/// `None` when it does not answer.
pub async fn manager_channel(addr: &str, ca: &str, creds: Option<&Credentials>) -> Option<Channel> {
    let client_tls = match creds {
        Some(c) => tls::client_config(ca, Some((&c.cert_pem, &c.key_pem))).ok()?,
        None => tls::client_config(ca, None).ok()?,
    };
    tls::connect(addr, &client_tls, Role::Manager).await.ok()
}

/// One manager to write through, detached from the cluster fixture.
#[derive(Clone)]
pub struct WriteTarget {
    pub addr: String,
    pub ca_pem: String,
}

impl WriteTarget {
    /// Issues a worker certificate (one store write); returns it once acknowledged.
    pub async fn issue(&self, worker_token: &str) -> Result<(String, Credentials), tonic::Status> {
        let client_tls = tls::client_config(&self.ca_pem, None)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let channel = tls::connect(&self.addr, &client_tls, Role::Manager)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let key = new_key_and_csr("worker", Some(Role::Worker)).expect("key and CSR");
        let mut req = tonic::Request::new(IssueNodeCertificateRequest {
            csr: key.csr_pem.into_bytes(),
            token: worker_token.to_string(),
            addr: String::new(),
            lease_epoch: 0,
        });
        req.set_timeout(Duration::from_secs(30));
        let issued = CaClient::new(channel)
            .issue_node_certificate(req)
            .await?
            .into_inner();
        Ok((
            issued.node_id,
            Credentials {
                cert_pem: String::from_utf8_lossy(&issued.certificate).into_owned(),
                key_pem: key.key_pem,
                ca_pem: self.ca_pem.clone(),
            },
        ))
    }
}

/// Writes through `targets` in turn from its own task until stopped, keeping every
/// acknowledged write and counting refusals.
pub struct SteadyWriter {
    pub acked: std::sync::Arc<std::sync::Mutex<Vec<(String, Credentials)>>>,
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadyWriter {
    pub fn start(targets: Vec<WriteTarget>, token: String) -> SteadyWriter {
        use std::sync::{atomic::Ordering, Arc, Mutex};
        let acked = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn({
            let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
            async move {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let target = &targets[n % targets.len()];
                    n += 1;
                    match target.issue(&token).await {
                        Ok(w) => acked.lock().unwrap().push(w),
                        Err(_) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        });
        SteadyWriter {
            acked,
            refused,
            stop,
            task,
        }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (bounded) until `n` writes in all were acknowledged.
    pub async fn wait_acked(&self, n: usize, what: &str) {
        wait::until(what, Duration::from_secs(90), || async {
            (self.acked_count() >= n).then_some(())
        })
        .await;
    }

    /// Stops writing; returns every acknowledged write.
    pub async fn stop(self) -> Vec<(String, Credentials)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.task.await;
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}
