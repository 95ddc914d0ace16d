//! The lnswarm manager: the replicated store and the services a manager quorum
//! offers: CA, Control, Dispatcher, Scheduler and the raft transport.

pub mod ca;
pub mod cluster;
pub mod control_api;
pub mod data_key;
pub mod dispatcher;
pub mod grpc_status;
pub mod init;
pub mod join;
pub mod layout;
pub mod locked;
pub mod manager;
pub mod metrics;
pub mod node_state;
pub mod orchestrator;
pub mod placement;
pub mod run;
pub mod scheduler_api;
pub mod server;
pub mod store;
pub mod webhooks;
