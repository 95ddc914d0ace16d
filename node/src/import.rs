//! `lnswarm-node import`: turns a node's export (from `lnswarmctl node export`)
//! into a data directory from which `lnswarm-node` runs the node by itself,
//! outside any cluster. The export is decrypted with the node key derived from the
//! owner's mnemonic exactly as registration derives it, and its entries are
//! written into ldk-node's own SQLite store (the one `lnswarm-node` uses without
//! `--state-managers`). The directory also gets a private CA with a server
//! certificate for the node and an owner credential for its Node API.
//!
//! An export must be imported once only: two running copies of one node's state
//! make one of them broadcast revoked states, and its peers take the channels'
//! funds. Import refuses a directory that already holds an import, and is built
//! in a sibling directory that is renamed into place only once complete.
//!
//! `lnswarm-node seed --mnemonic-file F` prints the raw 64-byte seed for the
//! node's stdin: `lnswarm-node seed --mnemonic-file F | lnswarm-node --config
//! DIR/node.json --bitcoind-rpc-host ...`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ldk_node::{
    io::sqlite_store::{SqliteStore, KV_TABLE_NAME, SQLITE_DB_FILE_NAME},
    lightning::util::persist::KVStoreSync,
};
use lnswarm_common::{
    api::NodeExport,
    credentials::Credentials,
    json_file, node_export, node_keys,
    pki::{new_key_and_csr, validity_for, ClusterCa, LeafRequest, Role},
};
use prost::Message;

/// Printed when an import is done, and in `--help`.
pub const ONCE_ONLY: &str = "\
WARNING: run this node from this directory ONLY. Never import the same export
twice, and never start the node from an older copy or backup of its state: two
copies of one node make one of them broadcast revoked channel states, and its
peers then take ALL the funds in those channels.";

/// Written last: the directory holds a complete import.
const MARKER: &str = "IMPORTED.json";

#[derive(clap::Parser, Debug)]
#[command(
    name = "lnswarm-node import",
    about = "Make a data directory that runs an exported node outside the cluster.",
    after_help = ONCE_ONLY
)]
pub struct ImportArgs {
    /// The export, as `lnswarmctl node export --out` wrote it.
    #[arg(long)]
    pub export: PathBuf,
    /// The file holding the node's 24 words.
    #[arg(long)]
    pub mnemonic_file: PathBuf,
    /// The new data directory (must not exist yet, or be empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The node's Lightning listen address in node.json.
    #[arg(long, default_value = "0.0.0.0:9735")]
    pub listen: String,
    /// The Node API listen address in node.json.
    #[arg(long, default_value = "127.0.0.1:10009")]
    pub api_listen: String,
}

#[derive(clap::Parser, Debug)]
#[command(
    name = "lnswarm-node seed",
    about = "Print the node's raw 64-byte seed (for lnswarm-node's stdin) from its mnemonic."
)]
pub struct SeedArgs {
    #[arg(long)]
    pub mnemonic_file: PathBuf,
}

fn seed_of(mnemonic_file: &Path) -> Result<[u8; node_keys::SEED_LEN]> {
    let words = std::fs::read_to_string(mnemonic_file)
        .with_context(|| format!("reading {}", mnemonic_file.display()))?;
    Ok(node_keys::seed_from_mnemonic(&words)?)
}

pub fn seed(args: SeedArgs) -> Result<()> {
    let seed = seed_of(&args.mnemonic_file)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&seed)?;
    out.flush()?;
    Ok(())
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

pub fn import(args: ImportArgs) -> Result<()> {
    if args.data_dir.join(MARKER).exists() {
        bail!(
            "{} already holds an imported node; an export is imported once only (run the node from there)",
            args.data_dir.display()
        );
    }
    if !is_empty_dir(&args.data_dir)? {
        bail!(
            "{} is not empty; import into a new directory",
            args.data_dir.display()
        );
    }
    let seed = seed_of(&args.mnemonic_file)?;
    let secret = node_keys::node_secret(&seed)?;
    let node_id = node_keys::node_id(&seed)?;
    let blob = std::fs::read(&args.export)
        .with_context(|| format!("reading {}", args.export.display()))?;
    let plain = node_export::decrypt(&secret, &blob).with_context(|| {
        format!(
            "decrypting {} with the node key of the mnemonic (node {node_id})",
            args.export.display()
        )
    })?;
    let export = NodeExport::decode(plain.as_slice())
        .context("the decrypted export is not a node export")?;
    if export.node_id != node_id {
        bail!(
            "the export is of node {}, but the mnemonic gives node {node_id}",
            export.node_id
        );
    }

    // Built beside the target and renamed into place once complete.
    let name = args
        .data_dir
        .file_name()
        .context("--data-dir needs a final path component")?
        .to_string_lossy()
        .into_owned();
    let partial = args
        .data_dir
        .with_file_name(format!(".{name}.importing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let built = build(&partial, &export, &args);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if args.data_dir.exists() {
        std::fs::remove_dir(&args.data_dir)
            .with_context(|| format!("replacing the empty {}", args.data_dir.display()))?;
    }
    std::fs::rename(&partial, &args.data_dir)
        .with_context(|| format!("moving the import to {}", args.data_dir.display()))?;
    println!("node id: {node_id}");
    println!("network: {}", export.network);
    println!("entries: {}", export.entries.len());
    println!("data dir: {}", args.data_dir.display());
    println!(
        "run it: lnswarm-node seed --mnemonic-file {} | lnswarm-node --config {} <chain source flags>",
        args.mnemonic_file.display(),
        args.data_dir.join("node.json").display()
    );
    println!(
        "its Node API takes the owner credential in {}",
        args.data_dir.join("owner").display()
    );
    eprintln!("{ONCE_ONLY}");
    Ok(())
}

fn build(dir: &Path, export: &NodeExport, args: &ImportArgs) -> Result<()> {
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let store = SqliteStore::new(
        storage.clone(),
        Some(SQLITE_DB_FILE_NAME.to_string()),
        Some(KV_TABLE_NAME.to_string()),
    )
    .context("creating the node's SQLite store")?;
    for e in &export.entries {
        let k = e.key.as_ref().context("an entry without a key")?;
        KVStoreSync::write(&store, &k.primary, &k.secondary, &k.key, e.value.clone())
            .with_context(|| format!("writing {}/{}/{}", k.primary, k.secondary, k.key))?;
    }
    drop(store);

    // A private CA for the Node API: the cluster's CA stays with the cluster.
    let ca = ClusterCa::create("standalone").context("making the node's CA")?;
    let lifetime = validity_for(Duration::from_secs(5 * 365 * 86400));
    let mint = |role: Role, cn: &str| -> Result<Credentials> {
        let key = new_key_and_csr(cn, Some(role))?;
        let cert = ca.issue(&LeafRequest {
            csr_pem: &key.csr_pem,
            role,
            common_name: cn,
            ip_sans: &[],
            validity: Some(lifetime),
        })?;
        Ok(Credentials {
            cert_pem: cert.pem,
            key_pem: key.key_pem,
            ca_pem: ca.cert_pem().to_string(),
        })
    };
    let tls = dir.join("tls");
    mint(Role::Node, &export.node_id)?.save(&tls)?;
    mint(Role::User, &format!("{}/standalone", export.node_id))?.save(&dir.join("owner"))?;

    // Paths in node.json are where the directory ends up.
    let final_dir = std::path::absolute(&args.data_dir)?;
    let config = serde_json::json!({
        "network": export.network,
        "listen": args.listen,
        "api-listen": args.api_listen,
        "storage-dir": final_dir.join("storage"),
        "tls-cert": final_dir.join("tls").join("cert.pem"),
        "tls-key": final_dir.join("tls").join("key.pem"),
        "ca-cert": final_dir.join("tls").join("ca.pem"),
        "node-id": export.node_id,
    });
    json_file::write_atomic(&dir.join("node.json"), &config)?;
    json_file::write_atomic(
        &dir.join(MARKER),
        &serde_json::json!({
            "node_id": export.node_id,
            "exported_unix_ms": export.exported_unix_ms,
            "imported_unix_ms": lnswarm_common::ids::now_unix_ms(),
            "entries": export.entries.len(),
        }),
    )?;
    Ok(())
}
