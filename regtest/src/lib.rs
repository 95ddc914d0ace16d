//! `lnswarm-regtest`: a regtest chain that speaks the subset of bitcoind's JSON-RPC
//! that ldk-node's bitcoind chain source calls (plus `generatetoaddress`,
//! `getnewaddress`, `getbalance` and `sendtoaddress` so tests can mine and fund
//! nodes).
//!
//! It is the stand-in for bitcoind on machines where bitcoind cannot be installed;
//! bitcoind RPC stays the production chain source. Its blocks are real (real headers
//! with proof of work at regtest difficulty, merkle roots, BIP34 coinbases with a
//! witness commitment), a transaction may only spend existing unspent outputs and its
//! inputs must cover its outputs. What it does NOT check: input scripts and
//! signatures, relative timelocks (BIP68/112), weight and sigop limits, standardness.
//! It enforces coinbase maturity (100 blocks) and absolute locktimes.

pub mod chain;
pub mod http;
pub mod rpc;
pub mod store;
pub mod wallet;

pub use chain::{Chain, ChainError};
pub use wallet::Wallet;
