//! `lnswarmctl node export --out FILE`: takes the profile's node out of the
//! cluster (ExportNode) and downloads its encrypted state. The download goes to
//! `FILE.part` and resumes from that file's length, so an interrupted one carries
//! on where it stopped; the whole file is checked against the digest the cluster
//! gave before it is renamed to FILE.

use std::{
    io::{Seek, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use lnswarm_common::{
    api::{DownloadExportRequest, ExportNodeRequest, ExportNodeResponse},
    credentials::Credentials,
};
use sha2::{Digest, Sha256};

use crate::{node_api::scheduler, retry};

/// Printed on stderr after every export: the one thing an owner must not do.
pub const ONCE_ONLY: &str = "\
WARNING: import this export ONCE, and run the node in ONE place only.
Running the same node from two copies of its state (two imports, or an import and
an older backup) makes one of them broadcast revoked channel states: its peers
then take ALL the funds in those channels. The node can never run in this cluster
again; if you lose this file, fetch it again with the same command.";

fn part_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

pub async fn run(manager: &str, creds: &Credentials, out: &Path) -> Result<()> {
    let managers = retry::manager_addrs(manager);
    eprintln!("exporting: the node stops first (up to a minute)...");
    // ExportNode is idempotent: the same export whichever call finishes it.
    let export: ExportNodeResponse = retry::idempotent(&managers, |addr| async move {
        scheduler(&addr, creds)
            .await?
            .export_node(ExportNodeRequest {})
            .await
    })
    .await
    .context("ExportNode")?
    .into_inner();

    if out.exists() {
        let have = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
        if Sha256::digest(&have).as_slice() == export.sha256.as_slice() {
            eprintln!("{} already holds this export", out.display());
            finish(&export, out);
            return Ok(());
        }
        bail!(
            "{} exists and is not this export; choose another --out",
            out.display()
        );
    }
    let part = part_path(out);
    download(&managers, creds, &export, &part).await?;
    let got = Sha256::digest(std::fs::read(&part)?);
    if got.as_slice() != export.sha256.as_slice() {
        std::fs::remove_file(&part)?;
        bail!(
            "the downloaded export does not match its digest (sha256 {}, expected {}); {} was removed, run the command again",
            hex::encode(got),
            hex::encode(&export.sha256),
            part.display()
        );
    }
    std::fs::rename(&part, out)
        .with_context(|| format!("renaming {} to {}", part.display(), out.display()))?;
    finish(&export, out);
    Ok(())
}

fn finish(export: &ExportNodeResponse, out: &Path) {
    println!("export: {}", out.display());
    println!("bytes: {}", export.size);
    println!("sha256: {}", hex::encode(&export.sha256));
    eprintln!("{ONCE_ONLY}");
}

/// Appends to `part` from its current length until it holds `export.size` bytes.
async fn download(
    managers: &[String],
    creds: &Credentials,
    export: &ExportNodeResponse,
    part: &Path,
) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))?;
    let mut have = file.seek(std::io::SeekFrom::End(0))?;
    if have > export.size {
        // Not a prefix of this export: start over.
        file.set_len(0)?;
        have = 0;
    }
    if have > 0 {
        eprintln!("resuming the download at byte {have} of {}", export.size);
    }
    let mut failures = 0;
    while have < export.size {
        let addr = &managers[failures % managers.len().max(1)];
        let result: Result<()> = async {
            let mut stream = scheduler(addr, creds)
                .await?
                .download_export(DownloadExportRequest { offset: have })
                .await?
                .into_inner();
            while let Some(chunk) = stream.message().await? {
                if chunk.offset != have || chunk.sha256 != export.sha256 {
                    bail!("the cluster sent a piece of another export; run the command again");
                }
                file.write_all(&chunk.data)?;
                have += chunk.data.len() as u64;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) if have < export.size => bail!("the download ended early at byte {have}"),
            Ok(()) => {}
            Err(e) if failures < 5 => {
                failures += 1;
                eprintln!("download interrupted at byte {have} ({e:#}); resuming");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context(format!("downloading into {}", part.display()))),
        }
    }
    file.sync_all()?;
    Ok(())
}
