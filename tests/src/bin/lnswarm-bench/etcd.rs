//! The peer: the Kubernetes node-lease model, in which every node's heartbeat is a
//! write to etcd (a Lease object renewed through the API server). Here each simulated
//! node Puts its lease record (about the size of a coordination.k8s.io Lease) once
//! per period, straight to a 3-member etcd cluster on loopback (Debian's
//! `etcd-server`), over a pool of HTTP/2 connections spread across the members; the
//! API server's own cost is left out, which favours etcd.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use lnswarm_tests::etcd::{put, start_cluster};
use tonic::transport::Endpoint;

use crate::{
    stats::{measure_windows, rss_mib, RunResult},
    Options,
};

pub async fn run(n: usize, opts: &Options) -> Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let members = start_cluster(
        dir.path(),
        &[
            "--initial-cluster-token",
            "lnswarm-bench",
            // Keep the backend from growing without bound during long runs.
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "10000",
        ],
    )?;
    // A pool of HTTP/2 connections spread across the members.
    let pool_size = 64usize;
    let mut pool = Vec::new();
    for i in 0..pool_size {
        let url = members[i % members.len()].client_url.clone();
        let endpoint = Endpoint::from_shared(url)?.connect_timeout(Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(30);
        let channel = loop {
            match endpoint.connect().await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => return Err(e).context("connecting to etcd"),
            }
        };
        pool.push(channel);
    }
    // Wait for a leader: a first Put succeeds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while put(pool[0].clone(), b"/bench/ready".to_vec(), b"1".to_vec())
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("etcd cluster did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pids: Vec<u32> = members.iter().map(|m| m.proc.pid()).collect();
    let measuring = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    eprintln!("[etcd] N={n}: starting {n} lease renewers");
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let channel = pool[i % pool_size].clone();
        let (measuring, beats, errors, latencies) = (
            measuring.clone(),
            beats.clone(),
            errors.clone(),
            latencies.clone(),
        );
        let period = opts.period;
        // Spread the first renewals over one period, as long-running nodes are.
        let offset = period.mul_f64(i as f64 / n as f64);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(offset).await;
            let key = format!("/registry/leases/kube-node-lease/node-{i:06}").into_bytes();
            loop {
                let value = lease_record(i);
                let started = Instant::now();
                let r = put(channel.clone(), key.clone(), value).await;
                let took = started.elapsed();
                if measuring.load(Ordering::Relaxed) {
                    match r {
                        Ok(()) => {
                            beats.fetch_add(1, Ordering::Relaxed);
                            latencies
                                .lock()
                                .unwrap()
                                .push(took.as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let jitter = 1.0 + (rand_unit(i, started) - 0.5) * 0.2;
                tokio::time::sleep(period.mul_f64(jitter).saturating_sub(took)).await;
            }
        }));
    }
    tokio::time::sleep(opts.period + Duration::from_secs(1)).await;
    measuring.store(true, Ordering::SeqCst);
    let (windows, window) = measure_windows(opts.measure, opts.windows, &beats, &pids).await;
    measuring.store(false, Ordering::SeqCst);
    let rss = pids.iter().map(|p| rss_mib(*p)).sum();
    for h in handles {
        h.abort();
    }
    drop(members);
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    Ok(RunResult {
        windows,
        window,
        latencies_us: latencies,
        server_rss_mib: rss,
        errors: errors.load(Ordering::Relaxed),
        note: String::new(),
    })
}

/// A renewed Lease object as the API server stores it, roughly: holder identity,
/// duration and renew time (~250 bytes).
fn lease_record(i: usize) -> Vec<u8> {
    format!(
        "{{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{{\"name\":\"node-{i:06}\",\"namespace\":\"kube-node-lease\"}},\"spec\":{{\"holderIdentity\":\"node-{i:06}\",\"leaseDurationSeconds\":40,\"renewTime\":\"{}\"}}}}",
        lnswarm_common::ids::now_unix_ms()
    )
    .into_bytes()
}

/// A cheap pseudo-random number in [0, 1) for jitter.
fn rand_unit(i: usize, t: Instant) -> f64 {
    let x = (i as u64 ^ t.elapsed().as_nanos() as u64 ^ lnswarm_common::ids::now_unix_ms() as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 11) as f64 / (1u64 << 53) as f64
}
