//! `lnswarm.v1.Scheduler`: how node owners register a node, recover access to it,
//! and get it running (Greenlight's Scheduler semantics).

mod challenge;
mod device_renewal;
mod export;
mod pairing;
mod registration;
mod schedule;
mod service;
mod signer;

pub use challenge::{sweep_challenges, sweep_expired_challenges};
pub use service::SchedulerService;
