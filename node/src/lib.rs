//! `lnswarm-node`: one hosted Lightning node (ldk-node inside) and its Node API.
//!
//! - [`config`]: flags and config file (everything but the seed).
//! - [`seed`]: the seed from stdin and the node id it gives.
//! - [`ldk`]: building and starting ldk-node.
//! - [`service`]: the Node API handlers; [`inputs`]: the checks of what owners send; [`convert`]: ldk types as API messages;
//!   [`errors`]: ldk errors as gRPC codes; [`events`]: the event stream;
//!   [`pay_failure`]: why a payment failed, in words.
//! - [`import`]: `lnswarm-node import`, an exported node made to run by itself.
//! - [`peers`]: reaching channel peers where they are now.
//! - [`renewal`]: the node's certificate, renewed under its lease.
//! - [`state`]: the node's state in the managers' replicated store, fenced by
//!   its lease.
//! - [`server`]: mTLS, authorization, health and shutdown around it all.

pub mod config;
pub mod convert;
pub mod errors;
pub mod events;
pub mod idle;
pub mod import;
pub mod inputs;
pub mod ldk;
pub mod pay_failure;
pub mod peers;
pub mod renewal;
pub mod seed;
pub mod server;
pub mod service;
pub mod state;
pub mod webhook_events;

pub use config::{NodeArgs, NodeConfig};
pub use server::run;
