//! Support for the black-box tests: find the workspace's binaries, pick free ports,
//! start real processes that are killed when the test ends, and wait for conditions.
//! Tests drive lnswarm only through its binaries and public gRPC APIs.

pub mod agents;
pub mod certs;
pub mod cluster;
pub mod etcd;
pub mod hosting;
pub mod impostor;
pub mod lightning;
pub mod manager;
pub mod process;
pub mod raw_grpc;
pub mod stats;
pub mod wait;
pub mod webhook_receiver;

use std::{net::TcpListener, path::PathBuf, process::Command};

use lnswarm_common::credentials::Credentials;
use tonic::transport::Channel;

/// What tests need of a cluster, whether one manager ([`manager::TestManager`]) or
/// a quorum ([`cluster::ManagerCluster`]).
#[allow(async_fn_in_trait)]
pub trait Cluster {
    /// `lnswarmctl` with every running manager (tried in turn) and the operator's
    /// credential.
    fn ctl(&self) -> Command;
    /// The addresses of the running managers, comma-separated, as `--manager` takes
    /// them.
    fn manager_arg(&self) -> String;
    /// A running manager's address.
    fn any_addr(&self) -> String;
    fn operator(&self) -> Credentials;
    /// A channel to a running manager that answers, presenting `creds` (or nothing).
    async fn channel_as(&self, creds: Option<&Credentials>) -> Channel;
}

/// A test's directory, kept after the test when `LNSWARM_KEEP_TEST_DIR` is set
/// (to read the processes' logs).
pub fn keepable_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("LNSWARM_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap()
}

/// Path of a workspace binary (`lnswarm-manager`, `lnswarmctl`, ...). The test
/// command builds every binary first (`cargo build --workspace --bins`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>; a binary of this
    // crate (lnswarm-bench) lives in target/<profile> itself.
    let parent = exe.parent().expect("executable has a directory");
    let dir = if parent.ends_with("deps") {
        parent.parent().expect("target/<profile>")
    } else {
        parent
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found; build the binaries first: cargo build --workspace --bins",
        path.display()
    );
    path
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}
