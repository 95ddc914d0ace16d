//! `lnswarmctl cluster`: info and join tokens.

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use lnswarm_common::api::{
    control_client::ControlClient, GetClusterInfoRequest, GetJoinTokenRequest, JoinRole,
};
use serde_json::json;

use crate::{
    connection::Connection,
    output::{print_json, print_table, Format},
};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster's id, CA digest, settings and size.
    Info {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print a join token (only the token, so scripts can capture it).
    JoinToken {
        #[arg(value_enum)]
        role: TokenRole,
        /// Replace the token first; the old one is refused from then on.
        #[arg(long)]
        rotate: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TokenRole {
    Worker,
    Manager,
}

pub async fn run(conn: &Connection, cmd: ClusterCommand) -> Result<()> {
    let mut control = ControlClient::new(conn.manager_channel().await?);
    match cmd {
        ClusterCommand::Info { format } => {
            let info = control
                .get_cluster_info(GetClusterInfoRequest {})
                .await?
                .into_inner();
            let settings = info.settings.unwrap_or_default();
            match format {
                Format::Json => print_json(&json!({
                    "cluster_id": info.cluster_id,
                    "root_ca_digest": info.root_ca_digest,
                    "managers": info.managers,
                    "agents": info.agents,
                    "hosted_nodes": info.hosted_nodes,
                    "created_unix_ms": info.created_unix_ms,
                    "settings": {
                        "network": settings.network,
                        "heartbeat_period_ms": settings.heartbeat_period_ms,
                        "heartbeat_grace_multiplier": settings.heartbeat_grace_multiplier,
                        "require_invite_code": settings.require_invite_code,
                    },
                })),
                Format::Table => print_table(
                    &["FIELD", "VALUE"],
                    &[
                        vec!["cluster id".into(), info.cluster_id],
                        vec!["root CA digest".into(), info.root_ca_digest],
                        vec!["managers".into(), info.managers.to_string()],
                        vec!["agents".into(), info.agents.to_string()],
                        vec!["hosted nodes".into(), info.hosted_nodes.to_string()],
                        vec!["network".into(), settings.network],
                        vec![
                            "heartbeat".into(),
                            format!(
                                "every {} ms, down after {} missed",
                                settings.heartbeat_period_ms, settings.heartbeat_grace_multiplier
                            ),
                        ],
                    ],
                ),
            }
        }
        ClusterCommand::JoinToken { role, rotate } => {
            let role = match role {
                TokenRole::Worker => JoinRole::Worker,
                TokenRole::Manager => JoinRole::Manager,
            };
            let token = control
                .get_join_token(GetJoinTokenRequest {
                    role: role as i32,
                    rotate,
                })
                .await?
                .into_inner()
                .token;
            println!("{token}");
        }
    }
    Ok(())
}
