//! Reaching channel peers at the address they have now. ldk-node keeps the first
//! address it stored for a peer, but a hosted node's address changes when it moves;
//! [`connect_at`] replaces the stored one once the new one answers, and
//! [`follow_hosted_peers`] asks the cluster where disconnected hosted peers went.

use std::{sync::Arc, time::Duration};

use ldk_node::{bitcoin::secp256k1::PublicKey, lightning::ln::msgs::SocketAddress, Node};

use crate::state::ReplicatedStore;

/// Connects to `peer` at `address` and remembers it there, replacing a stored
/// address that differs (only after the new one answered).
pub fn connect_at(
    node: &Node,
    peer: PublicKey,
    address: SocketAddress,
) -> Result<(), ldk_node::NodeError> {
    let stale = node
        .list_peers()
        .into_iter()
        .any(|p| p.node_id == peer && p.is_persisted && p.address != address);
    node.connect(peer, address.clone(), !stale)?;
    if stale {
        node.disconnect(peer)?;
        node.connect(peer, address, true)?;
    }
    Ok(())
}

/// How often disconnected channel peers are looked up.
const EVERY: Duration = Duration::from_secs(5);

/// Every few seconds, asks the cluster where the channel peers that are not
/// connected listen now, and connects to those it knows. Runs until the process
/// ends (on a thread of its own: it blocks).
pub fn follow_hosted_peers(node: Arc<Node>, store: Arc<ReplicatedStore>) {
    std::thread::Builder::new()
        .name("hosted-peers".into())
        .spawn(move || loop {
            std::thread::sleep(EVERY);
            let connected: Vec<PublicKey> = node
                .list_peers()
                .into_iter()
                .filter(|p| p.is_connected)
                .map(|p| p.node_id)
                .collect();
            let mut missing: Vec<String> = node
                .list_channels()
                .into_iter()
                .map(|c| c.counterparty_node_id)
                .filter(|id| !connected.contains(id))
                .map(|id| id.to_string())
                .collect();
            missing.sort();
            missing.dedup();
            if missing.is_empty() {
                continue;
            }
            for (id, addr) in store.peer_addresses(missing) {
                let (Ok(peer), Ok(address)) = (id.parse::<PublicKey>(), addr.parse::<SocketAddress>())
                else {
                    continue;
                };
                match connect_at(&node, peer, address) {
                    Ok(()) => tracing::info!(peer = %id, address = %addr, "reconnected to a hosted peer at its new address"),
                    Err(e) => tracing::debug!(peer = %id, error = %e, "a hosted peer did not answer"),
                }
            }
        })
        .expect("starting the hosted-peers thread");
}
