//! `lnswarm-node`: one hosted Lightning node. See `lnswarm_node`.

use anyhow::Context;
use clap::Parser;
use lnswarm_node::{import, seed, NodeArgs, NodeConfig};

fn main() -> anyhow::Result<()> {
    lnswarm_common::private_files::private_umask();
    // Two tools for an exported node, beside the node itself.
    match std::env::args().nth(1).as_deref() {
        Some("import") => {
            let args = import::ImportArgs::parse_from(std::env::args().skip(1));
            return import::import(args);
        }
        Some("seed") => {
            return import::seed(import::SeedArgs::parse_from(std::env::args().skip(1)))
        }
        _ => {}
    }
    let config = NodeConfig::from_args(NodeArgs::parse()).context("configuration")?;
    lnswarm_common::telemetry::init(config.log_format);
    let seed = seed::read_seed(std::io::stdin().lock()).context("reading the seed")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lnswarm-node")
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(lnswarm_node::run(config, seed));
    // ldk-node's stop has joined its tasks; anything left must not delay the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result.context("lnswarm-node")
}
