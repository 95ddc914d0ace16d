//! The lnswarm agent: the dispatcher session, task reconciliation, process
//! supervision, and the hosted Lightning node runtime (`lnswarm-node`) with its
//! regtest chain stand-in (`lnswarm-regtest`).

pub mod executor;
pub mod hosting;
pub mod layout;
pub mod node;
pub mod regtest;
pub mod run;
pub mod session;
pub mod worker;
