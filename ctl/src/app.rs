//! `lnswarmctl app`: app credentials. An app (OU `lnswarm-app`) registers nodes for
//! its users without invite codes, as Greenlight's partner certificates do; an
//! operator issues one with `lnswarmctl app create`. The key is made here and never
//! leaves this machine.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use lnswarm_common::{
    api::{control_client::ControlClient, IssueAppCertificateRequest},
    credentials::Credentials,
    pki::{new_key_and_csr, Role},
};

use tonic::transport::Channel;

use crate::connection::Connection;

#[derive(Subcommand)]
pub enum AppCommand {
    /// Issue an app credential into DIR (cert.pem, key.pem, ca.pem).
    Create {
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Issues the app credential `name` into `out`.
pub async fn create(
    control: &mut ControlClient<Channel>,
    name: &str,
    out: &std::path::Path,
) -> Result<()> {
    let key = new_key_and_csr(name, Some(Role::App))?;
    let issued = control
        .issue_app_certificate(IssueAppCertificateRequest {
            name: name.to_string(),
            csr: key.csr_pem.into_bytes(),
        })
        .await?
        .into_inner();
    Credentials {
        cert_pem: String::from_utf8(issued.certificate)?,
        key_pem: key.key_pem,
        ca_pem: String::from_utf8(issued.root_ca)?,
    }
    .save(out)?;
    Ok(())
}

pub async fn run(conn: &Connection, cmd: AppCommand) -> Result<()> {
    match cmd {
        AppCommand::Create { name, out } => {
            if Credentials::exist(&out) {
                anyhow::bail!(
                    "{} already holds a credential; pick another directory",
                    out.display()
                );
            }
            create(&mut conn.control().await?, &name, &out).await?;
            println!("app credential for {name:?} in {}", out.display());
            println!(
                "register nodes with it: lnswarmctl node register --app {} ...",
                out.display()
            );
        }
    }
    Ok(())
}
