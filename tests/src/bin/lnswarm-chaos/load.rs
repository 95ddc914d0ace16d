//! The load the faults land on: payments around the ring (node i pays node i+1)
//! and Control API writes (CreateTask of a marked command task with a secret, one
//! transaction), each recorded with what its caller was told.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use lnswarm_common::api::{
    self, task_spec::Runtime, CommandSpec, CreateTaskRequest, Secret, TaskSpec,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::directory::{Directory, CALL_TIMEOUT};

/// Every payment's amount: whole sats, so balances in sats add up exactly.
pub const PAYMENT_MSAT: u64 = 1_000_000;

/// How long a payer may take to answer Pay before the load counts it as unknown.
const PAY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the payer's Pay call answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Succeeded,
    Failed,
    /// An error or no answer: the payment may or may not have happened.
    Unknown(String),
}

pub struct Attempt {
    pub from: usize,
    pub to: usize,
    pub payment_hash: String,
    pub at: Duration,
    pub answer: Answer,
}

/// A Control API write: the marker it carries, and the task id if acknowledged.
pub struct Write {
    pub marker: String,
    pub at: Duration,
    pub acked: Option<String>,
    pub error: Option<String>,
}

/// The command every chaos write's task runs: it exits at once.
pub fn write_args(marker: &str) -> Vec<String> {
    vec!["true".to_string(), marker.to_string()]
}

pub const MARKER_PREFIX: &str = "chaos-write-";

pub struct Load {
    stop: Arc<AtomicBool>,
    payers: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
    writer: tokio::task::JoinHandle<Vec<Write>>,
}

impl Load {
    /// Starts `payers` payment loops and one writer, all drawing from `seed`.
    pub fn start(dir: Arc<Directory>, seed: u64, payers: usize, started: Instant) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let payers = (0..payers)
            .map(|k| {
                tokio::spawn(pay_loop(
                    dir.clone(),
                    StdRng::seed_from_u64(seed.wrapping_add(1 + k as u64)),
                    stop.clone(),
                    started,
                ))
            })
            .collect();
        let writer = tokio::spawn(write_loop(dir, stop.clone(), started));
        Load {
            stop,
            payers,
            writer,
        }
    }

    /// Stops the loops once their calls in flight answer.
    pub async fn stop(self) -> (Vec<Attempt>, Vec<Write>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut attempts = Vec::new();
        for p in self.payers {
            attempts.extend(p.await.unwrap_or_default());
        }
        let writes = self.writer.await.unwrap_or_default();
        (attempts, writes)
    }
}

async fn pay_loop(
    dir: Arc<Directory>,
    mut rng: StdRng,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Vec<Attempt> {
    let n = dir.owners.len();
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let from = rng.gen_range(0..n);
        let to = (from + 1) % n;
        let Some(invoice) = invoice(&dir, to).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let at = started.elapsed();
        let answer = pay(&dir, from, invoice.bolt11).await;
        out.push(Attempt {
            from,
            to,
            payment_hash: invoice.payment_hash,
            at,
            answer,
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

async fn invoice(dir: &Directory, to: usize) -> Option<api::CreateInvoiceResponse> {
    let mut c = dir.node(to).await.ok()?;
    let mut req = tonic::Request::new(api::CreateInvoiceRequest {
        amount_msat: PAYMENT_MSAT,
        description: "chaos".into(),
        expiry_secs: 3600,
    });
    req.set_timeout(CALL_TIMEOUT);
    match c.create_invoice(req).await {
        Ok(r) => Some(r.into_inner()),
        Err(_) => {
            dir.forget(to);
            None
        }
    }
}

async fn pay(dir: &Directory, from: usize, bolt11: String) -> Answer {
    let mut c = match dir.node(from).await {
        Ok(c) => c,
        Err(e) => return Answer::Unknown(format!("no client: {e}")),
    };
    let mut req = tonic::Request::new(api::PayRequest {
        bolt11,
        amount_msat: 0,
    });
    req.set_timeout(PAY_TIMEOUT);
    match c.pay(req).await {
        Ok(r) => match r.into_inner().payment {
            Some(p) if p.status == api::PaymentStatus::Succeeded as i32 => Answer::Succeeded,
            Some(p) if p.status == api::PaymentStatus::Failed as i32 => Answer::Failed,
            other => Answer::Unknown(format!("pending: {other:?}")),
        },
        // A refusal before anything was sent is still "unknown" here: the final
        // check reads the payer's own record either way.
        Err(s) => {
            dir.forget(from);
            Answer::Unknown(format!("{:?}: {}", s.code(), s.message()))
        }
    }
}

async fn write_loop(dir: Arc<Directory>, stop: Arc<AtomicBool>, started: Instant) -> Vec<Write> {
    let mut out = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let marker = format!("{MARKER_PREFIX}{seq}");
        let at = started.elapsed();
        let result = match dir.control().await {
            Ok(mut control) => {
                let mut req = tonic::Request::new(CreateTaskRequest {
                    spec: Some(TaskSpec {
                        runtime: Some(Runtime::Command(CommandSpec {
                            args: write_args(&marker),
                            env: Default::default(),
                        })),
                        secret_ids: vec![],
                    }),
                    agent_id: String::new(),
                    secrets: vec![Secret {
                        id: String::new(),
                        version: None,
                        data: marker.clone().into_bytes(),
                    }],
                });
                req.set_timeout(CALL_TIMEOUT);
                control
                    .create_task(req)
                    .await
                    .map(|t| t.into_inner().id)
                    .map_err(|s| {
                        dir.rotate_manager();
                        format!("{:?}: {}", s.code(), s.message())
                    })
            }
            Err(e) => Err(e.to_string()),
        };
        let (acked, error) = match result {
            Ok(id) => (Some(id), None),
            Err(e) => (None, Some(e)),
        };
        out.push(Write {
            marker,
            at,
            acked,
            error,
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    out
}
