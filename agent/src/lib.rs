//! The lnswarm agent: the dispatcher session, task reconciliation, process
//! supervision, and the runtime that starts hosted Lightning nodes
//! (`lnswarm-node`, a crate of its own).

pub mod executor;
pub mod hosting;
pub mod layout;
pub mod lease;
pub mod metrics;
pub mod run;
pub mod session;
pub mod worker;
