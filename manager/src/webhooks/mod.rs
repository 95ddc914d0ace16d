//! Outgoing webhooks, as Greenlight's Scheduler offers them: an owner registers a
//! URI, and the cluster POSTs their node's events to it, signed with a secret only
//! the owner was shown.
//!
//! - [`uri`]: which URIs a webhook may use;
//! - [`registry`]: adding, listing, deleting webhooks and rotating their secrets;
//! - [`events`]: a node's events recorded, fenced, as pending deliveries;
//! - [`deliver`]: the leader's loop that sends them, with retries.

pub mod deliver;
pub mod events;
pub mod registry;
pub mod uri;

#[cfg(test)]
mod tests;
