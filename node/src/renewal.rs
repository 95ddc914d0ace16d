//! The node's own certificate, renewed through the managers' CA under the node's
//! lease epoch (a fenced copy is refused, and its certificate runs out with it).
//! The pair is rewritten where the agent put it, so a restart of this task starts
//! from the renewed certificate.

use std::{path::PathBuf, sync::Arc};

use lnswarm_common::{
    cert_files,
    cert_renewal::{probe_managers, through_managers, Renewal, Renewed, TrustSync},
    pki::Role,
    tls::{ClientTls, LiveIdentity},
};
use tokio_util::sync::CancellationToken;

pub async fn keep_renewed(
    identity: Arc<LiveIdentity>,
    tls: ClientTls,
    managers: Vec<String>,
    epoch: u64,
    (cert_path, key_path): (PathBuf, PathBuf),
    stop: CancellationToken,
) {
    // The CA file is the agent's, shared by its nodes: the agent keeps it (the
    // node follows the cluster's roots in memory).
    let save =
        move |r: &Renewed| cert_files::write_pair(&cert_path, &key_path, &r.cert_pem, &r.key_pem);
    let trust = tls.verifier().cloned().map(|verifier| TrustSync {
        verifier,
        probe: {
            let managers = managers.clone();
            probe_managers(move || managers.clone(), tls.clone())
        },
        ca_file: None,
    });
    let renewal = Renewal {
        identity,
        role: Role::Node,
        request: through_managers(move || managers.clone(), tls, epoch),
        save: Box::new(save),
        trust,
    };
    if let Err(e) = renewal.run(stop).await {
        tracing::error!(error = %e, "this node's certificate is no longer renewed");
    }
}
