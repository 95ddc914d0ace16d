//! Fixtures for the hosted-node tests: a real `lnswarm-regtest` chain spoken to over
//! its JSON-RPC, and real `lnswarm-node` processes (seed on stdin, server certificate
//! from a test CA) spoken to over the Node API with real mTLS.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lnswarm_common::{
    api::{self, node_client::NodeClient},
    credentials::Credentials,
    pki::Role,
    tls,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::{bin_path, certs::TestCa, free_port, process::Proc, wait};

pub const RPC_USER: &str = "lnswarm";
pub const RPC_PASSWORD: &str = "regtest-password";

/// A running `lnswarm-regtest`.
pub struct Regtest {
    pub proc: Proc,
    pub port: u16,
    pub data_dir: PathBuf,
    log_dir: PathBuf,
}

/// A JSON-RPC error: (code, message).
pub type RpcError = (i64, String);

impl Regtest {
    /// Starts a chain in `dir/regtest` and waits until it answers.
    pub async fn start(dir: &Path) -> Regtest {
        Self::start_in(dir.join("regtest"), dir, free_port()).await
    }

    async fn start_in(data_dir: PathBuf, log_dir: &Path, port: u16) -> Regtest {
        let mut cmd = Command::new(bin_path("lnswarm-regtest"));
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .arg("--rpc-bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--rpc-user")
            .arg(RPC_USER)
            .env("LNSWARM_REGTEST_RPC_PASSWORD", RPC_PASSWORD);
        let r = Regtest {
            proc: Proc::spawn("regtest", cmd, log_dir),
            port,
            data_dir,
            log_dir: log_dir.to_path_buf(),
        };
        wait::until(
            "lnswarm-regtest to answer",
            Duration::from_secs(20),
            || async { r.rpc("getblockcount", json!([])).await.ok() },
        )
        .await;
        r
    }

    /// Stops it (SIGTERM) and starts it again on the same data dir and port.
    pub async fn restart(mut self) -> Regtest {
        let status = self.proc.terminate();
        assert!(
            status.is_some_and(|s| s.success()),
            "regtest exit: {status:?}"
        );
        Self::start_in(self.data_dir.clone(), &self.log_dir.clone(), self.port).await
    }

    /// One JSON-RPC call with the right credentials.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.rpc_with_auth(method, params, RPC_USER, RPC_PASSWORD)
            .await
    }

    pub async fn rpc_with_auth(
        &self,
        method: &str,
        params: Value,
        user: &str,
        password: &str,
    ) -> Result<Value, RpcError> {
        let (status, body) = http_post(
            self.port,
            &format!("{user}:{password}"),
            &json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string(),
        )
        .await
        .map_err(|e| (-1000, format!("transport: {e}")))?;
        if status == 401 {
            return Err((-401, "HTTP 401 Unauthorized".into()));
        }
        let v: Value =
            serde_json::from_str(&body).map_err(|e| (-1001, format!("body {body:?}: {e}")))?;
        if !v["error"].is_null() {
            return Err((
                v["error"]["code"].as_i64().unwrap_or(0),
                v["error"]["message"].as_str().unwrap_or("").to_string(),
            ));
        }
        Ok(v["result"].clone())
    }

    pub async fn height(&self) -> u64 {
        self.rpc("getblockcount", json!([]))
            .await
            .unwrap()
            .as_u64()
            .unwrap()
    }

    /// Mines `n` blocks to the chain's own wallet.
    pub async fn mine(&self, n: u64) {
        let addr = self.rpc("getnewaddress", json!([])).await.unwrap();
        self.rpc("generatetoaddress", json!([n, addr]))
            .await
            .unwrap();
    }

    /// Waits (up to a minute) until at least `txs` transactions are in the mempool
    /// (`what` names them in a timeout), then mines `blocks`.
    pub async fn mine_after_broadcast(&self, what: &str, txs: usize, blocks: u64) {
        crate::wait::until(what, Duration::from_secs(60), || async {
            let pool = self.rpc("getrawmempool", json!([])).await.ok()?;
            (pool.as_array()?.len() >= txs).then_some(())
        })
        .await;
        self.mine(blocks).await;
    }

    /// Pays `btc` from the chain's wallet to `address`; returns the txid.
    pub async fn send(&self, address: &str, btc: f64) -> String {
        self.rpc("sendtoaddress", json!([address, btc]))
            .await
            .unwrap_or_else(|e| panic!("sendtoaddress {address} {btc}: {e:?}"))
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// A minimal HTTP/1.1 POST with basic auth; returns (status, body).
async fn http_post(port: u16, userpass: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        base64(userpass.as_bytes()),
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

/// A deterministic 64-byte seed per label.
pub fn seed(label: &str) -> [u8; 64] {
    Sha512::digest(format!("lnswarm test seed {label}").as_bytes()).into()
}

/// The node id a seed gives (the derivation lnswarmctl uses, which the agent's unit
/// test checks against ldk-node).
pub fn node_id_of(seed: &[u8; 64]) -> String {
    lnswarm_common::node_keys::node_id(seed).expect("64-byte seed")
}

/// What the standalone node tests start from: a test CA and a fresh regtest chain
/// under a temporary directory, for nodes that run outside any cluster.
pub struct NodeLab {
    pub ca: TestCa,
    pub chain: Regtest,
    /// Dropped last, once the chain is gone.
    pub dir: tempfile::TempDir,
}

impl NodeLab {
    /// A lab whose CA names the cluster `cluster_id`.
    pub async fn start(cluster_id: &str) -> NodeLab {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(cluster_id);
        let chain = Regtest::start(dir.path()).await;
        NodeLab { ca, chain, dir }
    }

    /// [`TestNode::start`] in this lab.
    pub async fn node(&self, name: &str) -> TestNode {
        TestNode::start(name, self.dir.path(), &self.ca, &self.chain).await
    }
}

/// The node's balances.
pub async fn balances(c: &mut NodeClient<Channel>) -> api::BalancesResponse {
    c.balances(api::BalancesRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The node's channels.
pub async fn channels(c: &mut NodeClient<Channel>) -> Vec<api::Channel> {
    c.list_channels(api::ListChannelsRequest {})
        .await
        .unwrap()
        .into_inner()
        .channels
}

/// A new on-chain address of the node's wallet.
pub async fn new_address(c: &mut NodeClient<Channel>) -> String {
    c.new_address(api::NewAddressRequest {})
        .await
        .unwrap()
        .into_inner()
        .address
}

/// One `lnswarm-node` process and what a test needs to talk to it.
pub struct TestNode {
    pub name: String,
    pub proc: Proc,
    pub node_id: String,
    pub seed: [u8; 64],
    pub api_addr: String,
    pub ln_addr: String,
    pub storage_dir: PathBuf,
    pub tls_dir: PathBuf,
    /// The owner's device certificate for this node.
    pub owner: Credentials,
    /// The cluster CA (for clients without a certificate).
    pub ca_pem: String,
    log_dir: PathBuf,
    rpc_port: u16,
}

impl TestNode {
    /// Starts a node named `name` with the seed for `name`, under `dir/name`, and
    /// waits until its health says SERVING.
    pub async fn start(name: &str, dir: &Path, ca: &TestCa, regtest: &Regtest) -> TestNode {
        Self::start_with_seed(name, seed(name), dir, ca, regtest).await
    }

    /// As [`TestNode::start`], with the given seed.
    pub async fn start_with_seed(
        name: &str,
        seed: [u8; 64],
        dir: &Path,
        ca: &TestCa,
        regtest: &Regtest,
    ) -> TestNode {
        let node_id = node_id_of(&seed);
        let home = dir.join(name);
        let tls_dir = home.join("tls");
        ca.mint(Role::Node, &node_id).save(&tls_dir).unwrap();
        let owner = ca.mint(Role::User, &format!("{node_id}/phone"));
        let api_addr = format!("127.0.0.1:{}", free_port());
        let ln_addr = format!("127.0.0.1:{}", free_port());
        let storage_dir = home.join("storage");
        let cmd = node_command(
            regtest.port,
            &ln_addr,
            &api_addr,
            &storage_dir,
            &tls_dir,
            &node_id,
        );
        let mut node = TestNode {
            name: name.to_string(),
            proc: Proc::spawn_with_stdin(&format!("node-{name}"), cmd, dir, &seed),
            node_id,
            seed,
            api_addr,
            ln_addr,
            storage_dir,
            tls_dir,
            owner,
            ca_pem: ca.ca.cert_pem().to_string(),
            log_dir: dir.to_path_buf(),
            rpc_port: regtest.port,
        };
        node.wait_serving().await;
        node
    }

    /// The command line for this node, claiming `node_id`.
    pub fn command(&self, node_id: &str) -> Command {
        node_command(
            self.rpc_port,
            &self.ln_addr,
            &self.api_addr,
            &self.storage_dir,
            &self.tls_dir,
            node_id,
        )
    }

    fn spawn(&self, node_id: &str, seed: &[u8; 64]) -> Proc {
        Proc::spawn_with_stdin(
            &format!("node-{}", self.name),
            self.command(node_id),
            &self.log_dir,
            seed,
        )
    }

    /// SIGTERM; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        self.proc.terminate().is_some_and(|s| s.success())
    }

    /// Starts the same node again (same seed, storage, ports) and waits for SERVING.
    pub async fn restart(&mut self) {
        self.proc = self.spawn(&self.node_id.clone(), &self.seed.clone());
        self.wait_serving().await;
    }

    /// Waits until gRPC health answers SERVING (fails fast if the process exits).
    pub async fn wait_serving(&mut self) {
        let tls = tls::client_config(&self.ca_pem, None).unwrap();
        let addr = self.api_addr.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.proc.try_exit() {
                panic!(
                    "{} exited while starting: {status}\n{}",
                    self.name,
                    self.proc.log_text()
                );
            }
            if let Ok(ch) = tls::connect(&addr, &tls, Role::Node).await {
                let r = HealthClient::new(ch)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if r.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not become SERVING\n{}",
                self.name,
                self.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A Node API client presenting the owner's certificate.
    pub async fn client(&self) -> NodeClient<Channel> {
        self.client_as(Some(&self.owner)).await
    }

    /// A Node API client presenting `creds` (or no certificate).
    pub async fn client_as(&self, creds: Option<&Credentials>) -> NodeClient<Channel> {
        let tls = match creds {
            Some(c) => tls::client_config(&c.ca_pem, Some((&c.cert_pem, &c.key_pem))).unwrap(),
            None => tls::client_config(&self.ca_pem, None).unwrap(),
        };
        NodeClient::new(
            tls::connect(&self.api_addr, &tls, Role::Node)
                .await
                .unwrap(),
        )
    }
}

fn node_command(
    rpc_port: u16,
    ln_addr: &str,
    api_addr: &str,
    storage_dir: &Path,
    tls_dir: &Path,
    node_id: &str,
) -> Command {
    let mut cmd = Command::new(bin_path("lnswarm-node"));
    cmd.args(["--network", "regtest"])
        .args(["--bitcoind-rpc-host", "127.0.0.1"])
        .args(["--bitcoind-rpc-port", &rpc_port.to_string()])
        .args(["--bitcoind-rpc-user", RPC_USER])
        .args(["--bitcoind-rpc-password", RPC_PASSWORD])
        .args(["--listen", ln_addr])
        .args(["--api-listen", api_addr])
        .arg("--storage-dir")
        .arg(storage_dir)
        .arg("--tls-cert")
        .arg(tls_dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(tls_dir.join("key.pem"))
        .arg("--ca-cert")
        .arg(tls_dir.join("ca.pem"))
        .args(["--node-id", node_id]);
    cmd
}
