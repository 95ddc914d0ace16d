//! Revocation backed by the store: a removed manager's or agent's certificate record
//! is marked revoked, and the authorization layer refuses it from then on.

use lnswarm_common::{
    api::CertificateRecord,
    pki::{Revocations, Role},
};

use crate::store::{keys, StateMachine};

pub struct StoreRevocations {
    sm: StateMachine,
}

impl StoreRevocations {
    pub fn new(sm: StateMachine) -> Self {
        StoreRevocations { sm }
    }
}

impl Revocations for StoreRevocations {
    fn is_revoked(&self, role: Role, id: &str) -> bool {
        if !matches!(role, Role::Manager | Role::Worker) {
            return false;
        }
        match self.sm.get(&keys::certificate(id)) {
            Ok(Some(v)) => v
                .decode::<CertificateRecord>()
                .map(|r| r.revoked)
                .unwrap_or(true),
            Ok(None) => false,
            // Fail closed if the store cannot answer.
            Err(_) => true,
        }
    }
}
