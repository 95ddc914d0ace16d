//! `lnswarmctl node webhook add|ls|rm|rotate`: the owner's outgoing webhooks
//! (Scheduler's AddOutgoingWebhook and friends). A secret is shown once, when it is
//! made; the receiver checks each POST's `lnswarm-signature` header with it.

use anyhow::{Context, Result};
use clap::Subcommand;
use lnswarm_common::{
    api::{
        AddOutgoingWebhookRequest, DeleteOutgoingWebhooksRequest, ListOutgoingWebhooksRequest,
        RotateOutgoingWebhookSecretRequest,
    },
    credentials::Credentials,
};
use serde_json::json;

use crate::{
    node_api::scheduler,
    output::{print_json, print_table, Format},
    retry,
};

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// POST the node's events (invoice_payment) to URI (https; plain http only to a
    /// loopback address, if the cluster allows it). Prints the id and the secret.
    Add { uri: String },
    /// The node's webhooks.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete webhooks by id, with their pending deliveries.
    Rm {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Give a webhook a new secret (prints it); later deliveries are signed with it.
    Rotate { id: i64 },
}

const SECRET_ONCE: &str =
    "the secret is shown only now: keep it where the receiver can check signatures with it";

pub async fn run(
    manager: &str,
    creds: &Credentials,
    node_id: &str,
    cmd: WebhookCommand,
) -> Result<()> {
    let managers = retry::manager_addrs(manager);
    let node_id = hex::decode(node_id).context("the profile's node id is not hex")?;
    match cmd {
        // Retried only on refusals made before anything was proposed (no leader).
        WebhookCommand::Add { uri } => {
            let added = retry::idempotent(&managers, |addr| {
                let req = AddOutgoingWebhookRequest {
                    node_id: node_id.clone(),
                    uri: uri.clone(),
                };
                async move {
                    scheduler(&addr, creds)
                        .await?
                        .add_outgoing_webhook(req)
                        .await
                }
            })
            .await
            .context("AddOutgoingWebhook")?
            .into_inner();
            print_json(&json!({ "id": added.id, "secret": added.secret }));
            eprintln!("{SECRET_ONCE}");
        }
        WebhookCommand::Ls { format } => {
            let list = retry::idempotent(&managers, |addr| {
                let req = ListOutgoingWebhooksRequest {
                    node_id: node_id.clone(),
                };
                async move {
                    scheduler(&addr, creds)
                        .await?
                        .list_outgoing_webhooks(req)
                        .await
                }
            })
            .await
            .context("ListOutgoingWebhooks")?
            .into_inner()
            .outgoing_webhooks;
            match format {
                Format::Json => print_json(&json!(list
                    .iter()
                    .map(|w| json!({ "id": w.id, "uri": w.uri }))
                    .collect::<Vec<_>>())),
                Format::Table => print_table(
                    &["ID", "URI"],
                    &list
                        .iter()
                        .map(|w| vec![w.id.to_string(), w.uri.clone()])
                        .collect::<Vec<_>>(),
                ),
            }
        }
        WebhookCommand::Rm { ids } => {
            retry::idempotent(&managers, |addr| {
                let req = DeleteOutgoingWebhooksRequest {
                    node_id: node_id.clone(),
                    ids: ids.clone(),
                };
                async move { scheduler(&addr, creds).await?.delete_webhooks(req).await }
            })
            .await
            .context("DeleteWebhooks")?;
            println!("deleted");
        }
        WebhookCommand::Rotate { id } => {
            let secret = retry::idempotent(&managers, |addr| {
                let req = RotateOutgoingWebhookSecretRequest {
                    node_id: node_id.clone(),
                    webhook_id: id,
                };
                async move {
                    scheduler(&addr, creds)
                        .await?
                        .rotate_outgoing_webhook_secret(req)
                        .await
                }
            })
            .await
            .context("RotateOutgoingWebhookSecret")?
            .into_inner()
            .secret;
            print_json(&json!({ "id": id, "secret": secret }));
            eprintln!("{SECRET_ONCE}");
        }
    }
    Ok(())
}
