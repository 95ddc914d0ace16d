//! One owner device's SignerRequestsStream: it is sent every pending pairing
//! request of its node when it opens and each new one as it appears, and its
//! answers decide them. A request is decided once; a second answer (another device
//! of the owner's was quicker) is logged and ignored. Any manager serves it: the
//! requests and the decisions are in the replicated store.

use std::{collections::HashSet, time::Duration};

use lnswarm_common::api::{signer_request, signer_response, SignerRequest, SignerResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::pairing;
use crate::store::Store;

pub struct SignerSession {
    store: Store,
    node_id: String,
    poll: Duration,
}

impl SignerSession {
    pub fn new(store: Store, node_id: String, poll: Duration) -> Self {
        SignerSession {
            store,
            node_id,
            poll,
        }
    }

    /// Serves the stream until the device goes away.
    pub fn run(
        self,
        mut answers: Streaming<SignerResponse>,
    ) -> ReceiverStream<Result<SignerRequest, Status>> {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut sent = HashSet::new();
            let mut tick = tokio::time::interval(self.poll);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let pending = match pairing::pending(&self.store, &self.node_id) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = tx.send(Err(e.into())).await;
                                return;
                            }
                        };
                        for r in pending {
                            if !sent.insert(r.request_id) {
                                continue;
                            }
                            let request = SignerRequest {
                                request_id: r.request_id,
                                request: Some(signer_request::Request::ApprovePairing(
                                    pairing::shown(&r),
                                )),
                            };
                            if tx.send(Ok(request)).await.is_err() {
                                return;
                            }
                        }
                    }
                    answer = answers.message() => match answer {
                        Ok(Some(answer)) => self.answer(answer).await,
                        // The device closed its side or went away.
                        Ok(None) => return,
                        // An answer that could not be read (too large, not
                        // protobuf): the device is told why its stream ends.
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    },
                    () = tx.closed() => return,
                }
            }
        });
        ReceiverStream::new(rx)
    }

    async fn answer(&self, answer: SignerResponse) {
        let Some(signer_response::Response::ApprovePairing(a)) = answer.response else {
            return;
        };
        // Only requests under this node's key are found: a device decides only
        // for its own node.
        if let Err(e) =
            pairing::decide(&self.store, &self.node_id, answer.request_id, a.approved).await
        {
            tracing::info!(node = %self.node_id, request = answer.request_id, error = %e, "a pairing answer was not applied");
        }
    }
}
