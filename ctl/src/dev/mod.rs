//! `lnswarmctl dev`: a whole local cluster on loopback in one command: the regtest
//! chain stand-in, one or more managers, and agents, with `--demo` running the
//! product's main path (register two nodes, schedule them, fund one, open a channel,
//! pay an invoice).

mod cluster;
mod demo;
mod regtest_rpc;

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use cluster::LocalCluster;

#[derive(Args)]
pub struct DevArgs {
    /// Keep the cluster's files here (default: a new temporary directory, removed on
    /// exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Managers in the quorum (1, 3 or 5).
    #[arg(long, default_value_t = 1)]
    managers: usize,
    /// Agents (worker hosts).
    #[arg(long, default_value_t = 2)]
    agents: usize,
    /// Register two nodes, schedule them, fund one, open a channel and pay an invoice,
    /// then stop (unless --keep).
    #[arg(long)]
    demo: bool,
    /// After --demo, keep the cluster running until Ctrl-C.
    #[arg(long, requires = "demo")]
    keep: bool,
}

pub async fn run(args: DevArgs) -> Result<()> {
    anyhow::ensure!(
        matches!(args.managers, 1 | 3 | 5),
        "--managers must be 1, 3 or 5"
    );
    anyhow::ensure!(args.agents >= 1, "--agents must be at least 1");
    let mut cluster = LocalCluster::start(args.dir.clone(), args.managers, args.agents).await?;
    let outcome = async {
        cluster.print_usage();
        if args.demo {
            demo::run(&cluster).await?;
            if !args.keep {
                return Ok(());
            }
            println!("\nthe cluster keeps running; Ctrl-C stops it");
        }
        lnswarm_common::signals::shutdown().await;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    println!("stopping the cluster...");
    cluster.stop().await;
    outcome
}
