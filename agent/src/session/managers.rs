//! The managers this agent may connect to, weighted. Starts from the addresses in
//! agent.json, is replaced by each session's manager list, and prefers a leader
//! address that a follower pointed at.

use lnswarm_common::{api::WeightedPeer, pki::Role, tls::ServerIdentity};
use rand::Rng;

#[derive(Debug, Clone)]
pub struct Managers {
    peers: Vec<WeightedPeer>,
    /// Tried next, once (a follower named the leader).
    hint: Option<String>,
}

impl Managers {
    pub fn new(addrs: &[String]) -> Self {
        Managers {
            peers: addrs
                .iter()
                .map(|a| WeightedPeer {
                    manager_id: String::new(),
                    addr: a.clone(),
                    weight: 10,
                })
                .collect(),
            hint: None,
        }
    }

    /// Replaces the list with the one a session sent (ignored when empty).
    pub fn update(&mut self, peers: Vec<WeightedPeer>) {
        let peers: Vec<_> = peers.into_iter().filter(|p| !p.addr.is_empty()).collect();
        if !peers.is_empty() {
            self.peers = peers;
        }
    }

    pub fn hint(&mut self, addr: String) {
        self.hint = Some(addr);
    }

    /// Who the agent must find at `addr`: the manager the list names there, or, for
    /// an address it has no id for yet (agent.json, a leader hint), any manager of
    /// the cluster.
    pub fn expected_at(&self, addr: &str) -> ServerIdentity {
        self.peers
            .iter()
            .find(|p| p.addr == addr && !p.manager_id.is_empty())
            .map(|p| ServerIdentity::exact(Role::Manager, &p.manager_id))
            .unwrap_or_else(|| Role::Manager.into())
    }

    pub fn addrs(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.addr.clone()).collect()
    }

    /// The next manager to try: the hint if any, else a weighted random pick that
    /// avoids `last` when there is a choice.
    pub fn pick(&mut self, last: Option<&str>) -> Option<String> {
        if let Some(h) = self.hint.take() {
            return Some(h);
        }
        let candidates: Vec<&WeightedPeer> = match last {
            Some(l) if self.peers.len() > 1 => self.peers.iter().filter(|p| p.addr != l).collect(),
            _ => self.peers.iter().collect(),
        };
        let total: i64 = candidates.iter().map(|p| p.weight.max(1)).sum();
        if total == 0 {
            return None;
        }
        let mut x = rand::thread_rng().gen_range(0..total);
        for p in &candidates {
            x -= p.weight.max(1);
            if x < 0 {
                return Some(p.addr.clone());
            }
        }
        candidates.last().map(|p| p.addr.clone())
    }
}
