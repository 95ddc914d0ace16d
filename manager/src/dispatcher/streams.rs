//! What the Session and Assignments stream handlers share: the channel a handler
//! feeds its stream through, and the end of the session both streams belong to.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::sessions::EndSignal;
use crate::store::{keys, Store};

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Messages queued for a session's or an assignments stream, boxed: a tokio channel
/// allocates room for 32 items up front, and unboxed a `SessionMessage` made that
/// 9 KiB per connected agent.
pub(super) type BoxedSender<T> = mpsc::Sender<Result<Box<T>, Status>>;

pub(super) fn boxed_channel<T>() -> (BoxedSender<T>, mpsc::Receiver<Result<Box<T>, Status>>) {
    mpsc::channel(4)
}

pub(super) fn unboxed<T: Send + 'static>(
    rx: mpsc::Receiver<Result<Box<T>, Status>>,
) -> BoxStream<T> {
    Box::pin(ReceiverStream::new(rx).map(|item| item.map(|boxed| *boxed)))
}

/// Waits for the session to end; returns the status that ends its streams.
pub(super) async fn ended(end: &mut EndSignal) -> Status {
    loop {
        if let Some(reason) = end.borrow_and_update().clone() {
            return Status::from(&reason);
        }
        if end.changed().await.is_err() {
            return Status::not_found("session ended");
        }
    }
}

/// Wakes on changes to the agent's objects (its record, tasks and their secrets)
/// made from now on.
pub(super) fn agent_changes(store: &Store, agent_id: &str) -> watch::Receiver<u64> {
    let mut wake = store.state().watch().subscribe(&keys::agent_tag(agent_id));
    wake.borrow_and_update();
    wake
}
