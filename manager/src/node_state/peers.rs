//! Where a node's hosted peers listen now. A node that moves gets a new address,
//! and its channel peers only know the old one; when both ends of a channel are
//! hosted here, each can ask the cluster where the other went.

use lnswarm_common::api::{HostedNode, HostedNodeState, PeerAddress};

use super::fence::{self, FenceError};
use crate::store::{keys, Store};

/// Most peers one call may ask about.
pub const MAX_PEERS: usize = 1_000;

/// The addresses of those of `peers` that are hosted here and running.
pub fn addresses(
    store: &Store,
    node_id: &str,
    epoch: u64,
    peers: &[String],
) -> Result<Vec<PeerAddress>, FenceError> {
    if peers.len() > MAX_PEERS {
        return Err(FenceError::TooMany);
    }
    fence::current_lease(store, node_id, epoch)?;
    let mut out = Vec::new();
    for peer in peers {
        if !lnswarm_common::ids::is_node_id_hex(peer) {
            continue;
        }
        if let Some((_, n)) = store.get::<HostedNode>(&keys::hosted_node(peer))? {
            if n.state == HostedNodeState::Running as i32 && !n.lightning_addr.is_empty() {
                out.push(PeerAddress {
                    node_id: n.node_id,
                    address: n.lightning_addr,
                });
            }
        }
    }
    Ok(out)
}
