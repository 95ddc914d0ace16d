//! The leader's in-memory view of agent sessions: which session each agent holds, when
//! its heartbeat TTL runs out, how often it re-registered, and which agents still owe
//! a session after a leader change. Nothing here is written to the store per
//! heartbeat; only expiries become (batched) writes.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// Why a session ended; its streams end with the matching gRPC status
/// ([`crate::grpc_status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The same agent opened a newer session.
    Replaced,
    /// Heartbeats stopped for longer than the TTL.
    Expired,
    /// This manager stopped leading.
    LostLeadership,
    /// The agent was removed from the cluster.
    Removed,
    /// The agent said it is shutting down.
    Left,
}

/// Receives the reason once the session ends.
pub type EndSignal = watch::Receiver<Option<EndReason>>;

struct Entry {
    session_id: String,
    deadline: Instant,
    end: watch::Sender<Option<EndReason>>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Entry>,
    registrations: HashMap<String, VecDeque<Instant>>,
    /// Agents that had no session when this manager became leader, with the time
    /// they are written DOWN unless a session arrives first.
    awaiting: HashMap<String, Instant>,
}

/// What went wrong looking up a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("no such session for this agent (it expired or was replaced); open a new session")]
    Unknown,
    #[error("too many sessions opened recently; retry later")]
    RateLimited,
}

/// The registry; one per dispatcher, shared by its handlers and timers.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

/// A newly registered session.
pub struct Registered {
    pub session_id: String,
    pub end: EndSignal,
}

/// Agents whose time ran out, found by [`Sessions::expire`].
#[derive(Debug, Default)]
pub struct Expired {
    /// (agent id, session id) whose heartbeats stopped.
    pub sessions: Vec<(String, String)>,
    /// Agents that never came back after a leader change.
    pub awaiting: Vec<String>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("sessions lock")
    }

    /// Opens a session for `agent_id`, replacing (and ending) any earlier one.
    /// Refused when the agent registered too often within `window`.
    pub fn register(
        &self,
        agent_id: &str,
        ttl: Duration,
        max_registrations: usize,
        window: Duration,
    ) -> Result<Registered, SessionError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let history = inner.registrations.entry(agent_id.to_string()).or_default();
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            history.pop_front();
        }
        if history.len() >= max_registrations {
            return Err(SessionError::RateLimited);
        }
        history.push_back(now);
        let session_id = lnswarm_common::ids::new_id();
        let (end, end_rx) = watch::channel(None);
        let old = inner.sessions.insert(
            agent_id.to_string(),
            Entry {
                session_id: session_id.clone(),
                deadline: now + ttl,
                end,
            },
        );
        inner.awaiting.remove(agent_id);
        drop(inner);
        if let Some(old) = old {
            old.end.send_replace(Some(EndReason::Replaced));
        }
        Ok(Registered {
            session_id,
            end: end_rx,
        })
    }

    /// Checks that `session_id` is `agent_id`'s current session.
    pub fn check(&self, agent_id: &str, session_id: &str) -> Result<EndSignal, SessionError> {
        let inner = self.lock();
        match inner.sessions.get(agent_id) {
            Some(e) if e.session_id == session_id => Ok(e.end.subscribe()),
            _ => Err(SessionError::Unknown),
        }
    }

    /// Records a heartbeat: the session lives for another `ttl`.
    pub fn heartbeat(
        &self,
        agent_id: &str,
        session_id: &str,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        let mut inner = self.lock();
        match inner.sessions.get_mut(agent_id) {
            Some(e) if e.session_id == session_id => {
                e.deadline = Instant::now() + ttl;
                Ok(())
            }
            _ => Err(SessionError::Unknown),
        }
    }

    /// Whether `agent_id` holds a live session now.
    pub fn is_live(&self, agent_id: &str) -> bool {
        self.lock().sessions.contains_key(agent_id)
    }

    /// Ends `agent_id`'s session, if it is `session_id` (any session when `None`).
    pub fn end(&self, agent_id: &str, session_id: Option<&str>, reason: EndReason) {
        let mut inner = self.lock();
        let matches = inner
            .sessions
            .get(agent_id)
            .is_some_and(|e| session_id.is_none_or(|s| s == e.session_id));
        if matches {
            if let Some(e) = inner.sessions.remove(agent_id) {
                e.end.send_replace(Some(reason));
            }
        }
        inner.awaiting.remove(agent_id);
    }

    /// Removes and returns every session and awaited agent whose time ran out.
    pub fn expire(&self, now: Instant) -> Expired {
        let mut inner = self.lock();
        let mut out = Expired::default();
        let expired: Vec<String> = inner
            .sessions
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(a, _)| a.clone())
            .collect();
        for agent in expired {
            if let Some(e) = inner.sessions.remove(&agent) {
                e.end.send_replace(Some(EndReason::Expired));
                out.sessions.push((agent, e.session_id));
            }
        }
        inner.awaiting.retain(|agent, deadline| {
            if *deadline <= now {
                out.awaiting.push(agent.clone());
                false
            } else {
                true
            }
        });
        let window_start = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
        inner
            .registrations
            .retain(|_, h| h.back().is_some_and(|t| *t > window_start));
        out
    }

    /// After becoming leader: these agents get until `deadline` to open a session.
    pub fn await_agents(&self, agents: impl IntoIterator<Item = String>, deadline: Instant) {
        let mut inner = self.lock();
        for a in agents {
            if !inner.sessions.contains_key(&a) {
                inner.awaiting.insert(a, deadline);
            }
        }
    }

    /// Ends every session (this manager stopped leading).
    pub fn clear(&self, reason: EndReason) {
        let mut inner = self.lock();
        for (_, e) in inner.sessions.drain() {
            e.end.send_replace(Some(reason.clone()));
        }
        inner.awaiting.clear();
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The address a request came from, for the agent's status.
pub fn peer_addr<T>(req: &tonic::Request<T>) -> Option<SocketAddr> {
    req.extensions()
        .get::<lnswarm_common::tls::PeerInfo>()
        .map(|p| p.remote_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_session_is_invalid_and_ended() {
        let s = Sessions::default();
        let w = Duration::from_secs(8);
        let a = s.register("a", Duration::from_secs(5), 3, w).unwrap();
        let b = s.register("a", Duration::from_secs(5), 3, w).unwrap();
        assert_eq!(
            s.check("a", &a.session_id).err(),
            Some(SessionError::Unknown)
        );
        assert!(s.check("a", &b.session_id).is_ok());
        assert_eq!(*a.end.borrow(), Some(EndReason::Replaced));
        assert!(s.check("b", &b.session_id).is_err());
    }

    #[test]
    fn rate_limit_and_expiry() {
        let s = Sessions::default();
        let w = Duration::from_secs(8);
        for _ in 0..3 {
            s.register("a", Duration::from_millis(1), 3, w).unwrap();
        }
        assert_eq!(
            s.register("a", Duration::from_millis(1), 3, w).err(),
            Some(SessionError::RateLimited)
        );
        let expired = s.expire(Instant::now() + Duration::from_millis(5));
        assert_eq!(expired.sessions.len(), 1);
        assert!(!s.is_live("a"));
    }
}
