//! What an owner sends the Node API, parsed and checked apart from the running
//! node: node ids, peer addresses, channel ids, BOLT11 invoices and amounts. Kept
//! here so every check can be fuzzed without a node (`inputs_fuzz.rs`); the
//! handlers in `service.rs` call these first and map [`InputError`] to a status
//! (`errors.rs`).

use std::str::FromStr;

use ldk_node::{
    bitcoin::{secp256k1::PublicKey, Network},
    lightning::ln::msgs::SocketAddress,
    lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Description},
    UserChannelId,
};

/// 21 million bitcoin in millisatoshis: no amount can be larger.
pub const MAX_MSAT: u64 = 21_000_000 * 100_000_000 * 1000;
pub const MAX_SATS: u64 = MAX_MSAT / 1000;
const DEFAULT_INVOICE_EXPIRY_SECS: u32 = 3600;
/// How much of a refused input an error quotes, in bytes once escaped: a status
/// message travels in a header, and a whole 4 MiB field there would be refused by
/// the client.
const QUOTED_BYTES: usize = 200;

/// Why an input was refused. Each says which field and what it should be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("node_id {0} is not a hex-encoded public key")]
    NodeId(Quoted),
    #[error("address {0} is not host:port")]
    Address(Quoted),
    #[error("channel_id {0} is not a channel id from ListChannels")]
    ChannelId(Quoted),
    #[error("invalid BOLT11 invoice: {0}")]
    Invoice(String),
    #[error("the invoice is for {invoice}, this node runs on {node}")]
    Network { invoice: Network, node: Network },
    #[error("the invoice has expired")]
    Expired,
    #[error("this invoice was issued by this node; a node cannot pay itself")]
    OwnInvoice,
    #[error("the invoice names its amount; leave amount_msat zero")]
    AmountGiven,
    #[error("the invoice has no amount; amount_msat must be greater than zero")]
    AmountMissing,
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("{0} is larger than all bitcoin that will ever exist")]
    AboveSupply(&'static str),
    #[error("push_msat is larger than the channel")]
    PushAboveChannel,
    #[error("invalid description: {0}")]
    Description(String),
}

/// A refused input as an error quotes it: escaped as `{:?}` would, cut at
/// [`QUOTED_BYTES`].
#[derive(Debug, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    fn of(s: &str) -> Self {
        let mut quoted = String::from("\"");
        let mut escaped = s.escape_debug();
        for c in escaped.by_ref() {
            if quoted.len() + c.len_utf8() > QUOTED_BYTES {
                quoted.push_str("\"…");
                return Quoted(quoted);
            }
            quoted.push(c);
        }
        quoted.push('"');
        Quoted(quoted)
    }
}

impl std::fmt::Display for Quoted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn node_id(s: &str) -> Result<PublicKey, InputError> {
    PublicKey::from_str(s.trim()).map_err(|_| InputError::NodeId(Quoted::of(s)))
}

/// A peer's address; `None` when left empty.
pub fn optional_address(s: &str) -> Result<Option<SocketAddress>, InputError> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    SocketAddress::from_str(s.trim())
        .map(Some)
        .map_err(|_| InputError::Address(Quoted::of(s)))
}

pub fn address(s: &str) -> Result<SocketAddress, InputError> {
    optional_address(s)?.ok_or_else(|| InputError::Address(Quoted::of(s)))
}

/// A node id that may be left empty.
pub fn optional_node_id(s: &str) -> Result<Option<PublicKey>, InputError> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    node_id(s).map(Some)
}

pub fn channel_id(s: &str) -> Result<UserChannelId, InputError> {
    s.trim()
        .parse::<u128>()
        .map(UserChannelId)
        .map_err(|_| InputError::ChannelId(Quoted::of(s)))
}

/// OpenChannel's amounts: a channel of `amount_sats` pushing `push_msat` to the peer.
pub fn channel_amounts(amount_sats: u64, push_msat: u64) -> Result<(), InputError> {
    if amount_sats == 0 {
        return Err(InputError::Zero("amount_sats"));
    }
    if amount_sats > MAX_SATS {
        return Err(InputError::AboveSupply("amount_sats"));
    }
    if push_msat > amount_sats.saturating_mul(1000) {
        return Err(InputError::PushAboveChannel);
    }
    Ok(())
}

/// CreateInvoice's fields: the description and expiry to use (zero: an hour).
pub fn invoice_request(
    amount_msat: u64,
    description: String,
    expiry_secs: u32,
) -> Result<(Bolt11InvoiceDescription, u32), InputError> {
    if amount_msat > MAX_MSAT {
        return Err(InputError::AboveSupply("amount_msat"));
    }
    let description =
        Description::new(description).map_err(|e| InputError::Description(e.to_string()))?;
    let expiry = if expiry_secs == 0 {
        DEFAULT_INVOICE_EXPIRY_SECS
    } else {
        expiry_secs
    };
    Ok((Bolt11InvoiceDescription::Direct(description), expiry))
}

/// What Pay is asked: the invoice `bolt11` and `amount_msat` (zero unless the
/// invoice names none), for a node `own` on `network`. Gives the invoice and the
/// amount to pay.
pub fn payment(
    bolt11: &str,
    amount_msat: u64,
    network: Network,
    own: &PublicKey,
) -> Result<(Bolt11Invoice, u64), InputError> {
    let invoice =
        Bolt11Invoice::from_str(bolt11.trim()).map_err(|e| InputError::Invoice(e.to_string()))?;
    if invoice.network() != network {
        return Err(InputError::Network {
            invoice: invoice.network(),
            node: network,
        });
    }
    let amount = match (invoice.amount_milli_satoshis(), amount_msat) {
        (Some(_), given) if given != 0 => return Err(InputError::AmountGiven),
        (None, 0) => return Err(InputError::AmountMissing),
        (Some(named), _) => named,
        (None, given) => given,
    };
    if amount > MAX_MSAT {
        return Err(InputError::AboveSupply("amount_msat"));
    }
    if invoice.is_expired() {
        return Err(InputError::Expired);
    }
    if &invoice.recover_payee_pub_key() == own {
        return Err(InputError::OwnInvoice);
    }
    Ok((invoice, amount))
}

#[cfg(test)]
#[path = "inputs_fuzz.rs"]
mod fuzz;
