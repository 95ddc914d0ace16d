//! Following the Assignments chain: a COMPLETE message replaces the set, an
//! INCREMENTAL one applies on top if its `applies_to` equals the `results_in` last
//! applied. On a gap the stream is reopened without a resume point, which yields a
//! COMPLETE set. The last `results_in` is kept across sessions, so a reconnect (to
//! any manager) resumes with only what changed.

use std::sync::Arc;

use lnswarm_common::api::{
    dispatcher_client::DispatcherClient, AssignmentsMessage, AssignmentsRequest, AssignmentsType,
};
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::{rpc, SessionError, MAX_MESSAGE_BYTES};
use crate::worker::Worker;

/// Where the agent is in the chain.
#[derive(Debug, Default, Clone)]
pub struct Chain {
    /// `results_in` of the last message applied.
    pub last_results_in: Option<String>,
}

/// What to do with one message.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainStep {
    /// Replace the set.
    Complete,
    /// Apply on top.
    Incremental,
    /// The message does not follow what was applied: resync.
    Gap,
}

impl Chain {
    pub fn step(&self, m: &AssignmentsMessage) -> ChainStep {
        if m.r#type == AssignmentsType::Complete as i32 {
            ChainStep::Complete
        } else if self.last_results_in.as_deref() == Some(m.applies_to.as_str()) {
            ChainStep::Incremental
        } else {
            ChainStep::Gap
        }
    }
}

/// Follows the chain until the stream fails.
pub async fn follow(
    channel: Channel,
    session_id: &str,
    chain: &mut Chain,
    worker: &Arc<Worker>,
    synced: &tokio::sync::watch::Sender<bool>,
) -> Result<(), SessionError> {
    let mut client = DispatcherClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    loop {
        let mut stream = client
            .assignments(AssignmentsRequest {
                session_id: session_id.to_string(),
                last_results_in: chain.last_results_in.clone().unwrap_or_default(),
            })
            .await
            .map_err(rpc("opening assignments"))?
            .into_inner();
        loop {
            let Some(m) = stream.message().await.map_err(rpc("assignments stream"))? else {
                return Err(SessionError::Ended);
            };
            match chain.step(&m) {
                ChainStep::Gap => {
                    warn!(
                        applies_to = %m.applies_to,
                        last = ?chain.last_results_in,
                        "gap in the assignments chain; asking for the complete set"
                    );
                    chain.last_results_in = None;
                    break;
                }
                step => {
                    debug!(kind = ?step, results_in = %m.results_in, changes = m.changes.len(), "assignments");
                    worker.apply(step == ChainStep::Complete, m.changes);
                    chain.last_results_in = Some(m.results_in);
                    synced.send_replace(true);
                }
            }
        }
    }
}
