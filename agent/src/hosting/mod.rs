//! The agent's side of hosting Lightning nodes: the executor runtime that turns a
//! hosted-node task into an `lnswarm-node` process. The seed reaches the child only
//! through its stdin; the node's TLS key and chain-source credentials are files at
//! mode 0600 in the node's own directory; each node keeps its ports across restarts.

mod node_version;
mod ports;
mod readiness;
mod runtime;

pub use node_version::NodeBinary;
pub use runtime::{HostedNodeRuntime, HostingConfig};
