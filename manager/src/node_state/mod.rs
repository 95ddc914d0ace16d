//! Hosted nodes' own state (ldk-node's key-value store) in the replicated store, so
//! that a node can start on any agent, and the lease epoch that fences it.
//!
//! - [`fence`]: the domain: which writes a node may make under which epoch, as one
//!   store transaction with a check on the node's lease.
//! - [`idle`]: stopping a node that reports it has been idle long enough.
//! - [`peers`]: where a node's hosted channel peers listen now.
//! - [`service`]: the NodeState gRPC handlers; the only place its errors become
//!   gRPC codes.

pub mod fence;
pub mod idle;
pub mod peers;
pub mod service;

pub use service::{NodeStateService, MAX_NODE_STATE_MESSAGE_BYTES};
