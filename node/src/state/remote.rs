//! The NodeState client. Any manager serves it (a follower forwards the write to
//! the leader), so on a broken connection or a busy cluster the client moves to the
//! next manager and tries again, with backoff, for as long as it takes: LDK must
//! not see a write fail for a reason that passes. The lease watch bounds the wait,
//! since an agent that cannot reach the cluster stops vouching for its nodes.

use std::{future::Future, time::Duration};

use lnswarm_common::{
    api::node_state_client::NodeStateClient,
    pki::Role,
    tls::{self, ClientTls},
};
use tokio::sync::Mutex;
use tonic::{transport::Channel, Code, Status};
use tracing::{debug, warn};

/// Largest message either way (a whole state at load).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Longest wait for one answer before trying another manager.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer that retrying will not change.
#[derive(Debug)]
pub enum Refused {
    /// FAILED_PRECONDITION: another copy of this node holds the lease (or this
    /// write is out of order). This process must stop.
    Fenced(String),
    /// Anything else final (a bug or a certificate problem).
    Final(Status),
}

pub struct Remote {
    managers: Vec<String>,
    tls: ClientTls,
    /// The manager in use and its client.
    current: Mutex<(usize, Option<NodeStateClient<Channel>>)>,
}

fn retryable(s: &Status) -> bool {
    !matches!(
        s.code(),
        Code::FailedPrecondition
            | Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::NotFound
            | Code::Unimplemented
    )
}

impl Remote {
    pub fn new(managers: Vec<String>, tls: ClientTls) -> Self {
        Remote {
            managers,
            tls,
            current: Mutex::new((0, None)),
        }
    }

    /// Runs `call` until it answers, or answers with something final.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Refused>
    where
        F: FnMut(NodeStateClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut said = false;
        loop {
            let mut current = self.current.lock().await;
            let (at, client) = &mut *current;
            let addr = self.managers[*at % self.managers.len()].clone();
            let result = match client.clone() {
                Some(c) => Ok(c),
                None => tls::connect(&addr, &self.tls, Role::Manager)
                    .await
                    .map(|ch| {
                        let c = NodeStateClient::new(ch)
                            .max_decoding_message_size(MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(MAX_MESSAGE_BYTES);
                        *client = Some(c.clone());
                        c
                    })
                    .map_err(|e| Status::unavailable(e.to_string())),
            };
            let answer = match result {
                Ok(c) => match tokio::time::timeout(CALL_TIMEOUT, call(c)).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::deadline_exceeded("no answer in time")),
                },
                Err(s) => Err(s),
            };
            match answer {
                Ok(r) => {
                    if said {
                        debug!(manager = %addr, "{what}: the managers answer again");
                    }
                    return Ok(r.into_inner());
                }
                Err(s) if s.code() == Code::FailedPrecondition => {
                    return Err(Refused::Fenced(s.message().to_string()))
                }
                Err(s) if !retryable(&s) => return Err(Refused::Final(s)),
                Err(s) => {
                    if !said {
                        warn!(manager = %addr, error = %s.message(), "{what}: retrying on the next manager");
                        said = true;
                    }
                    *at += 1;
                    *client = None;
                    drop(current);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
