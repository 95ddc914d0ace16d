//! A manager's own certificates, renewed like everyone's (`cert_renewal`), except
//! that the manager is itself a CA: it signs the CSR directly and records the
//! certificate through the replicated store, which needs the quorum like any
//! issuance. Besides its own, the manager keeps the operator credential in its data
//! directory (written by `init`) renewed, so that an operator on the manager's host
//! is never locked out by an expiry.

use std::{path::PathBuf, sync::Arc};

use futures::FutureExt;
use lnswarm_common::{
    cert_renewal::{save_credentials, Renewal, RenewalError, Renewed, RootState, TrustSync},
    pki::{ip_of_address, PeerVerifier, Role},
    tls::LiveIdentity,
};
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::{issue_and_record, IssueError};
use crate::{cluster, store::Store};

impl From<IssueError> for RenewalError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Revoked => RenewalError::Refused(e.to_string()),
            _ => RenewalError::Failed(e.to_string()),
        }
    }
}

/// Whose certificate a manager keeps renewed.
pub struct Holder {
    pub role: Role,
    /// CN.
    pub id: String,
    /// Where it is reached, for its IP SAN (managers).
    pub advertise: String,
    /// Where its credentials live.
    pub credentials_dir: PathBuf,
    /// Where its TLS configs read it (for the operator credential, nothing does).
    pub identity: Arc<LiveIdentity>,
    /// The roots its TLS configs trust, if any read it; a root rotation changes
    /// them (and makes the holder renew early either way).
    pub verifier: Option<PeerVerifier>,
}

/// Renews `holder`'s certificate until `stop`: writes each new one to its
/// directory and swaps it into its identity, so new connections present it.
pub async fn keep_renewed(store: Store, holder: Holder, stop: CancellationToken) {
    let Holder {
        role,
        id: manager_id,
        advertise,
        credentials_dir,
        identity,
        verifier,
    } = holder;
    let request = {
        let store = store.clone();
        move |csr_pem: String| {
            let (store, id, advertise) = (store.clone(), manager_id.clone(), advertise.clone());
            async move {
                let sans: Vec<_> = ip_of_address(&advertise).into_iter().collect();
                let cert_pem = issue_and_record(&store, &csr_pem, role, &id, &sans).await?;
                let (_, record) = cluster::load(&store).map_err(IssueError::from)?;
                Ok(Renewed {
                    cert_pem,
                    key_pem: String::new(),
                    ca_pem: cluster::trust_bundle(&record),
                })
            }
            .boxed()
        }
    };
    // A holder nothing verifies with still learns of a rotation to renew early.
    let verifier = match verifier {
        Some(v) => Some(v),
        None => cluster::load(&store)
            .ok()
            .and_then(|(_, r)| PeerVerifier::new(&r.ca_cert_pem, &r.cluster_id).ok()),
    };
    let trust = verifier.map(|verifier| TrustSync {
        verifier,
        // The manager's own store answers.
        probe: {
            let store = store.clone();
            Box::new(move || {
                let store = store.clone();
                async move {
                    let (_, record) = cluster::load(&store).map_err(IssueError::from)?;
                    Ok(RootState {
                        signing_root: cluster::signing_root(&record).to_string(),
                        trust_bundle: cluster::trust_bundle(&record),
                    })
                }
                .boxed()
            })
        },
        ca_file: Some(credentials_dir.join("ca.pem")),
    });
    let renewal = Renewal {
        identity,
        role,
        request: Box::new(request),
        save: save_credentials(credentials_dir),
        trust,
    };
    if let Err(e) = renewal.run(stop).await {
        error!(error = %e, %role, "a certificate this manager keeps is no longer renewed");
    }
}
