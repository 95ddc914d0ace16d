//! Which manager to talk to and with which credential: `--manager` /
//! `LNSWARM_MANAGER` and `--credentials` / `LNSWARM_CREDENTIALS` (a directory with
//! cert.pem, key.pem and ca.pem, such as a manager's `D/operator`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lnswarm_common::{
    api::control_client::ControlClient, credentials::Credentials, pki::Role, tls,
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
        let tls = self.load_credentials()?.client_tls()?;
        let mut last = None;
        for addr in &addrs {
            match tls::connect(addr, &tls, Role::Manager).await {
                Ok(channel) => return Ok(channel),
                Err(e) => {
                    last = Some(
                        anyhow::Error::from(e).context(format!("connecting to manager {addr}")),
                    )
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("--manager names no address")))
    }

    /// A Control API client on [`Self::manager_channel`].
    pub async fn control(&self) -> Result<ControlClient<Channel>> {
        Ok(ControlClient::new(self.manager_channel().await?)
            .max_decoding_message_size(MAX_CONTROL_MESSAGE_BYTES))
    }
}
