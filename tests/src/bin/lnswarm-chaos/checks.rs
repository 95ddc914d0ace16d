//! The checkers: what "correct" means for each invariant, read from outside the way
//! a user would read it (the Control API, each node's own Node API, the process
//! table and the logs).

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::Duration,
};

use anyhow::Result;
use lnswarm_common::api::{
    self, task_spec::Runtime, GetTaskRequest, ListPaymentsRequest, ListTasksRequest,
};

use crate::{
    directory::{Directory, CALL_TIMEOUT},
    load::{write_args, Answer, Attempt, Write, MARKER_PREFIX, PAYMENT_MSAT},
};

/// Retries `f` until it answers, for up to a minute (the cluster is healed before
/// any check, but an election may still be ending).
async fn retry<T, F, Fut>(f: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Every acknowledged write is there, read linearizably, with all it carried; a
/// write that failed or timed out is there whole or not at all.
pub async fn writes(dir: &Directory, writes: &[Write]) -> Result<Vec<String>> {
    let mut violations = Vec::new();
    for w in writes {
        let Some(id) = &w.acked else { continue };
        let task = retry(|| async {
            let mut c = dir.control().await?;
            let mut req = tonic::Request::new(GetTaskRequest { id: id.clone() });
            req.set_timeout(CALL_TIMEOUT);
            match c.get_task(req).await {
                Ok(t) => Ok(Some(t.into_inner())),
                Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
                Err(s) => {
                    dir.rotate_manager();
                    Err(anyhow::anyhow!("{s}"))
                }
            }
        })
        .await?;
        match task {
            None => violations.push(format!(
                "acknowledged write {} (task {id}, at {:.1} s) is missing",
                w.marker,
                w.at.as_secs_f64()
            )),
            Some(t) if !whole(&t, &w.marker) => violations.push(format!(
                "acknowledged write {} (task {id}) is not whole: {:?}",
                w.marker, t.spec
            )),
            Some(_) => {}
        }
    }
    let all = retry(|| async {
        let mut c = dir.control().await?;
        let mut req = tonic::Request::new(ListTasksRequest::default());
        req.set_timeout(CALL_TIMEOUT);
        c.list_tasks(req)
            .await
            .map(|r| r.into_inner().tasks)
            .map_err(|s| {
                dir.rotate_manager();
                anyhow::anyhow!("{s}")
            })
    })
    .await?;
    let attempted: HashSet<&str> = writes.iter().map(|w| w.marker.as_str()).collect();
    let mut seen = HashMap::new();
    for t in &all {
        let Some(marker) = marker_of(t) else { continue };
        if !attempted.contains(marker.as_str()) || !whole(t, &marker) {
            violations.push(format!(
                "task {} is a half or foreign write: {:?}",
                t.id, t.spec
            ));
        }
        if let Some(other) = seen.insert(marker.clone(), t.id.clone()) {
            violations.push(format!(
                "write {marker} landed twice: tasks {other} and {}",
                t.id
            ));
        }
    }
    Ok(violations)
}

fn marker_of(t: &api::Task) -> Option<String> {
    match t.spec.as_ref()?.runtime.as_ref()? {
        Runtime::Command(c) => c
            .args
            .iter()
            .find(|a| a.starts_with(MARKER_PREFIX))
            .cloned(),
        _ => None,
    }
}

/// The task carries the write's whole command and its one secret.
fn whole(t: &api::Task, marker: &str) -> bool {
    let Some(spec) = &t.spec else { return false };
    matches!(&spec.runtime, Some(Runtime::Command(c)) if c.args == write_args(marker))
        && spec.secret_ids.len() == 1
}

/// Each node's payments by hash, as the node itself records them.
pub async fn payments_of(dir: &Directory) -> Result<Vec<HashMap<String, api::Payment>>> {
    let mut out = Vec::new();
    for i in 0..dir.owners.len() {
        let list = retry(|| async {
            let mut c = dir.fresh_node(i).await?;
            let mut req = tonic::Request::new(ListPaymentsRequest {});
            req.set_timeout(CALL_TIMEOUT);
            Ok(c.list_payments(req).await?.into_inner().payments)
        })
        .await?;
        out.push(
            list.into_iter()
                .map(|p| (p.payment_hash.clone(), p))
                .collect(),
        );
    }
    Ok(out)
}

/// Each node's holdings in sats: on chain, in channels (claimable included), and
/// closed channels' outputs waiting to be swept.
pub async fn holdings(dir: &Directory) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for i in 0..dir.owners.len() {
        let b = retry(|| async {
            let mut c = dir.fresh_node(i).await?;
            let mut req = tonic::Request::new(api::BalancesRequest {});
            req.set_timeout(CALL_TIMEOUT);
            Ok(c.balances(req).await?.into_inner())
        })
        .await?;
        out.push((b.onchain_total_sats + b.lightning_sats + b.pending_sweep_sats) as i64);
    }
    Ok(out)
}

pub struct PaymentTally {
    pub attempted: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Still pending at the payer when the run ended (an HTLC in flight).
    pub unresolved: usize,
    pub violations: Vec<String>,
    /// Per node: sats received less sats sent, by the nodes' own final records.
    pub net_sats: Vec<i64>,
    /// Nodes with a payment still unresolved: their holdings include an HTLC in
    /// flight, so their balance cannot be checked to the sat.
    pub in_flight: std::collections::BTreeSet<usize>,
}

fn status(p: Option<&api::Payment>) -> Option<api::PaymentStatus> {
    p.and_then(|p| api::PaymentStatus::try_from(p.status).ok())
}

/// Whether any node still has an outbound payment pending (an invoice nobody paid
/// stays pending at its payee forever, so inbound records do not count).
pub fn outbound_pending(records: &[HashMap<String, api::Payment>]) -> bool {
    records.iter().flat_map(|r| r.values()).any(|p| {
        p.direction == api::PaymentDirection::Outbound as i32
            && p.status == api::PaymentStatus::Pending as i32
    })
}

/// No payment both succeeded and failed: the payer's answer, the payer's record
/// and the payee's record agree. The payer's record decides what happened; the
/// payee's must not contradict it.
pub fn payments(attempts: &[Attempt], records: &[HashMap<String, api::Payment>]) -> PaymentTally {
    use api::PaymentStatus::{Pending, Succeeded};
    let mut t = PaymentTally {
        attempted: attempts.len(),
        succeeded: 0,
        failed: 0,
        unresolved: 0,
        violations: Vec::new(),
        net_sats: vec![0; records.len()],
        in_flight: Default::default(),
    };
    for a in attempts {
        let payer = status(records[a.from].get(&a.payment_hash));
        let payee = status(records[a.to].get(&a.payment_hash));
        let short = &a.payment_hash[..12.min(a.payment_hash.len())];
        let what = format!(
            "payment {short} n{} -> n{} at {:.1} s (answer {:?}, payer {payer:?}, payee {payee:?})",
            a.from,
            a.to,
            a.at.as_secs_f64(),
            a.answer
        );
        match (payer, payee) {
            (Some(Succeeded), Some(Succeeded)) => {
                t.succeeded += 1;
                let fee = records[a.from][&a.payment_hash].fee_msat;
                t.net_sats[a.to] += (PAYMENT_MSAT / 1000) as i64;
                t.net_sats[a.from] -= ((PAYMENT_MSAT + fee) / 1000) as i64;
                if a.answer == Answer::Failed {
                    t.violations
                        .push(format!("answered failed but succeeded: {what}"));
                }
            }
            (Some(Succeeded), _) => t
                .violations
                .push(format!("payer paid, payee has no payment: {what}")),
            (Some(Pending), _) => {
                // Still in flight after the quiet end: not a contradiction, but
                // reported, and the two nodes' balances are not checked to the sat.
                t.unresolved += 1;
                t.in_flight.insert(a.from);
                t.in_flight.insert(a.to);
                println!("unresolved: {what}");
            }
            (_, Some(Succeeded)) => {
                t.violations
                    .push(format!("payee was paid, payer says it was not: {what}"));
            }
            _ => {
                t.failed += 1;
                if a.answer == Answer::Succeeded {
                    t.violations
                        .push(format!("answered succeeded but not recorded: {what}"));
                }
            }
        }
    }
    t
}

/// Log lines under `root` that say a process panicked.
pub fn panics(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "log")
                || p.parent().is_some_and(|d| d.ends_with("tasks"))
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for line in text.lines().filter(|l| l.contains("panicked at")) {
                    found.push(format!("{}: {line}", p.display()));
                }
            }
        }
    }
    found
}
