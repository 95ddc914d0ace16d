//! `lnswarmctl cluster ca`: the root CA's state, and `--rotate` to move the whole
//! cluster to a new root (SwarmKit's `docker swarm ca --rotate`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use lnswarm_common::api::{
    GetRootCaStatusRequest, RootCaStatus, RootRotationPhase, RotateRootCaRequest,
};
use serde_json::json;

use crate::{
    connection::Connection,
    output::{print_json, print_table, unix_time, Format},
};

#[derive(clap::Args)]
pub struct CaArgs {
    /// Start a rotation to a new root: every manager, agent and hosted node moves
    /// to certificates from it while both roots are trusted, then the old root is
    /// dropped and the join tokens change.
    #[arg(long)]
    rotate: bool,
    /// With --rotate: the new root's certificate (PEM), instead of one the
    /// managers make. Its O must be the cluster id.
    #[arg(long, requires_all = ["rotate", "ca_key"])]
    ca_cert: Option<PathBuf>,
    /// With --rotate: the new root's private key (PEM).
    #[arg(long, requires_all = ["rotate", "ca_cert"])]
    ca_key: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub async fn run(conn: &Connection, args: CaArgs) -> Result<()> {
    let mut control = conn.control().await?;
    let status = if args.rotate {
        let read = |p: &Option<PathBuf>| -> Result<Vec<u8>> {
            match p {
                Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
                None => Ok(Vec::new()),
            }
        };
        control
            .rotate_root_ca(RotateRootCaRequest {
                ca_cert: read(&args.ca_cert)?,
                ca_key: read(&args.ca_key)?,
            })
            .await?
            .into_inner()
    } else {
        control
            .get_root_ca_status(GetRootCaStatusRequest {})
            .await?
            .into_inner()
    };
    show(&status, args.format);
    Ok(())
}

fn phase(s: &RootCaStatus) -> &'static str {
    match RootRotationPhase::try_from(s.phase).unwrap_or(RootRotationPhase::None) {
        RootRotationPhase::None => "none",
        RootRotationPhase::Rotating => "rotating",
        RootRotationPhase::Done => "done",
    }
}

fn show(s: &RootCaStatus, format: Format) {
    let count = |kind: &str| s.on_old_root.iter().filter(|h| h.kind == kind).count();
    let ms = |t: i64| {
        if t > 0 {
            unix_time(t / 1000)
        } else {
            String::new()
        }
    };
    match format {
        Format::Json => print_json(&json!({
            "phase": phase(s),
            "root_ca_digest": s.root_ca_digest,
            "new_root_ca_digest": s.new_root_ca_digest,
            "on_old_root": {
                "managers": count("manager"),
                "agents": count("agent"),
                "nodes": count("node"),
                "holders": s.on_old_root.iter().map(|h| json!({"kind": h.kind, "id": h.id})).collect::<Vec<_>>(),
            },
            "started": ms(s.started_unix_ms),
            "finished": ms(s.finished_unix_ms),
        })),
        Format::Table => {
            let mut rows = vec![
                vec!["phase".into(), phase(s).into()],
                vec!["root CA digest".into(), s.root_ca_digest.clone()],
            ];
            if !s.new_root_ca_digest.is_empty() {
                rows.push(vec![
                    "new root CA digest".into(),
                    s.new_root_ca_digest.clone(),
                ]);
                rows.push(vec!["started".into(), ms(s.started_unix_ms)]);
                rows.push(vec![
                    "still on the old root".into(),
                    format!(
                        "{} managers, {} agents, {} nodes",
                        count("manager"),
                        count("agent"),
                        count("node")
                    ),
                ]);
            } else if s.finished_unix_ms > 0 {
                rows.push(vec![
                    "last rotation finished".into(),
                    ms(s.finished_unix_ms),
                ]);
            }
            print_table(&["FIELD", "VALUE"], &rows);
        }
    }
}
