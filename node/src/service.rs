//! The Node API (`lnswarm.v1.Node`) on top of one ldk-node `Node`.
//!
//! Authorization happens before any handler runs (the authz layer admits only the
//! owner's `lightning-user` certificate for this node id). Here each handler checks
//! its input, answers bad input with INVALID_ARGUMENT / NOT_FOUND /
//! FAILED_PRECONDITION, runs ldk-node's blocking calls on the blocking pool, and
//! holds the money lock around every call that moves funds, so a node never runs
//! two of them at once.

use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    time::Duration,
};

use futures::Stream;
use ldk_node::{
    bitcoin::secp256k1::PublicKey, lightning::ln::channelmanager::PaymentId,
    payment::PaymentStatus, Node, NodeError,
};
use lnswarm_common::api::{self, node_event, node_server};
use tokio::sync::broadcast;
use tokio_stream::{wrappers::BroadcastStream, StreamExt};
use tonic::{Request, Response, Status};

use crate::{
    convert,
    errors::{blocking, status},
    inputs,
    pay_failure::{self, SendLimits},
};

/// How long Pay waits for the outcome before answering with a pending payment.
const PAY_TIMEOUT: Duration = Duration::from_secs(60);

/// The node once it has started.
pub struct Running {
    pub node: Arc<Node>,
    pub events: broadcast::Sender<api::NodeEvent>,
    /// Held by every call that moves money.
    pub money: tokio::sync::Mutex<()>,
    /// The node's replicated state, when it runs under a lease (for invoice notes).
    pub store: Option<Arc<crate::state::ReplicatedStore>>,
}

/// The service; answers UNAVAILABLE until the node has started.
#[derive(Clone)]
pub struct NodeApi {
    state: Arc<OnceLock<Running>>,
}

impl NodeApi {
    pub fn new(state: Arc<OnceLock<Running>>) -> Self {
        NodeApi { state }
    }

    fn running(&self) -> Result<&Running, Status> {
        self.state
            .get()
            .ok_or_else(|| Status::unavailable("the node is still starting"))
    }

    fn node(&self) -> Result<Arc<Node>, Status> {
        Ok(self.running()?.node.clone())
    }
}

/// Whether the node knows `peer`.
fn known_peer(node: &Node, peer: &PublicKey) -> Option<ldk_node::PeerDetails> {
    node.list_peers().into_iter().find(|p| &p.node_id == peer)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<api::NodeEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl node_server::Node for NodeApi {
    async fn get_info(
        &self,
        _: Request<api::GetInfoRequest>,
    ) -> Result<Response<api::GetInfoResponse>, Status> {
        let node = self.node()?;
        let info = blocking(move || {
            let status = node.status();
            let channels = node.list_channels();
            let peers = node.list_peers();
            api::GetInfoResponse {
                node_id: node.node_id().to_string(),
                network: node.config().network.to_string(),
                block_height: status.current_best_block.height,
                block_hash: status.current_best_block.block_hash.to_string(),
                num_peers: peers.iter().filter(|p| p.is_connected).count() as u32,
                num_channels: channels.len() as u32,
                num_usable_channels: channels.iter().filter(|c| c.is_usable).count() as u32,
                balances: Some(convert::balances(&node.list_balances())),
                listening_addresses: node
                    .listening_addresses()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
            }
        })
        .await?;
        Ok(Response::new(info))
    }

    async fn new_address(
        &self,
        _: Request<api::NewAddressRequest>,
    ) -> Result<Response<api::NewAddressResponse>, Status> {
        let node = self.node()?;
        let address = blocking(move || node.onchain_payment().new_address())
            .await?
            .map_err(|e| status("new address", e))?;
        Ok(Response::new(api::NewAddressResponse {
            address: address.to_string(),
        }))
    }

    async fn balances(
        &self,
        _: Request<api::BalancesRequest>,
    ) -> Result<Response<api::BalancesResponse>, Status> {
        let node = self.node()?;
        let b = blocking(move || node.list_balances()).await?;
        Ok(Response::new(convert::balances(&b)))
    }

    async fn connect_peer(
        &self,
        req: Request<api::ConnectPeerRequest>,
    ) -> Result<Response<api::ConnectPeerResponse>, Status> {
        let req = req.into_inner();
        let peer = inputs::node_id(&req.node_id)?;
        let address = inputs::address(&req.address)?;
        let node = self.node()?;
        if peer == node.node_id() {
            return Err(Status::invalid_argument("a node cannot connect to itself"));
        }
        // ldk-node answers Ok for a peer it is connected to without trying the
        // address; say so rather than "connected" to an address that may not work.
        let current = node
            .list_peers()
            .into_iter()
            .find(|p| p.node_id == peer && p.is_connected);
        if let Some(p) = current {
            return Ok(Response::new(api::ConnectPeerResponse {
                already_connected: true,
                connected_address: p.address.to_string(),
            }));
        }
        blocking(move || crate::peers::connect_at(&node, peer, address))
            .await?
            .map_err(|e| status("connect", e))?;
        Ok(Response::new(api::ConnectPeerResponse::default()))
    }

    async fn list_peers(
        &self,
        _: Request<api::ListPeersRequest>,
    ) -> Result<Response<api::ListPeersResponse>, Status> {
        let node = self.node()?;
        let peers = blocking(move || node.list_peers()).await?;
        Ok(Response::new(api::ListPeersResponse {
            peers: peers
                .iter()
                .map(|p| api::Peer {
                    node_id: p.node_id.to_string(),
                    address: p.address.to_string(),
                    connected: p.is_connected,
                })
                .collect(),
        }))
    }

    async fn disconnect_peer(
        &self,
        req: Request<api::DisconnectPeerRequest>,
    ) -> Result<Response<api::DisconnectPeerResponse>, Status> {
        let peer = inputs::node_id(&req.into_inner().node_id)?;
        let node = self.node()?;
        blocking(move || {
            if known_peer(&node, &peer).is_none() {
                return Err(Status::not_found(format!("unknown peer {peer}")));
            }
            node.disconnect(peer).map_err(|e| status("disconnect", e))
        })
        .await??;
        Ok(Response::new(api::DisconnectPeerResponse {}))
    }

    async fn open_channel(
        &self,
        req: Request<api::OpenChannelRequest>,
    ) -> Result<Response<api::OpenChannelResponse>, Status> {
        let req = req.into_inner();
        let peer = inputs::node_id(&req.node_id)?;
        inputs::channel_amounts(req.amount_sats, req.push_msat)?;
        let address = inputs::optional_address(&req.address)?;
        let running = self.running()?;
        let node = running.node.clone();
        if peer == node.node_id() {
            return Err(Status::invalid_argument(
                "a node cannot open a channel to itself",
            ));
        }
        let _money = running.money.lock().await;
        let id = blocking(move || {
            let address = match address {
                Some(a) => a,
                None => known_peer(&node, &peer)
                    .ok_or_else(|| {
                        Status::not_found(format!(
                            "unknown peer {peer}: connect to it first or give its address"
                        ))
                    })?
                    .address,
            };
            let spendable = node.list_balances().spendable_onchain_balance_sats;
            if req.amount_sats > spendable {
                return Err(Status::failed_precondition(format!(
                    "insufficient funds: the channel needs {} sats, the wallet can spend {spendable}",
                    req.amount_sats
                )));
            }
            let push = (req.push_msat > 0).then_some(req.push_msat);
            let result = if req.announce {
                node.open_announced_channel(peer, address, req.amount_sats, push, None)
            } else {
                node.open_channel(peer, address, req.amount_sats, push, None)
            };
            result.map_err(|e| status("open channel", e))
        })
        .await??;
        tracing::info!(channel = id.0, %peer, sats = req.amount_sats, "opening channel");
        Ok(Response::new(api::OpenChannelResponse {
            channel_id: id.0.to_string(),
        }))
    }

    async fn list_channels(
        &self,
        _: Request<api::ListChannelsRequest>,
    ) -> Result<Response<api::ListChannelsResponse>, Status> {
        let node = self.node()?;
        let channels = blocking(move || node.list_channels()).await?;
        Ok(Response::new(api::ListChannelsResponse {
            channels: channels.iter().map(convert::channel).collect(),
        }))
    }

    async fn close_channel(
        &self,
        req: Request<api::CloseChannelRequest>,
    ) -> Result<Response<api::CloseChannelResponse>, Status> {
        let req = req.into_inner();
        let id = inputs::channel_id(&req.channel_id)?;
        let counterparty = inputs::optional_node_id(&req.counterparty_node_id)?;
        let running = self.running()?;
        let node = running.node.clone();
        let _money = running.money.lock().await;
        blocking(move || {
            let channel = node
                .list_channels()
                .into_iter()
                .find(|c| {
                    c.user_channel_id == id
                        && counterparty.is_none_or(|p| p == c.counterparty_node_id)
                })
                .ok_or_else(|| Status::not_found(format!("unknown channel {}", id.0)))?;
            if req.force {
                node.force_close_channel(&id, channel.counterparty_node_id, None)
            } else {
                node.close_channel(&id, channel.counterparty_node_id)
            }
            .map_err(|e| status("close channel", e))
        })
        .await??;
        tracing::info!(channel = id.0, force = req.force, "closing channel");
        Ok(Response::new(api::CloseChannelResponse {}))
    }

    async fn create_invoice(
        &self,
        req: Request<api::CreateInvoiceRequest>,
    ) -> Result<Response<api::CreateInvoiceResponse>, Status> {
        let req = req.into_inner();
        let description_text = req.description.clone();
        let (description, expiry) =
            inputs::invoice_request(req.amount_msat, req.description, req.expiry_secs)?;
        let running = self.running()?;
        let (node, store) = (running.node.clone(), running.store.clone());
        let invoice = blocking(move || {
            let bolt11 = node.bolt11_payment();
            if req.amount_msat == 0 {
                bolt11.receive_variable_amount(&description, expiry)
            } else {
                bolt11.receive(req.amount_msat, &description, expiry)
            }
        })
        .await?
        .map_err(|e| status("create invoice", e))?;
        if let Some(store) = store {
            // Before the invoice is handed out, so its payment's webhook names it.
            crate::webhook_events::note_invoice(
                store,
                invoice.payment_hash().to_string(),
                invoice.to_string(),
                description_text,
            )
            .await
            .map_err(|e| Status::unavailable(format!("could not save the invoice: {e}")))?;
        }
        Ok(Response::new(api::CreateInvoiceResponse {
            bolt11: invoice.to_string(),
            payment_hash: invoice.payment_hash().to_string(),
        }))
    }

    async fn pay(
        &self,
        req: Request<api::PayRequest>,
    ) -> Result<Response<api::PayResponse>, Status> {
        let req = req.into_inner();
        let running = self.running()?;
        let node = running.node.clone();
        let (invoice, amount_msat) = inputs::payment(
            &req.bolt11,
            req.amount_msat,
            node.config().network,
            &node.node_id(),
        )?;
        let _money = running.money.lock().await;
        let mut events = running.events.subscribe();
        let sender = node.clone();
        let sent = blocking(move || {
            let bolt11 = sender.bolt11_payment();
            if req.amount_msat == 0 {
                bolt11.send(&invoice, None)
            } else {
                bolt11.send_using_amount(&invoice, req.amount_msat, None)
            }
        })
        .await?;
        let id = match sent {
            Ok(id) => id,
            // ldk-node's word for "LDK found no route" (the expiry was checked above).
            Err(NodeError::PaymentSendingFailed) => {
                let limits = send_limits(&node).await?;
                return Err(Status::failed_precondition(format!(
                    "payment failed: {}",
                    pay_failure::no_route(amount_msat, &limits)
                )));
            }
            Err(e) => return Err(status("pay", e)),
        };
        tracing::info!(payment = %hex::encode(id.0), "payment sent, waiting for the outcome");
        let outcome = wait_for_outcome(&node, id, &mut events).await;
        match outcome {
            Outcome::Failed(reason) => {
                let limits = send_limits(&node).await?;
                Err(Status::failed_precondition(format!(
                    "payment failed: {}",
                    pay_failure::failed(&reason, amount_msat, &limits)
                )))
            }
            Outcome::Done => {
                let payment = node.payment(&id).map(|p| convert::payment(&p));
                Ok(Response::new(api::PayResponse { payment }))
            }
        }
    }

    async fn list_payments(
        &self,
        _: Request<api::ListPaymentsRequest>,
    ) -> Result<Response<api::ListPaymentsResponse>, Status> {
        let node = self.node()?;
        let mut payments =
            blocking(move || node.list_payments_with_filter(|p| convert::is_lightning(p))).await?;
        payments.sort_by_key(|p| p.latest_update_timestamp);
        Ok(Response::new(api::ListPaymentsResponse {
            payments: payments.iter().map(convert::payment).collect(),
        }))
    }

    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        _: Request<api::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let rx = self.running()?.events.subscribe();
        let stream = BroadcastStream::new(rx).map(|item| {
            item.map_err(|e| Status::data_loss(format!("this subscriber fell behind: {e}")))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// What this node's channels can send now.
async fn send_limits(node: &Arc<Node>) -> Result<SendLimits, Status> {
    let node = node.clone();
    blocking(move || SendLimits::of(&node.list_channels())).await
}

enum Outcome {
    /// Succeeded, or still pending when the wait ran out.
    Done,
    Failed(String),
}

async fn wait_for_outcome(
    node: &Node,
    id: PaymentId,
    events: &mut broadcast::Receiver<api::NodeEvent>,
) -> Outcome {
    let deadline = tokio::time::Instant::now() + PAY_TIMEOUT;
    let same = |p: &Option<api::Payment>| {
        p.as_ref()
            .is_some_and(|p| p.payment_id == hex::encode(id.0))
    };
    loop {
        match node.payment(&id).map(|p| p.status) {
            Some(PaymentStatus::Succeeded) => return Outcome::Done,
            Some(PaymentStatus::Failed) => {
                return Outcome::Failed("no route or the payee refused it".into())
            }
            _ => {}
        }
        let tick = tokio::time::sleep(Duration::from_millis(100));
        tokio::select! {
            ev = events.recv() => {
                if let Ok(api::NodeEvent { event: Some(node_event::Event::PaymentFailed(e)) }) = ev {
                    if same(&e.payment) {
                        let reason = if e.reason.is_empty() { "unknown reason".to_string() } else { e.reason };
                        return Outcome::Failed(reason);
                    }
                }
            }
            _ = tick => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Outcome::Done;
        }
    }
}
