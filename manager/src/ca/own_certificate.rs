//! A manager's own certificates, renewed like everyone's (`cert_renewal`), except
//! that the manager is itself a CA: it signs the CSR directly and records the
//! certificate through the replicated store, which needs the quorum like any
//! issuance. Besides its own, the manager keeps the operator credential in its data
//! directory (written by `init`) renewed, so that an operator on the manager's host
//! is never locked out by an expiry.

use std::{path::PathBuf, sync::Arc};

use futures::FutureExt;
use lnswarm_common::{
    cert_renewal::{save_credentials, Renewal, RenewalError, Renewed},
    pki::{ip_of_address, Role},
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
                    ca_pem: record.ca_cert_pem,
                })
            }
            .boxed()
        }
    };
    let renewal = Renewal {
        identity,
        role,
        request: Box::new(request),
        save: save_credentials(credentials_dir),
    };
    if let Err(e) = renewal.run(stop).await {
        error!(error = %e, %role, "a certificate this manager keeps is no longer renewed");
    }
}
