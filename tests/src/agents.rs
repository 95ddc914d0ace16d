//! Agents for tests: real `lnswarm-agent` processes joined with a worker token, and a
//! bare dispatcher client (a worker certificate over real mTLS) for tests that drive
//! the protocol by hand. Plus the operator's view through `lnswarmctl ... --format json`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lnswarm_common::{
    api::{
        control_client::ControlClient, dispatcher_client::DispatcherClient, AgentDescription,
        ClusterSettingsUpdate, HeartbeatRequest, SessionMessage, SessionRequest,
        UpdateClusterSettingsRequest,
    },
    credentials::Credentials,
    join::join,
    pki::Role,
    tls,
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::{bin_path, process::run, process::Proc, Cluster};

/// Sets the heartbeat period (ms) and grace multiplier agents are told to use.
pub async fn set_heartbeat(m: &impl Cluster, period_ms: u64, grace: u32) {
    let op = m.operator();
    let mut control = ControlClient::new(m.channel_as(Some(&op)).await);
    control
        .update_cluster_settings(UpdateClusterSettingsRequest {
            update: Some(ClusterSettingsUpdate {
                heartbeat_period_ms: Some(period_ms),
                heartbeat_grace_multiplier: Some(grace),
                ..Default::default()
            }),
        })
        .await
        .expect("update cluster settings");
    // The dispatcher puts settings in force when the change is applied; leave it a
    // moment, since it answers once the change is committed.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The worker join token.
pub fn worker_token(m: &impl Cluster) -> String {
    let mut cmd = m.ctl();
    cmd.args(["cluster", "join-token", "worker"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "join-token failed: {err}");
    out.trim().to_string()
}

/// Runs `lnswarmctl ARGS... --format json` and parses its output.
pub fn ctl_json(m: &impl Cluster, args: &[&str]) -> Value {
    let mut cmd = m.ctl();
    cmd.args(args).args(["--format", "json"]);
    let (status, out, err) = run(cmd);
    assert!(status.success(), "lnswarmctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("lnswarmctl {args:?}: {e}: {out}"))
}

/// `lnswarmctl agent ls --format json`, as (id, state) pairs.
pub fn agent_states(m: &impl Cluster) -> Vec<(String, String)> {
    states_of(&ctl_json(m, &["agent", "ls"]))
}

/// Like [`agent_states`], `None` when lnswarmctl fails (for waits that ride out a
/// busy moment).
pub fn try_agent_states(m: &impl Cluster) -> Option<Vec<(String, String)>> {
    let mut cmd = m.ctl();
    cmd.args(["agent", "ls", "--format", "json"]);
    let (status, out, _) = run(cmd);
    if !status.success() {
        return None;
    }
    Some(states_of(&serde_json::from_str(&out).ok()?))
}

fn states_of(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("agent ls prints an array")
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The state `lnswarmctl agent ls` shows for `id`.
pub fn agent_state(m: &impl Cluster, id: &str) -> Option<String> {
    agent_states(m)
        .into_iter()
        .find(|(a, _)| a == id)
        .map(|(_, s)| s)
}

/// `lnswarmctl task inspect ID --format json`, or None when the task is gone.
pub fn task(m: &impl Cluster, id: &str) -> Option<Value> {
    let mut cmd = m.ctl();
    cmd.args(["task", "inspect", id, "--format", "json"]);
    let (status, out, _) = run(cmd);
    status
        .success()
        .then(|| serde_json::from_str(&out).expect("task inspect prints JSON"))
}

/// `lnswarmctl task create [--agent A] [--secret-file F] -- CMD...`; the new id.
pub fn create_task(
    m: &impl Cluster,
    agent: Option<&str>,
    secret_file: Option<&Path>,
    cmd: &[&str],
) -> String {
    let mut c = m.ctl();
    c.args(["task", "create"]);
    if let Some(a) = agent {
        c.args(["--agent", a]);
    }
    if let Some(f) = secret_file {
        c.arg("--secret-file").arg(f);
    }
    c.arg("--").args(cmd);
    let (status, out, err) = run(c);
    assert!(status.success(), "task create failed: {err}");
    out.trim().to_string()
}

/// A real agent process.
pub struct TestAgent {
    pub id: String,
    pub data_dir: PathBuf,
    log_dir: PathBuf,
    name: String,
    pub proc: Option<Proc>,
    /// `--port-range` for hosted nodes; agents sharing a host need distinct ranges.
    pub port_range: Option<String>,
    /// `--task-slots` (the agent's default when None).
    pub task_slots: Option<u32>,
    /// `--status-listen`, when set.
    pub status_listen: Option<String>,
    /// `--node-binary`, when set (the built lnswarm-node otherwise).
    pub node_binary: Option<PathBuf>,
}

/// The agent dies with SIGKILL, which its hosted nodes (in their own process groups)
/// outlive; they are found by their config path under the agent's data directory.
impl Drop for TestAgent {
    fn drop(&mut self) {
        self.proc.take();
        crate::process::kill_strays_under(&self.data_dir);
    }
}

impl TestAgent {
    /// `lnswarm-agent join` into `dir/<name>`.
    pub fn join(m: &impl Cluster, dir: &Path, name: &str) -> TestAgent {
        Self::join_at(&m.any_addr(), &worker_token(m), dir, name)
    }

    /// `lnswarm-agent join` through the manager at `addr` with `token`.
    pub fn join_at(addr: &str, token: &str, dir: &Path, name: &str) -> TestAgent {
        let data_dir = dir.join(name);
        let mut cmd = Command::new(bin_path("lnswarm-agent"));
        cmd.args(["join", "--data-dir"])
            .arg(&data_dir)
            .args(["--token", token, "--manager", addr]);
        let (status, out, err) = run(cmd);
        assert!(status.success(), "agent join failed: {out}{err}");
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(data_dir.join("agent.json")).expect("agent.json"),
        )
        .expect("agent.json parses");
        TestAgent {
            id: config["id"].as_str().expect("agent id").to_string(),
            data_dir,
            log_dir: dir.to_path_buf(),
            name: name.to_string(),
            proc: None,
            port_range: None,
            task_slots: None,
            status_listen: None,
            node_binary: None,
        }
    }

    /// `lnswarm-agent run` with short stop grace and restart backoff.
    pub fn start(&mut self) {
        let mut cmd = Command::new(bin_path("lnswarm-agent"));
        cmd.args(["run", "--data-dir"]).arg(&self.data_dir).args([
            "--stop-grace-ms",
            "2000",
            "--restart-backoff-ms",
            "200",
            "--reconnect-max-ms",
            "1000",
        ]);
        if let Some(range) = &self.port_range {
            cmd.args(["--port-range", range]);
        }
        if let Some(slots) = self.task_slots {
            cmd.args(["--task-slots", &slots.to_string()]);
        }
        if let Some(addr) = &self.status_listen {
            cmd.args(["--status-listen", addr]);
        }
        if let Some(path) = &self.node_binary {
            cmd.arg("--node-binary").arg(path);
        }
        self.proc = Some(Proc::spawn(&self.name, cmd, &self.log_dir));
    }

    /// The running agent's pid (0 when it is not running).
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, |p| p.pid())
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the agent, as a partition would look
    /// to the managers.
    pub fn freeze(&self, frozen: bool) {
        let sig = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig)
            .expect("signal the agent");
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill9();
        }
        self.proc = None;
    }

    pub fn terminate(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.terminate();
        }
        self.proc = None;
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::load(&self.data_dir.join("credentials")).expect("agent credentials")
    }

    /// What the tasks (hosted nodes) this agent ran wrote to their logs, all
    /// together.
    pub fn task_logs(&self) -> String {
        std::fs::read_dir(self.data_dir.join("tasks"))
            .expect("the agent's task logs")
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }
}

/// A worker certificate for a hand-driven dispatcher client (joins, runs no agent).
pub async fn worker_credentials(m: &impl Cluster) -> (String, Credentials) {
    let joined = join(&m.any_addr(), &worker_token(m), Role::Worker, "127.0.0.1")
        .await
        .expect("join as worker");
    (joined.id, joined.credentials)
}

/// A channel to the manager presenting `creds`.
pub async fn channel(addr: &str, creds: &Credentials) -> Channel {
    tls::connect(
        addr,
        &creds.client_tls().expect("client tls"),
        Role::Manager,
    )
    .await
    .expect("connect to manager")
}

pub fn description(name: &str) -> AgentDescription {
    AgentDescription {
        hostname: name.into(),
        version: "test".into(),
        task_slots: 4,
        port_range_start: 30000,
        port_range_end: 30099,
        advertised_address: "127.0.0.1".into(),
        node_version: String::new(),
    }
}

/// A hand-driven session: opened, with heartbeats sent in the background at the
/// period the dispatcher returns, until dropped.
pub struct HandSession {
    pub first: SessionMessage,
    pub client: DispatcherClient<Channel>,
    heartbeats: tokio::task::JoinHandle<()>,
    pub stream: tonic::Streaming<SessionMessage>,
}

impl HandSession {
    pub async fn open(addr: &str, creds: &Credentials, name: &str) -> HandSession {
        let mut client = DispatcherClient::new(channel(addr, creds).await)
            .max_decoding_message_size(64 * 1024 * 1024);
        let mut stream = client
            .session(SessionRequest {
                description: Some(description(name)),
                session_id: String::new(),
            })
            .await
            .expect("open session")
            .into_inner();
        let first = stream
            .message()
            .await
            .expect("session message")
            .expect("a first session message");
        let mut hb = client.clone();
        let sid = first.session_id.clone();
        let heartbeats = tokio::spawn(async move {
            loop {
                let period = match hb
                    .heartbeat(HeartbeatRequest {
                        session_id: sid.clone(),
                        leaving: false,
                    })
                    .await
                {
                    Ok(r) => r.into_inner().period_ms,
                    Err(_) => return,
                };
                tokio::time::sleep(Duration::from_millis(period)).await;
            }
        });
        HandSession {
            first,
            client,
            heartbeats,
            stream,
        }
    }

    pub fn session_id(&self) -> String {
        self.first.session_id.clone()
    }
}

impl Drop for HandSession {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}
