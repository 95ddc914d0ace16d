//! The node's side of its owner's webhooks. An invoice this node made is noted in
//! its replicated state (its bolt11 and description, which ldk-node does not keep),
//! and when it is paid the node records an `invoice_payment` event with the managers
//! before it tells ldk-node the payment event is handled: a crash in between makes
//! ldk-node replay the event, and the replay has the same event id.

use std::sync::Arc;

use ldk_node::{
    lightning::{
        ln::channelmanager::PaymentId, types::payment::PaymentHash, util::persist::KVStoreSync,
    },
    payment::PaymentKind,
    Node,
};
use lnswarm_common::{api::NodeEventRecord, ids::now_unix_ms};
use serde::{Deserialize, Serialize};

use crate::{errors::blocking, state::ReplicatedStore};

/// Where invoices' notes live in the node's state (a namespace of its own, apart
/// from ldk-node's).
const INVOICES: &str = "lnswarm_invoices";

/// What the webhook event says about the invoice, beyond ldk-node's payment record.
#[derive(Serialize, Deserialize, Default)]
struct InvoiceNote {
    bolt11: String,
    description: String,
}

/// Notes a new invoice, committed on a quorum before the call returns.
pub async fn note_invoice(
    store: Arc<ReplicatedStore>,
    payment_hash: String,
    bolt11: String,
    description: String,
) -> Result<(), String> {
    let note = serde_json::to_vec(&InvoiceNote {
        bolt11,
        description,
    })
    .map_err(|e| e.to_string())?;
    blocking(move || KVStoreSync::write(&*store, INVOICES, "", &payment_hash, note))
        .await
        .map_err(|e| e.message().to_string())?
        .map_err(|e| e.to_string())
}

/// The event for a received payment, if it paid a BOLT 11 invoice.
fn invoice_payment(
    node: &Node,
    store: &ReplicatedStore,
    payment_id: Option<PaymentId>,
    payment_hash: PaymentHash,
    amount_msat: u64,
) -> Option<NodeEventRecord> {
    let payment = node.payment(&payment_id?)?;
    let preimage = match payment.kind {
        PaymentKind::Bolt11 { preimage, .. } | PaymentKind::Bolt11Jit { preimage, .. } => preimage,
        _ => return None,
    };
    let hash = payment_hash.to_string();
    let note = KVStoreSync::read(store, INVOICES, "", &hash)
        .ok()
        .and_then(|b| serde_json::from_slice::<InvoiceNote>(&b).ok())
        .unwrap_or_default();
    let fields = serde_json::json!({
        "payment_hash": hash,
        "preimage": preimage.map(|p| p.to_string()).unwrap_or_default(),
        "amount_msat": amount_msat,
        "bolt11": note.bolt11,
        "description": note.description,
    });
    Some(NodeEventRecord {
        // One payment per invoice hash: the id is the same however often the
        // event is seen.
        event_id: format!("invoice_payment-{hash}"),
        event_type: "invoice_payment".into(),
        timestamp_unix_ms: now_unix_ms(),
        fields: serde_json::to_vec(&fields).unwrap_or_default(),
    })
}

/// Records the `invoice_payment` event of a received payment (returns once it is
/// durable, or the managers refused it) and drops the invoice's note.
pub async fn payment_received(
    node: &Arc<Node>,
    store: &Arc<ReplicatedStore>,
    payment_id: Option<PaymentId>,
    payment_hash: PaymentHash,
    amount_msat: u64,
) {
    let Some(event) = invoice_payment(node, store, payment_id, payment_hash, amount_msat) else {
        return;
    };
    match store.record_events(vec![event]).await {
        Ok(deliveries) => tracing::debug!(deliveries, "invoice payment recorded for webhooks"),
        Err(e) => {
            tracing::warn!(error = %e, "the managers refused this payment's webhook event");
            return;
        }
    }
    let (store, hash) = (store.clone(), payment_hash.to_string());
    let removed = blocking(move || KVStoreSync::remove(&*store, INVOICES, "", &hash, false))
        .await
        .map_err(|e| e.message().to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = removed {
        tracing::warn!(error = %e, "could not drop a paid invoice's note");
    }
}
