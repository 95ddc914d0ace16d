//! ldk-node's event queue, drained by one task and fanned out to every
//! SubscribeEvents stream (the notification model of perun-node: typed events on a
//! server stream, from the moment of subscribing).
//!
//! Events are marked handled whether or not anyone listens, so the queue never
//! stalls the node; a subscriber that falls too far behind is told how many events
//! it missed. A received payment is first recorded for the owner's webhooks
//! ([`crate::webhook_events`]) when the node's state is replicated.

use std::sync::Arc;

use ldk_node::{Event, Node};
use lnswarm_common::api::{self, node_event};
use tokio::sync::broadcast;

use crate::{convert, pay_failure, state::ReplicatedStore, webhook_events};

/// How many events a slow subscriber may lag behind before it misses some.
pub const BUFFER: usize = 1024;

/// Drains the node's events until the node stops.
pub async fn pump(
    node: Arc<Node>,
    tx: broadcast::Sender<api::NodeEvent>,
    store: Option<Arc<ReplicatedStore>>,
) {
    loop {
        let event = node.next_event_async().await;
        tracing::info!(event = event_name(&event), "node event");
        if let (
            Some(store),
            Event::PaymentReceived {
                payment_id,
                payment_hash,
                amount_msat,
                ..
            },
        ) = (&store, &event)
        {
            webhook_events::payment_received(
                &node,
                store,
                *payment_id,
                *payment_hash,
                *amount_msat,
            )
            .await;
        }
        if let Some(e) = to_api(&node, &event) {
            let _ = tx.send(e);
        }
        if let Err(e) = node.event_handled() {
            tracing::warn!(error = %e, "could not mark event handled");
        }
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::PaymentSuccessful { .. } => "payment_successful",
        Event::PaymentFailed { .. } => "payment_failed",
        Event::PaymentReceived { .. } => "payment_received",
        Event::PaymentClaimable { .. } => "payment_claimable",
        Event::PaymentForwarded { .. } => "payment_forwarded",
        Event::ChannelPending { .. } => "channel_pending",
        Event::ChannelReady { .. } => "channel_ready",
        Event::ChannelClosed { .. } => "channel_closed",
        _ => "other",
    }
}

fn payment_event(
    node: &Node,
    id: Option<ldk_node::lightning::ln::channelmanager::PaymentId>,
    reason: String,
) -> api::PaymentEvent {
    let payment = id
        .and_then(|id| node.payment(&id))
        .map(|p| convert::payment(&p));
    api::PaymentEvent { payment, reason }
}

fn to_api(node: &Node, event: &Event) -> Option<api::NodeEvent> {
    let event = match event {
        Event::PaymentSuccessful { payment_id, .. } => {
            node_event::Event::PaymentSent(payment_event(node, *payment_id, String::new()))
        }
        Event::PaymentFailed {
            payment_id, reason, ..
        } => node_event::Event::PaymentFailed(payment_event(
            node,
            *payment_id,
            reason
                .map(|r| pay_failure::reason(r).to_string())
                .unwrap_or_default(),
        )),
        Event::PaymentReceived {
            payment_id,
            payment_hash,
            amount_msat,
            ..
        } => {
            let mut e = payment_event(node, *payment_id, String::new());
            if e.payment.is_none() {
                e.payment = Some(api::Payment {
                    payment_hash: payment_hash.to_string(),
                    amount_msat: *amount_msat,
                    direction: api::PaymentDirection::Inbound as i32,
                    status: api::PaymentStatus::Succeeded as i32,
                    ..Default::default()
                });
            }
            node_event::Event::PaymentReceived(e)
        }
        Event::ChannelPending {
            user_channel_id,
            counterparty_node_id,
            ..
        } => node_event::Event::Channel(api::ChannelEvent {
            kind: api::ChannelEventKind::Pending as i32,
            channel_id: user_channel_id.0.to_string(),
            counterparty_node_id: counterparty_node_id.to_string(),
            reason: String::new(),
        }),
        Event::ChannelReady {
            user_channel_id,
            counterparty_node_id,
            ..
        } => node_event::Event::Channel(api::ChannelEvent {
            kind: api::ChannelEventKind::Ready as i32,
            channel_id: user_channel_id.0.to_string(),
            counterparty_node_id: counterparty_node_id
                .map(|n| n.to_string())
                .unwrap_or_default(),
            reason: String::new(),
        }),
        Event::ChannelClosed {
            user_channel_id,
            counterparty_node_id,
            reason,
            ..
        } => node_event::Event::Channel(api::ChannelEvent {
            kind: api::ChannelEventKind::Closed as i32,
            channel_id: user_channel_id.0.to_string(),
            counterparty_node_id: counterparty_node_id
                .map(|n| n.to_string())
                .unwrap_or_default(),
            reason: reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        }),
        _ => return None,
    };
    Some(api::NodeEvent { event: Some(event) })
}
