//! Which manager to talk to and with which credential: `--manager` /
//! `LNSWARM_MANAGER` and `--credentials` / `LNSWARM_CREDENTIALS` (a directory with
//! cert.pem, key.pem and ca.pem, such as a manager's `D/operator`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lnswarm_common::{
    api::control_client::ControlClient,
    cert_renewal::{self, Renewal},
    credentials::Credentials,
    pki::{subject_of, Role},
    tls,
};
use tonic::transport::Channel;

/// Largest Control API answer accepted: the lists of a large cluster (tens of
/// thousands of agents, tasks or hosted nodes) outgrow tonic's 4 MiB default.
const MAX_CONTROL_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Args, Clone)]
pub struct Connection {
    /// Manager address (host:port), or several separated by commas, tried in turn.
    #[arg(long, global = true, env = "LNSWARM_MANAGER")]
    pub manager: Option<String>,
    /// Directory holding cert.pem, key.pem and ca.pem.
    #[arg(long, global = true, env = "LNSWARM_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
}

impl Connection {
    pub fn load_credentials(&self) -> Result<Credentials> {
        let dir = self
            .credentials
            .as_ref()
            .context("no credentials: pass --credentials DIR or set LNSWARM_CREDENTIALS")?;
        Ok(Credentials::load(dir)?)
    }

    pub fn manager_addr(&self) -> Result<String> {
        self.manager
            .clone()
            .context("no manager: pass --manager HOST:PORT or set LNSWARM_MANAGER")
    }

    /// A channel to the first of the managers given that answers, authenticated
    /// with the credential.
    pub async fn manager_channel(&self) -> Result<Channel> {
        let addrs = crate::retry::manager_addrs(&self.manager_addr()?);
        let creds = self.load_credentials()?;
        let tls = creds.client_tls()?;
        let mut last = None;
        for addr in &addrs {
            match tls::connect(addr, &tls, Role::Manager).await {
                Ok(channel) => {
                    self.renew_if_due(&creds, &tls, addr).await;
                    return Ok(channel);
                }
                Err(e) => {
                    last = Some(
                        anyhow::Error::from(e).context(format!("connecting to manager {addr}")),
                    )
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("--manager names no address")))
    }

    /// An operator credential past half its lifetime is renewed as it is used
    /// (lnswarmctl runs only now and then, so it renews when it runs). A failure
    /// is reported and the call goes on with the credential it has.
    async fn renew_if_due(&self, creds: &Credentials, tls: &tls::ClientTls, addr: &str) {
        let Some(dir) = &self.credentials else { return };
        let operator = subject_of(&creds.cert_pem)
            .map(|s| s.organizational_units == [Role::Operator.ou()])
            .unwrap_or(false);
        if !operator || !cert_renewal::in_window(&creds.cert_pem).unwrap_or(false) {
            return;
        }
        let Some(identity) = tls.identity().cloned() else {
            return;
        };
        let addr = addr.to_string();
        let renewal = Renewal {
            identity,
            role: Role::Operator,
            request: cert_renewal::through_managers(move || vec![addr.clone()], tls.clone(), 0),
            save: cert_renewal::save_credentials(dir.clone()),
            trust: None,
        };
        match renewal.renew_now().await {
            Ok(not_after) => eprintln!(
                "renewed the operator credential in {} (valid until {})",
                dir.display(),
                crate::output::unix_time(not_after)
            ),
            Err(e) => eprintln!("warning: could not renew the operator credential: {e}"),
        }
    }

    /// A Control API client on [`Self::manager_channel`].
    pub async fn control(&self) -> Result<ControlClient<Channel>> {
        Ok(ControlClient::new(self.manager_channel().await?)
            .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES))
    }
}
