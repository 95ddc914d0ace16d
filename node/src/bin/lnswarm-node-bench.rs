//! `lnswarm-node-bench`: how fast a hosted node starts and how much memory an idle one
//! holds. Not a test: it prints figures for docs/BENCHMARKS.md.
//!
//! It starts one `lnswarm-regtest`, then `--runs` times: spawns `lnswarm-node` on a
//! fresh storage dir (cold start) and measures spawn → Node API health SERVING, stops
//! it with SIGTERM, spawns it again on the same storage (warm start) and measures
//! again. Then it leaves one node idle for `--idle-secs` and reads VmRSS / VmHWM from
//! /proc/<pid>/status. Run the release build:
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/lnswarm-node-bench
//! ```

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use lnswarm_common::{
    credentials::Credentials,
    pki::{new_key_and_csr, ClusterCa, LeafRequest, Role},
    tls,
};
use lnswarm_node::seed::{node_id_from_seed, Seed};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

#[derive(Parser)]
#[command(
    name = "lnswarm-node-bench",
    about = "Start time and idle RSS of lnswarm-node"
)]
struct Args {
    /// Starts to measure (each: one cold, one warm).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// How long the node idles before its RSS is read.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Directory holding lnswarm-node and lnswarm-regtest (default: this binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn status_field(pid: u32, field: &str) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .context("field not in /proc status")
}

struct Setup {
    bin_dir: PathBuf,
    rpc_port: u16,
    tls_dir: PathBuf,
    ca_pem: String,
    node_id: String,
    seed: [u8; 64],
}

impl Setup {
    fn spawn_node(&self, storage: &Path, api: &str, ln: &str) -> anyhow::Result<Kill> {
        let mut child = Command::new(self.bin_dir.join("lnswarm-node"))
            .args(["--network", "regtest", "--bitcoind-rpc-host", "127.0.0.1"])
            .args(["--bitcoind-rpc-port", &self.rpc_port.to_string()])
            .args([
                "--bitcoind-rpc-user",
                "bench",
                "--bitcoind-rpc-password",
                "bench",
            ])
            .args(["--listen", ln, "--api-listen", api])
            .arg("--storage-dir")
            .arg(storage)
            .arg("--tls-cert")
            .arg(self.tls_dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(self.tls_dir.join("key.pem"))
            .arg("--ca-cert")
            .arg(self.tls_dir.join("ca.pem"))
            .args(["--node-id", &self.node_id])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn lnswarm-node")?;
        child.stdin.take().unwrap().write_all(&self.seed)?;
        Ok(Kill(child))
    }

    /// Spawns a node and returns it with the time until health said SERVING.
    async fn timed_start(&self, storage: &Path) -> anyhow::Result<(Kill, Duration)> {
        let api = format!("127.0.0.1:{}", free_port()?);
        let ln = format!("127.0.0.1:{}", free_port()?);
        let client_tls = tls::client_config(&self.ca_pem, None)?;
        let t0 = Instant::now();
        let mut node = self.spawn_node(storage, &api, &ln)?;
        loop {
            if let Some(status) = node.0.try_wait()? {
                bail!("lnswarm-node exited: {status}");
            }
            if let Ok(ch) = tls::connect(&api, &client_tls, Role::Node).await {
                let mut health = HealthClient::new(ch);
                loop {
                    match health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                    {
                        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => {
                            return Ok((node, t0.elapsed()));
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                        Err(_) => break,
                    }
                }
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("lnswarm-node did not become SERVING in 120 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn stop(mut node: Kill) -> anyhow::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = node.0.wait()?;
    if !status.success() {
        bail!("lnswarm-node exited {status} on SIGTERM");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("binary dir")?
            .to_path_buf(),
    };
    let work = std::env::temp_dir().join(format!("lnswarm-node-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    // The chain.
    let rpc_port = free_port()?;
    let _regtest = Kill(
        Command::new(bin_dir.join("lnswarm-regtest"))
            .arg("--data-dir")
            .arg(work.join("regtest"))
            .args(["--rpc-bind", &format!("127.0.0.1:{rpc_port}")])
            .args(["--rpc-user", "bench", "--rpc-password", "bench"])
            .env("RUST_LOG", "warn")
            .spawn()
            .context("spawn lnswarm-regtest")?,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Identity and certificates.
    let seed = {
        let mut s = [0u8; 64];
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        s
    };
    let node_id = node_id_from_seed(&Seed(seed)).to_string();
    let ca = ClusterCa::create("bench")?;
    let key = new_key_and_csr(&node_id, None)?;
    let cert = ca.issue(&LeafRequest {
        csr_pem: &key.csr_pem,
        role: Role::Node,
        common_name: &node_id,
        ip_sans: &[],
        validity: None,
    })?;
    let tls_dir = work.join("tls");
    Credentials {
        cert_pem: cert.pem,
        key_pem: key.key_pem,
        ca_pem: ca.cert_pem().to_string(),
    }
    .save(&tls_dir)?;
    let setup = Setup {
        bin_dir,
        rpc_port,
        tls_dir,
        ca_pem: ca.cert_pem().to_string(),
        node_id,
        seed,
    };

    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..args.runs {
        let storage = work.join(format!("node-{i}"));
        let (node, t) = setup.timed_start(&storage).await?;
        cold.push(t);
        stop(node)?;
        let (node, t) = setup.timed_start(&storage).await?;
        warm.push(t);
        stop(node)?;
        eprintln!("run {i}: cold {}, warm {}", ms(cold[i]), ms(warm[i]));
    }
    cold.sort();
    warm.sort();

    let (node, _) = setup.timed_start(&work.join("node-0")).await?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let rss = status_field(node.0.id(), "VmRSS:")?;
    let hwm = status_field(node.0.id(), "VmHWM:")?;
    let threads = status_field(node.0.id(), "Threads:")?;
    stop(node)?;

    println!(
        "lnswarm-node start (spawn -> Node API health SERVING), {} runs each:",
        args.runs
    );
    println!(
        "  cold (fresh storage): p50 {}  p99 {}  min {}  max {}",
        ms(percentile(&cold, 0.5)),
        ms(percentile(&cold, 0.99)),
        ms(cold[0]),
        ms(*cold.last().unwrap())
    );
    println!(
        "  warm (existing storage): p50 {}  p99 {}  min {}  max {}",
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.99)),
        ms(warm[0]),
        ms(*warm.last().unwrap())
    );
    println!(
        "idle node after {} s: VmRSS {rss}, VmHWM {hwm}, threads {threads}",
        args.idle_secs
    );
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
