//! Revocation backed by the store: a removed manager's or agent's certificate record
//! is marked revoked, and the authorization layer refuses it from then on.
//!
//! Every call on a long-lived connection asks (agents heartbeat every few seconds),
//! so answers are kept in memory until the state machine reports that a certificate
//! record changed; then all of them are read again.

use std::{collections::HashMap, sync::Mutex};

use lnswarm_common::{
    api::CertificateRecord,
    pki::{Revocations, Role},
};

use crate::store::{keys, StateMachine};

/// Most answers kept at once (the cache is emptied when full).
const MAX_CACHED: usize = 200_000;

pub struct StoreRevocations {
    sm: StateMachine,
    /// Answers read while the certificates generation was the first field.
    cache: Mutex<(u64, HashMap<String, bool>)>,
}

impl StoreRevocations {
    pub fn new(sm: StateMachine) -> Self {
        StoreRevocations {
            sm,
            cache: Mutex::new((u64::MAX, HashMap::new())),
        }
    }

    fn read(&self, id: &str) -> Result<bool, ()> {
        match self.sm.get(&keys::certificate(id)) {
            Ok(Some(v)) => Ok(v
                .decode::<CertificateRecord>()
                .map(|r| r.revoked)
                .unwrap_or(true)),
            Ok(None) => Ok(false),
            Err(_) => Err(()),
        }
    }
}

impl Revocations for StoreRevocations {
    fn is_revoked(&self, role: Role, id: &str) -> bool {
        if !matches!(role, Role::Manager | Role::Worker) {
            return false;
        }
        // Read the generation before the record: a change applied after this load
        // moves it, and the answer is not used past that.
        let generation = self.sm.certificates_generation();
        {
            let cache = self.cache.lock().expect("revocation cache lock");
            if cache.0 == generation {
                if let Some(revoked) = cache.1.get(id) {
                    return *revoked;
                }
            }
        }
        let Ok(revoked) = self.read(id) else {
            // Fail closed if the store cannot answer.
            return true;
        };
        let mut cache = self.cache.lock().expect("revocation cache lock");
        if cache.0 != generation || cache.1.len() >= MAX_CACHED {
            *cache = (generation, HashMap::new());
        }
        if self.sm.certificates_generation() == generation {
            cache.1.insert(id.to_string(), revoked);
        }
        revoked
    }
}
