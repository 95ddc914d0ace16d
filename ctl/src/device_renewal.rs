//! An owner's device during a root CA rotation. Devices do not renew themselves,
//! so each owner command first asks the CA which root signs now; if this device's
//! certificate is from another one (the cluster is rotating), it renews it through
//! the Scheduler and saves it in the profile. A device not used during the
//! rotation is refused afterwards: it recovers with its mnemonic (`node recover`)
//! or is paired from another device.

use std::path::Path;

use lnswarm_common::{
    api::{ca_client::CaClient, GetRootCaCertificateRequest, RenewDeviceCertificateRequest},
    credentials::Credentials,
    pki::{issued_by, new_key_and_csr, subject_of, Role},
    tls,
};

use crate::profile::{self, ProfileInfo};

/// Longest the check may hold up an owner command.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `creds`, renewed first if the cluster is rotating its root and they are from
/// the old one. A failed renewal is reported and the command goes on with `creds`.
pub async fn renew_if_rotating(
    dir: &Path,
    info: &ProfileInfo,
    creds: Credentials,
    manager: &str,
) -> Credentials {
    // A manager that does not answer soon is the command's to report.
    let checked = tokio::time::timeout(CHECK_TIMEOUT, renew(dir, info, &creds, manager)).await;
    match checked.unwrap_or(Ok(None)) {
        Ok(Some(renewed)) => {
            eprintln!("renewed this device's certificate: the cluster's root CA is being rotated");
            renewed
        }
        Ok(None) => creds,
        Err(e) => {
            eprintln!("warning: the cluster's root CA is being rotated and this device's certificate could not be renewed: {e:#}");
            creds
        }
    }
}

async fn renew(
    dir: &Path,
    info: &ProfileInfo,
    creds: &Credentials,
    manager: &str,
) -> anyhow::Result<Option<Credentials>> {
    let tls = creds.client_tls()?;
    for addr in crate::retry::manager_addrs(manager) {
        let Ok(channel) = tls::connect(&addr, &tls, Role::Manager).await else {
            continue;
        };
        // Whether to renew; if the CA cannot say, the command itself will report
        // what is wrong with the manager.
        let roots = match CaClient::new(channel.clone())
            .get_root_ca_certificate(GetRootCaCertificateRequest {})
            .await
        {
            Ok(roots) => roots.into_inner(),
            Err(s)
                if s.code() == tonic::Code::Unauthenticated
                    && s.message().contains("not signed") =>
            {
                eprintln!("this device's certificate is from a root CA the cluster no longer trusts (was the root rotated?): recover the node with its mnemonic (`lnswarmctl node recover --ca-digest NEW_DIGEST --force`) or pair this device from another one");
                return Ok(None);
            }
            Err(_) => return Ok(None),
        };
        let signing = String::from_utf8(roots.signing_root)?;
        if signing.is_empty() || issued_by(&creds.cert_pem, &signing) {
            return Ok(None);
        }
        let role = match subject_of(&creds.cert_pem)?.organizational_units.as_slice() {
            [ou] if ou == Role::Viewer.ou() => Role::Viewer,
            _ => Role::User,
        };
        let key = new_key_and_csr(&info.device, Some(role))?;
        let answer = lnswarm_common::api::scheduler_client::SchedulerClient::new(channel)
            .renew_device_certificate(RenewDeviceCertificateRequest {
                node_id: hex::decode(&info.node_id)?,
                csr: key.csr_pem.into_bytes(),
            })
            .await?
            .into_inner();
        let renewed = Credentials {
            cert_pem: String::from_utf8(answer.device_cert)?,
            key_pem: key.key_pem,
            ca_pem: String::from_utf8(answer.root_ca)?,
        };
        profile::save(dir, info, &renewed)?;
        return Ok(Some(renewed));
    }
    Ok(None)
}
