//! Building and starting the ldk-node `Node` from a [`NodeConfig`] and the seed.
//! Both calls block (ldk-node drives its own futures with `block_on`), so callers
//! run them on tokio's blocking pool.

use std::{str::FromStr, sync::Arc};

use ldk_node::{
    config::{BackgroundSyncConfig, Config, ElectrumSyncConfig, EsploraSyncConfig},
    lightning::{ln::msgs::SocketAddress, routing::gossip::NodeAlias},
    Builder, Node,
};

use crate::{
    config::{ChainSource, NodeConfig},
    seed::Seed,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid --listen address {0:?}")]
    ListenAddress(String),
    #[error("invalid alias: {0}")]
    Alias(String),
    #[error("building the node: {0}")]
    Build(#[from] ldk_node::BuildError),
    #[error("the seed gives node id {actual}, but this node is {expected}; refusing to start")]
    WrongSeed { expected: String, actual: String },
    #[error("starting the node: {0}")]
    Start(ldk_node::NodeError),
}

/// Builds the node (reading or creating its state under the storage dir) and starts
/// it: chain sync, peer listener, background processing.
/// `store` is the replicated state (see [`crate::state`]); without one the node
/// keeps ldk-node's SQLite under the storage dir.
pub fn build_and_start(
    config: &NodeConfig,
    seed: &Seed,
    store: Option<Arc<ldk_node::DynStore>>,
) -> Result<Arc<Node>, StartError> {
    let mut ldk = Config {
        storage_dir_path: config.storage_dir.to_string_lossy().into_owned(),
        network: config.network,
        ..Default::default()
    };
    let listen = SocketAddress::from_str(&config.listen)
        .map_err(|_| StartError::ListenAddress(config.listen.clone()))?;
    ldk.listening_addresses = Some(vec![listen]);
    if let Some(alias) = &config.alias {
        let mut bytes = [0u8; 32];
        if alias.len() > 32 {
            return Err(StartError::Alias("longer than 32 bytes".into()));
        }
        bytes[..alias.len()].copy_from_slice(alias.as_bytes());
        ldk.node_alias = Some(NodeAlias(bytes));
    }

    let mut builder = Builder::from_config(ldk);
    builder.set_entropy_seed_bytes(seed.0);
    builder.set_log_facade_logger();
    let sync = BackgroundSyncConfig {
        onchain_wallet_sync_interval_secs: config.sync_interval_secs,
        lightning_wallet_sync_interval_secs: config.sync_interval_secs,
        fee_rate_cache_update_interval_secs: config.sync_interval_secs.max(60),
    };
    match &config.chain {
        ChainSource::BitcoindRpc {
            host,
            port,
            user,
            password,
        } => {
            builder.set_chain_source_bitcoind_rpc(
                host.clone(),
                *port,
                user.clone(),
                password.clone(),
            );
        }
        ChainSource::Esplora { url } => {
            builder.set_chain_source_esplora(
                url.clone(),
                Some(EsploraSyncConfig {
                    background_sync_config: Some(sync),
                }),
            );
        }
        ChainSource::Electrum { url } => {
            builder.set_chain_source_electrum(
                url.clone(),
                Some(ElectrumSyncConfig {
                    background_sync_config: Some(sync),
                }),
            );
        }
    }
    let node = Arc::new(match store {
        Some(store) => builder.build_with_store(store)?,
        None => builder.build()?,
    });
    if node.node_id() != config.node_id {
        return Err(StartError::WrongSeed {
            expected: config.node_id.to_string(),
            actual: node.node_id().to_string(),
        });
    }
    node.start().map_err(StartError::Start)?;
    Ok(node)
}
