//! The keys that may stay on the local disk of whichever agent runs the node,
//! because losing them on a move costs only time: ldk-node rebuilds them.
//! - `network_graph`: refilled from gossip (or rapid gossip sync);
//! - `scorer` and `external_pathfinding_scores_cache`: routing learns again;
//! - `node_metrics`: sync timestamps; the next sync simply runs in full.
//!
//! Everything else (ChannelManager, monitors and their updates, archived monitors,
//! the output sweeper, payments, the event queue, the BDK wallet, peers) must be
//! replicated: without it channels, funds or history are lost.

/// Whether LDK's key is one of the rebuildable ones.
pub fn is_rebuildable(primary: &str, secondary: &str, key: &str) -> bool {
    primary.is_empty()
        && secondary.is_empty()
        && matches!(
            key,
            "network_graph" | "scorer" | "external_pathfinding_scores_cache" | "node_metrics"
        )
}

/// The SQLite file (under the storage dir) that holds them.
pub const FILE: &str = "rebuildable.sqlite";
