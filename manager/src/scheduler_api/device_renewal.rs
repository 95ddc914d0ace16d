//! Owners' devices during a root CA rotation. Devices do not renew themselves
//! (they are issued a certificate and keep it), so a device whose certificate is
//! from the old root renews it, through lnswarmctl, when it is used while the
//! rotation runs: same CN and OU, a new key, from the new root. Outside a rotation
//! this is refused; a device that missed the window recovers with the mnemonic or
//! is paired from another device.

use lnswarm_common::pki::{issued_by_der, Identity, Role};

use crate::{
    ca::{check_csr, sign_leaf, IssueError},
    cluster::{self, ClusterError},
};

#[derive(Debug, thiserror::Error)]
pub enum DeviceRenewalError {
    #[error("no root CA rotation is in progress: a device keeps the certificate it was issued (recover or pair to get another)")]
    NotRotating,
    #[error("this device's certificate is already from the new root CA")]
    AlreadyCurrent,
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A certificate for `csr` with `who`'s CN and role, from the new root, for a
/// device presenting `presented` (DER) from the old one. Returns it (PEM, with the
/// cross-signed root) and the roots to trust.
pub fn renew(
    store: &crate::store::Store,
    who: &Identity,
    presented: &[u8],
    csr: &[u8],
) -> Result<(String, String), DeviceRenewalError> {
    let (_, record) = cluster::load(store)?;
    let Some(rotation) = &record.root_rotation else {
        return Err(DeviceRenewalError::NotRotating);
    };
    if issued_by_der(presented, &rotation.new_ca_cert_pem) {
        return Err(DeviceRenewalError::AlreadyCurrent);
    }
    let role = match who.role {
        Role::Viewer => Role::Viewer,
        _ => Role::User,
    };
    let csr_pem = check_csr(csr, role)?;
    let cert = sign_leaf(store, csr_pem, role, &who.id, &[])?;
    Ok((cert.cert_pem, cluster::trust_bundle(&record)))
}
