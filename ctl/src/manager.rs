//! `lnswarmctl manager`: the manager quorum as the answering manager sees it, and
//! removing a member.

use anyhow::Result;
use clap::Subcommand;
use lnswarm_common::api::{ListManagersRequest, RemoveManagerRequest};
use serde_json::json;

use crate::{
    connection::Connection,
    output::{print_json, print_table, unix_time, Format},
};

#[derive(Subcommand)]
pub enum ManagerCommand {
    /// List managers: id, raft id, address, leader, reachability, term, commit and
    /// applied index (each as that manager reports it).
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove a manager from the quorum; its certificate is refused from then on.
    /// Refuses to break quorum unless --force.
    Remove {
        id: String,
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(conn: &Connection, cmd: ManagerCommand) -> Result<()> {
    let mut client = conn.control().await?;
    match cmd {
        ManagerCommand::Ls { format } => {
            let answer = client
                .list_managers(ListManagersRequest {})
                .await?
                .into_inner();
            let (managers, expiries) = (answer.managers, answer.cert_expires_unix);
            let expires = |id: &str| expiries.get(id).map(|t| unix_time(*t)).unwrap_or_default();
            match format {
                Format::Json => print_json(&json!(managers
                    .iter()
                    .map(|m| json!({
                        "id": m.id,
                        "raft_id": format!("{:x}", m.raft_id),
                        "addr": m.addr,
                        "leader": m.leader,
                        "reachable": m.reachable,
                        "term": m.term,
                        "commit_index": m.commit_index,
                        "applied_index": m.applied_index,
                        "cert_expires": expires(&m.id),
                    }))
                    .collect::<Vec<_>>())),
                Format::Table => print_table(
                    &[
                        "ID",
                        "RAFT ID",
                        "ADDRESS",
                        "LEADER",
                        "REACHABLE",
                        "TERM",
                        "COMMIT",
                        "APPLIED",
                        "CERT EXPIRES",
                    ],
                    &managers
                        .iter()
                        .map(|m| {
                            vec![
                                m.id.clone(),
                                format!("{:x}", m.raft_id),
                                m.addr.clone(),
                                if m.leader { "*".into() } else { String::new() },
                                if m.reachable { "yes" } else { "no" }.into(),
                                m.term.to_string(),
                                m.commit_index.to_string(),
                                m.applied_index.to_string(),
                                expires(&m.id),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        ManagerCommand::Remove { id, force } => {
            client
                .remove_manager(RemoveManagerRequest {
                    id: id.clone(),
                    force,
                })
                .await?;
            println!("removed manager {id}");
        }
    }
    Ok(())
}
