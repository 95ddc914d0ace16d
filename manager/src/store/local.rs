//! The proposer of a manager that is the whole cluster by itself: commands are applied
//! in arrival order, and every command that arrived while the previous batch was
//! being written shares one flush (group commit). A write is acknowledged only after
//! it is applied and flushed.

use lnswarm_common::api::StoreTxn;
use tokio::sync::{mpsc, oneshot};

use super::{state_machine::StateMachine, Applied, StoreError};

const MAX_BATCH: usize = 4096;

type Reply = oneshot::Sender<Result<Applied, StoreError>>;

#[derive(Clone)]
pub struct LocalProposer {
    tx: mpsc::Sender<(StoreTxn, Reply)>,
}

impl LocalProposer {
    pub fn start(sm: StateMachine) -> Self {
        let (tx, mut rx) = mpsc::channel::<(StoreTxn, Reply)>(MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let mut results = Vec::with_capacity(batch.len());
                for (txn, _) in &batch {
                    let index = sm.applied_index() + 1;
                    results.push(sm.apply(index, txn));
                }
                let flushed = sm.flush().await;
                for ((_, reply), result) in batch.drain(..).zip(results) {
                    let result = match &flushed {
                        Ok(()) => result,
                        Err(e) => Err(StoreError::Unavailable(format!("flush failed: {e}"))),
                    };
                    let _ = reply.send(result);
                }
            }
        });
        LocalProposer { tx }
    }

    pub async fn propose(&self, txn: StoreTxn) -> Result<Applied, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((txn, reply))
            .await
            .map_err(|_| StoreError::Unavailable("store stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("store stopped".into()))?
    }
}
