//! Code shared by every lnswarm binary: the generated gRPC API, the cluster PKI
//! (root CA, CSRs, roles, join tokens), mTLS plumbing for tonic, and the one
//! authorization table with the tower layer that enforces it.

pub mod api;
pub mod authz;
pub mod cert_files;
pub mod cert_renewal;
pub mod codec;
pub mod credentials;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod grpc_server;
pub mod ids;
pub mod join;
pub mod json_file;
pub mod ldk_keys;
pub mod lease;
pub mod node_export;
pub mod node_keys;
pub mod pki;
pub mod priority;
pub mod private_files;
pub mod seal;
pub mod signals;
pub mod status_server;
pub mod telemetry;
pub mod tls;
pub mod webhook_signature;
