//! The Assignments stream of one agent.

use lnswarm_common::api::AssignmentsMessage;
use tokio::sync::watch;

use super::{
    assignments::Feed,
    config::DispatcherConfig,
    sessions::EndSignal,
    streams::{ended, BoxedSender},
};
use crate::store::Store;

/// Feeds one agent's Assignments stream: its first messages (a resume from the
/// `results_in` it presented, or the complete set), then, after each burst of
/// changes to its objects, the changes, until the session ends (the last item is
/// then the reason) or the agent hangs up. It exists so that the stream's state
/// (its [`Feed`]) and what wakes it are named in one place, with one send path,
/// rather than captured by a long spawned closure.
pub(super) struct AssignmentsHandler {
    pub store: Store,
    pub config: DispatcherConfig,
    pub feed: Feed,
    /// The `results_in` the agent last applied, if it presented one.
    pub since: Option<u64>,
    pub tx: BoxedSender<AssignmentsMessage>,
    pub end: EndSignal,
    /// Changes to the agent's objects (its tasks and their secrets).
    pub wake: watch::Receiver<u64>,
}

impl AssignmentsHandler {
    pub async fn run(mut self) {
        let mut next = self.feed.start(&self.store, self.since, &self.config);
        loop {
            match next {
                Ok(messages) => {
                    for m in messages {
                        if self.tx.send(Ok(Box::new(m))).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = self.tx.send(Err(e.into())).await;
                    return;
                }
            }
            tokio::select! {
                status = ended(&mut self.end) => {
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
                _ = self.tx.closed() => return,
                r = self.wake.changed() => if r.is_err() { return },
            }
            // Let a burst of changes land, then send them together.
            tokio::time::sleep(self.config.assignments_quiet).await;
            self.wake.borrow_and_update();
            next = self.feed.next(&self.store, &self.config);
        }
    }
}
