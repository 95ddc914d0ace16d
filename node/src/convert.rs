//! ldk-node's types as Node API messages.

use ldk_node::{
    payment::{PaymentDetails, PaymentDirection, PaymentKind, PaymentStatus},
    ChannelDetails,
};
use lnswarm_common::api;

/// Whether a payment is a Lightning payment (the Node API lists only those; on-chain
/// wallet activity shows in the balances).
pub fn is_lightning(p: &PaymentDetails) -> bool {
    !matches!(p.kind, PaymentKind::Onchain { .. })
}

pub fn payment(p: &PaymentDetails) -> api::Payment {
    let hash = match &p.kind {
        PaymentKind::Bolt11 { hash, .. } | PaymentKind::Bolt11Jit { hash, .. } => {
            Some(hash.to_string())
        }
        PaymentKind::Spontaneous { hash, .. } => Some(hash.to_string()),
        PaymentKind::Bolt12Offer { hash, .. } | PaymentKind::Bolt12Refund { hash, .. } => {
            hash.map(|h| h.to_string())
        }
        PaymentKind::Onchain { txid, .. } => Some(txid.to_string()),
    };
    api::Payment {
        payment_id: hex::encode(p.id.0),
        payment_hash: hash.unwrap_or_default(),
        amount_msat: p.amount_msat.unwrap_or(0),
        fee_msat: p.fee_paid_msat.unwrap_or(0),
        direction: match p.direction {
            PaymentDirection::Inbound => api::PaymentDirection::Inbound,
            PaymentDirection::Outbound => api::PaymentDirection::Outbound,
        } as i32,
        status: payment_status(p.status) as i32,
        latest_update_unix: p.latest_update_timestamp,
    }
}

pub fn payment_status(s: PaymentStatus) -> api::PaymentStatus {
    match s {
        PaymentStatus::Pending => api::PaymentStatus::Pending,
        PaymentStatus::Succeeded => api::PaymentStatus::Succeeded,
        PaymentStatus::Failed => api::PaymentStatus::Failed,
    }
}

pub fn channel(c: &ChannelDetails) -> api::Channel {
    api::Channel {
        channel_id: c.user_channel_id.0.to_string(),
        counterparty_node_id: c.counterparty_node_id.to_string(),
        funding_txo: c
            .funding_txo
            .map(|o| format!("{}:{}", o.txid, o.vout))
            .unwrap_or_default(),
        short_channel_id: c
            .short_channel_id
            .map(|scid| {
                format!(
                    "{}x{}x{}",
                    scid >> 40,
                    (scid >> 16) & 0xFF_FFFF,
                    scid & 0xFFFF
                )
            })
            .unwrap_or_default(),
        capacity_sats: c.channel_value_sats,
        outbound_capacity_msat: c.outbound_capacity_msat,
        inbound_capacity_msat: c.inbound_capacity_msat,
        confirmations: c.confirmations.unwrap_or(0),
        is_channel_ready: c.is_channel_ready,
        is_usable: c.is_usable,
        max_send_msat: c.next_outbound_htlc_limit_msat,
        max_receive_msat: max_receive_msat(c),
    }
}

/// About the most the peer can send over `c` now: its balance (less its reserve),
/// capped by LDK's largest inbound HTLC (what this node accepts in flight less both
/// reserves; `None` until the handshake is done, when only the balance counts).
/// An estimate: the peer's own limit also counts its commitment fee.
fn max_receive_msat(c: &ChannelDetails) -> u64 {
    c.inbound_htlc_maximum_msat
        .map_or(c.inbound_capacity_msat, |cap| {
            cap.min(c.inbound_capacity_msat)
        })
}

pub fn balances(b: &ldk_node::BalanceDetails) -> api::BalancesResponse {
    api::BalancesResponse {
        onchain_total_sats: b.total_onchain_balance_sats,
        onchain_spendable_sats: b.spendable_onchain_balance_sats,
        lightning_sats: b.total_lightning_balance_sats,
        pending_sweep_sats: b
            .pending_balances_from_channel_closures
            .iter()
            .map(pending_sweep_sats)
            .sum(),
    }
}

/// Only outputs whose sweep is not broadcast yet: once the sweep is broadcast, the
/// wallet counts its output in the on-chain balance (mempool included), and
/// counting it here too would show the same sats twice.
fn pending_sweep_sats(p: &ldk_node::PendingSweepBalance) -> u64 {
    match p {
        ldk_node::PendingSweepBalance::PendingBroadcast {
            amount_satoshis, ..
        } => *amount_satoshis,
        ldk_node::PendingSweepBalance::BroadcastAwaitingConfirmation { .. }
        | ldk_node::PendingSweepBalance::AwaitingThresholdConfirmations { .. } => 0,
    }
}
