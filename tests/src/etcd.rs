//! A 3-member etcd on loopback (Debian's `etcd-server`), the peer the benchmarks
//! compare the quorum and the dispatcher against, and the one etcd call they make.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};
use tonic::transport::Channel;

use crate::{free_port, process::Proc};

/// etcdserverpb.PutRequest (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// etcdserverpb.PutResponse (its fields are not read).
#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {}

/// One `etcdserverpb.KV/Put` over gRPC.
pub async fn put(channel: Channel, key: Vec<u8>, value: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
    let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
    grpc.unary(tonic::Request::new(PutRequest { key, value }), path, codec)
        .await
        .map(|_| ())
}

pub struct Member {
    pub proc: Proc,
    pub client_url: String,
}

/// Starts three members in `dir`, each with `extra_args` besides the cluster wiring.
pub fn start_cluster(dir: &Path, extra_args: &[&str]) -> Result<Vec<Member>> {
    if Command::new("etcd").arg("--version").output().is_err() {
        bail!("etcd not found: apt-get install -y etcd-server etcd-client");
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut members = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("e{i}")))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new", "--log-level", "warn"])
            .args(["--quota-backend-bytes", "8589934592"])
            .args(extra_args);
        members.push(Member {
            proc: Proc::spawn(&format!("etcd-{i}"), cmd, dir),
            client_url,
        });
    }
    Ok(members)
}
