//! The apply task: committed commands are written to the state machine here, off the
//! raft loop, so a follower's append acknowledgement and the leader's next append
//! never wait behind the apply of an earlier batch (raft-rs's `advance_append` with
//! `advance_apply_to` once applied).
//!
//! Jobs arrive in log order; every job queued while the previous batch was written
//! goes into the next one (one sled batch for all of them). Proposers are answered
//! after their command is applied, then the applied index is published.

use std::sync::Arc;

use lnswarm_common::api::StoreTxn;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::error;

use crate::store::{Applied, StateMachine, StoreError};

pub type Reply = oneshot::Sender<Result<Applied, StoreError>>;

/// A committed command: its index, the command and, if it was proposed here, who
/// waits for it.
pub type Job = (u64, StoreTxn, Option<Reply>);

/// The raft loop's side of the apply task.
pub struct Applier {
    jobs: mpsc::UnboundedSender<Vec<Job>>,
    applied: watch::Receiver<u64>,
    failed: watch::Receiver<Option<String>>,
    /// The last index handed to the task.
    handed_out: u64,
}

impl Applier {
    /// Starts the task; it publishes the applied index on `applied_tx`.
    pub fn start(sm: StateMachine, applied_tx: Arc<watch::Sender<u64>>) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        let (failed_tx, failed) = watch::channel(None);
        let applied = applied_tx.subscribe();
        let handed_out = sm.applied_index();
        tokio::spawn(run(sm, applied_tx, rx, failed_tx));
        Applier {
            jobs,
            applied,
            failed,
            handed_out,
        }
    }

    /// Queues committed commands (in log order).
    pub fn send(&mut self, jobs: Vec<Job>) -> Result<(), StoreError> {
        let Some(last) = jobs.last().map(|j| j.0) else {
            return Ok(());
        };
        self.jobs.send(jobs).map_err(|_| self.failure())?;
        self.handed_out = self.handed_out.max(last);
        Ok(())
    }

    /// Notes that an index was applied outside the task (a membership change, a
    /// snapshot), after [`drain`](Self::drain).
    pub fn applied_inline(&mut self, index: u64) {
        self.handed_out = self.handed_out.max(index);
    }

    /// Waits until everything handed out is applied, so the raft loop may write the
    /// state machine itself.
    pub async fn drain(&mut self) -> Result<(), StoreError> {
        let target = self.handed_out;
        let caught_up = tokio::select! {
            r = self.applied.wait_for(|a| *a >= target) => r.is_ok(),
            _ = self.failed.wait_for(|f| f.is_some()) => false,
        };
        if caught_up {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    /// Resolves when the applied index moves (with the new value), or with the
    /// error if the task stopped on a storage failure.
    pub async fn changed(&mut self) -> Result<u64, StoreError> {
        let moved = tokio::select! {
            r = self.applied.changed() => r.is_ok(),
            _ = self.failed.wait_for(|f| f.is_some()) => false,
        };
        if moved {
            Ok(*self.applied.borrow_and_update())
        } else {
            Err(self.failure())
        }
    }

    fn failure(&self) -> StoreError {
        let why = self.failed.borrow().clone();
        StoreError::Unavailable(why.unwrap_or_else(|| "the apply task stopped".into()))
    }
}

async fn run(
    sm: StateMachine,
    applied_tx: Arc<watch::Sender<u64>>,
    mut rx: mpsc::UnboundedReceiver<Vec<Job>>,
    failed: watch::Sender<Option<String>>,
) {
    let mut queued: Vec<Vec<Job>> = Vec::new();
    while rx.recv_many(&mut queued, 1024).await > 0 {
        let jobs: Vec<Job> = queued.drain(..).flatten().collect();
        let batch = sm.clone();
        let result = tokio::task::spawn_blocking(move || {
            let items: Vec<_> = jobs.iter().map(|(i, t, _)| (*i, t, None)).collect();
            let results = batch.apply_batch(&items);
            (jobs, results)
        })
        .await;
        let (jobs, results) = match result {
            Ok((jobs, Ok(results))) => (jobs, results),
            Ok((jobs, Err(e))) => {
                error!(error = %e, "applying committed entries failed; the raft node stops");
                let why = format!("the state machine failed: {e}");
                for (_, _, reply) in jobs {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                    }
                }
                failed.send_replace(Some(why));
                return;
            }
            Err(e) => {
                error!(error = %e, "the apply task panicked; the raft node stops");
                failed.send_replace(Some("the apply task panicked".into()));
                return;
            }
        };
        for ((_, _, reply), result) in jobs.into_iter().zip(results) {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(result));
            }
        }
        applied_tx.send_replace(sm.applied_index());
    }
}
