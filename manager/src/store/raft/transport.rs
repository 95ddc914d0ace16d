//! Sending raft messages to other managers: one queue and one task per peer, so a
//! slow or dead peer never holds up the others or the Ready loop. Messages that
//! piled up while the previous batch was in flight go out together in one
//! ProcessRaftMessage call; snapshots are streamed in chunks. Failures are reported
//! to raft (unreachable, snapshot failed) so it backs off and retries.
//!
//! Peers are dialed with this manager's certificate and must present a
//! `swarm-manager` certificate of this cluster.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use lnswarm_common::{
    api::{raft_client::RaftClient, Manager, ProcessRaftMessageRequest, RaftMember},
    pki::Role,
    tls::{self, ClientTls, ServerIdentity},
};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::Event;
use crate::store::{keys, StateMachine};

/// Largest raft RPC we send or accept.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
const BATCH_BYTES: usize = 4 * 1024 * 1024;
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
const QUEUE: usize = 4096;
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    tls: ClientTls,
    sm: StateMachine,
    /// raft id → (manager id, address), from the join answer.
    seeds: Mutex<HashMap<u64, (String, String)>>,
    peers: Mutex<HashMap<u64, Peer>>,
    events: mpsc::Sender<Event>,
}

#[derive(Clone)]
struct Peer {
    addr: String,
    client: RaftClient<Channel>,
    queue: mpsc::Sender<Message>,
}

impl Transport {
    pub fn new(
        _my_id: u64,
        tls: ClientTls,
        sm: StateMachine,
        seeds: Vec<RaftMember>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Transport {
            inner: Arc::new(Inner {
                tls,
                sm,
                seeds: Mutex::new(
                    seeds
                        .into_iter()
                        .map(|m| (m.raft_id, (m.manager_id, m.addr)))
                        .collect(),
                ),
                peers: Mutex::new(HashMap::new()),
                events,
            }),
        }
    }

    /// Where raft id `id` listens: the managers/<id> records, else the join seeds.
    pub fn addr_of(&self, id: u64) -> Option<String> {
        self.member(id).map(|(_, addr)| addr)
    }

    /// The manager id (certificate CN) and address of raft id `id`.
    fn member(&self, id: u64) -> Option<(String, String)> {
        let from_store = self
            .inner
            .sm
            .scan(keys::MANAGERS)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|(_, v)| v.decode::<Manager>().ok())
            .find(|m| m.raft_id == id)
            .map(|m| (m.id, m.addr));
        from_store.or_else(|| self.inner.seeds.lock().expect("seeds").get(&id).cloned())
    }

    fn peer(&self, id: u64) -> Option<Peer> {
        if let Some(p) = self.inner.peers.lock().expect("peers").get(&id) {
            return Some(p.clone());
        }
        let (manager_id, addr) = self.member(id)?;
        // The peer must be the manager this raft id belongs to, not merely some
        // manager (or whoever answers at the address now).
        let expected = if manager_id.is_empty() {
            ServerIdentity::from(Role::Manager)
        } else {
            ServerIdentity::exact(Role::Manager, manager_id)
        };
        let channel = match tls::connect_lazy(&addr, &self.inner.tls, expected) {
            Ok(c) => c,
            Err(e) => {
                warn!(peer = %format!("{id:x}"), %addr, error = %e, "cannot dial peer");
                return None;
            }
        };
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let (queue, rx) = mpsc::channel(QUEUE);
        let peer = Peer {
            addr,
            client: client.clone(),
            queue,
        };
        let mut peers = self.inner.peers.lock().expect("peers");
        if let Some(p) = peers.get(&id) {
            return Some(p.clone());
        }
        peers.insert(id, peer.clone());
        tokio::spawn(run_peer(id, client, rx, self.inner.events.clone()));
        debug!(peer = %format!("{id:x}"), addr = %peer.addr, "dialing peer");
        Some(peer)
    }

    /// A client for calls to raft id `id` (forwarding, status).
    pub fn client(&self, id: u64) -> Option<RaftClient<Channel>> {
        self.peer(id).map(|p| p.client)
    }

    /// Queues messages for their peers; never blocks the Ready loop.
    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let delivered = self
                .peer(to)
                .map(|p| p.queue.try_send(m).is_ok())
                .unwrap_or(false);
            if !delivered {
                let _ = self.inner.events.try_send(Event::Unreachable(to));
            }
        }
    }
}

async fn run_peer(
    id: u64,
    mut client: RaftClient<Channel>,
    mut rx: mpsc::Receiver<Message>,
    events: mpsc::Sender<Event>,
) {
    let mut buf = Vec::with_capacity(512);
    let mut warned = None;
    while rx.recv_many(&mut buf, 512).await > 0 {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for m in buf.drain(..) {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                send_batch(
                    id,
                    &mut client,
                    std::mem::take(&mut batch),
                    &events,
                    &mut warned,
                )
                .await;
                bytes = 0;
                let ok = send_snapshot(&mut client, m).await;
                let _ = events.send(Event::SnapshotDone(id, ok)).await;
                continue;
            }
            match m.write_to_bytes() {
                Ok(b) => {
                    bytes += b.len();
                    batch.push(b);
                }
                Err(e) => warn!(error = %e, "cannot encode a raft message"),
            }
            if bytes >= BATCH_BYTES {
                send_batch(
                    id,
                    &mut client,
                    std::mem::take(&mut batch),
                    &events,
                    &mut warned,
                )
                .await;
                bytes = 0;
            }
        }
        send_batch(id, &mut client, batch, &events, &mut warned).await;
    }
}

async fn send_batch(
    id: u64,
    client: &mut RaftClient<Channel>,
    messages: Vec<Vec<u8>>,
    events: &mpsc::Sender<Event>,
    warned: &mut Option<std::time::Instant>,
) {
    if messages.is_empty() {
        return;
    }
    let mut req = tonic::Request::new(ProcessRaftMessageRequest { messages });
    req.set_timeout(RPC_TIMEOUT);
    if let Err(e) = client.process_raft_message(req).await {
        match refused_certificate(&e) {
            // Someone else answers at the peer's address: worth an operator's eye,
            // once a minute.
            Some(why) if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) => {
                warn!(peer = %format!("{id:x}"), reason = %why, "refused the server at a peer's address");
                *warned = Some(std::time::Instant::now());
            }
            _ => debug!(peer = %format!("{id:x}"), error = %e.message(), "peer unreachable"),
        }
        let _ = events.try_send(Event::Unreachable(id));
    }
}

/// The reason, when a call failed because the server's certificate was refused.
fn refused_certificate(e: &tonic::Status) -> Option<String> {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(err) = source {
        let text = err.to_string();
        if text.contains("the server is") || text.contains("certificate") {
            return Some(text);
        }
        source = err.source();
    }
    None
}

/// Streams a snapshot: the first chunk carries the message (data emptied), the
/// data follows in pieces.
async fn send_snapshot(client: &mut RaftClient<Channel>, m: Message) -> bool {
    let bytes = m.get_snapshot().get_data().len();
    let Ok(chunks) = super::snapshot_stream::chunks(m, SNAPSHOT_CHUNK_BYTES) else {
        return false;
    };
    let n = chunks.len();
    let mut req = tonic::Request::new(tokio_stream::iter(chunks));
    req.set_timeout(Duration::from_secs(120));
    match client.stream_raft_snapshot(req).await {
        Ok(_) => {
            debug!(chunks = n, bytes, "snapshot sent");
            true
        }
        Err(e) => {
            warn!(error = %e.message(), "sending a snapshot failed");
            false
        }
    }
}
