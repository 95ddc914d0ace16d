//! The Session stream of one agent.

use lnswarm_common::api::{Agent, AgentDescription, SessionMessage, WeightedPeer};
use tokio::sync::watch;
use tracing::debug;

use super::{
    sessions::EndSignal,
    streams::{ended, BoxedSender},
};
use crate::store::{keys, Store};

/// Feeds one agent's Session stream: the first message (its session id, its
/// record, the managers and the root CA), then a new one whenever its description
/// or availability or the manager list changes, until the session ends (the last
/// item is then the reason) or the agent hangs up. It exists so that the stream's
/// state, what was last sent and what wakes it, is named in one place rather than
/// captured by a long spawned closure.
pub(super) struct SessionHandler {
    pub store: Store,
    pub agent_id: String,
    pub tx: BoxedSender<SessionMessage>,
    /// The last message sent; the first one until `run` starts.
    pub last: SessionMessage,
    pub end: EndSignal,
    /// Changes to the agent's objects (its record among them).
    pub wake: watch::Receiver<u64>,
    pub managers: watch::Receiver<Vec<WeightedPeer>>,
}

impl SessionHandler {
    pub async fn run(mut self) {
        if self.tx.send(Ok(Box::new(self.last.clone()))).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                status = ended(&mut self.end) => {
                    debug!(code = ?status.code(), "session ended");
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
                _ = self.tx.closed() => return,
                r = self.wake.changed() => if r.is_err() { return },
                r = self.managers.changed() => if r.is_err() { return },
            }
            let next = self.next();
            if changed(&self.last, &next) {
                self.last = next.clone();
                if self.tx.send(Ok(Box::new(next))).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The session message as of now (the last known record if it cannot be read).
    fn next(&mut self) -> SessionMessage {
        SessionMessage {
            session_id: self.last.session_id.clone(),
            agent: match self.store.get::<Agent>(&keys::agent(&self.agent_id)) {
                Ok(Some((_, a))) => Some(a),
                _ => self.last.agent.clone(),
            },
            managers: self.managers.borrow_and_update().clone(),
            root_ca: self.last.root_ca.clone(),
        }
    }
}

/// Whether `next` carries news for the agent: the managers, or its description or
/// availability.
fn changed(last: &SessionMessage, next: &SessionMessage) -> bool {
    next.managers != last.managers || what_agents_use(next) != what_agents_use(last)
}

fn what_agents_use(m: &SessionMessage) -> Option<(&Option<AgentDescription>, i32)> {
    m.agent.as_ref().map(|a| (&a.description, a.availability))
}
