//! `lnswarm-regtest`: the stand-in for bitcoind on machines where bitcoind cannot be
//! installed. See `lnswarm_regtest`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use lnswarm_regtest::{http, rpc::Regtest, Chain, Wallet};

/// A regtest Bitcoin chain serving the subset of bitcoind's JSON-RPC that ldk-node
/// uses: the stand-in for bitcoind on machines where bitcoind cannot be installed
/// (bitcoind RPC stays the production chain source).
///
/// Blocks are real (headers with regtest proof of work, merkle roots, BIP34
/// coinbases, witness commitments). A transaction may spend only existing unspent
/// outputs, its inputs must cover its outputs, coinbases mature after 100 blocks and
/// absolute locktimes are enforced; input scripts/signatures and relative timelocks
/// are NOT checked. Besides ldk-node's calls it serves generatetoaddress,
/// getnewaddress (its own wallet's address), getbalance and sendtoaddress (pays from
/// its wallet's mature coinbases: mine 101 blocks to getnewaddress first).
#[derive(Parser, Debug)]
#[command(name = "lnswarm-regtest", version)]
struct Args {
    /// Where the chain (blocks.dat, mempool.dat) and the wallet key live.
    #[arg(long)]
    data_dir: PathBuf,
    /// JSON-RPC listen address.
    #[arg(long, default_value = "127.0.0.1:18443")]
    rpc_bind: SocketAddr,
    /// JSON-RPC user (basic auth).
    #[arg(long, default_value = "lnswarm")]
    rpc_user: String,
    /// JSON-RPC password (basic auth).
    #[arg(long, env = "LNSWARM_REGTEST_RPC_PASSWORD", hide_env_values = true)]
    rpc_password: String,
    /// Log lines as `text` or `json` (one object per line).
    #[arg(long, env = "LNSWARM_LOG_FORMAT", default_value_t)]
    log_format: lnswarm_common::telemetry::LogFormat,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    lnswarm_common::telemetry::init(args.log_format);
    let chain = Chain::open(&args.data_dir)
        .with_context(|| format!("opening the chain in {}", args.data_dir.display()))?;
    let wallet = Wallet::open(&args.data_dir)
        .with_context(|| format!("opening the wallet in {}", args.data_dir.display()))?;
    let height = chain.height();
    let listener = tokio::net::TcpListener::bind(args.rpc_bind)
        .await
        .with_context(|| format!("binding {}", args.rpc_bind))?;
    tracing::info!(
        rpc = %listener.local_addr()?,
        height,
        wallet = %wallet.address(),
        "lnswarm-regtest serving"
    );
    let regtest = Arc::new(Regtest {
        chain: std::sync::Mutex::new(chain),
        wallet,
    });
    let auth = http::basic_auth(&args.rpc_user, &args.rpc_password);
    tokio::select! {
        _ = http::serve(listener, regtest, auth) => {}
        _ = lnswarm_common::signals::shutdown() => tracing::info!("stopping"),
    }
    Ok(())
}
