//! The Dispatcher: the leader-only service agents hold a Session with, heartbeat to,
//! report task status to, and receive Assignments from (SwarmKit's dispatcher
//! protocol; see proto/dispatcher.proto).
//!
//! - [`sessions`]: sessions and heartbeat timers, in the leader's memory only.
//! - [`writer`]: task status reports and agent state changes, coalesced into one
//!   proposal per window.
//! - [`assignments`]: COMPLETE and INCREMENTAL messages from the store's change log.
//! - [`leader`]: starts and stops the dispatcher as leadership comes and goes, and
//!   runs the heartbeat expiry timer.
//! - [`shared`]: what the handlers and the leader side share.
//! - [`service`]: the gRPC handlers; [`session_stream`] and [`assignments_stream`]
//!   feed the two streams an agent holds, through what [`streams`] defines.

pub mod assignments;
#[cfg(test)]
mod assignments_model;
mod assignments_stream;
pub mod config;
mod leader;
mod service;
mod session_stream;
pub mod sessions;
mod shared;
mod streams;
mod writer;

pub use config::{DispatcherConfig, HeartbeatTiming};
pub use service::Dispatcher;
