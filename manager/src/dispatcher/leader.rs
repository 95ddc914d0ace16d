//! The dispatcher while this manager leads (the manager starts and stops it, see
//! [`crate::manager`]). On becoming leader every agent that was not DOWN is marked
//! UNKNOWN and given a longer grace to open a session with the new leader before it
//! is written DOWN; on stopping every session ends, so agents move to the new
//! leader. A timer scans for sessions whose heartbeat TTL ran out and queues their
//! DOWN writes.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use lnswarm_common::api::{Agent, AgentState, AgentStatus};
use lnswarm_common::ids::now_unix_ms;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{sessions::EndReason, shared::Shared, writer::Write, HeartbeatTiming};
use crate::{
    cluster,
    store::{keys, Attempt, StoreError, TxnBuilder},
};

/// Serves as the cluster's dispatcher until `stop` fires (this manager stopped
/// leading, or is shutting down): marks agents UNKNOWN with a grace, then runs the
/// expiry timer and follows the settings and the manager list. On return every
/// session has been ended, so agents move to the new leader.
pub(super) async fn lead(shared: Arc<Shared>, stop: CancellationToken) {
    refresh_timing(&shared);
    for attempt in 0.. {
        let elected = tokio::select! {
            r = on_elected(&shared) => r,
            () = stop.cancelled() => return,
        };
        match elected {
            Ok(()) => break,
            Err(e) => {
                warn!(error = %e, attempt, "dispatcher could not start; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
    shared.active.store(true, Ordering::SeqCst);
    info!("dispatcher started (this manager leads)");
    tokio::select! {
        () = expiry_timer(&shared) => {}
        () = follow_settings(&shared) => {}
        () = publish_managers(&shared) => {}
        () = stop.cancelled() => {}
    }
    shared.active.store(false, Ordering::SeqCst);
    shared.sessions.clear(EndReason::LostLeadership);
    info!("dispatcher stopped");
}

/// Marks every agent that is not DOWN or DISCONNECTED as UNKNOWN (one proposal) and
/// gives it the leader-change grace.
async fn on_elected(shared: &Shared) -> Result<(), StoreError> {
    let timing = *shared.timing.read().expect("timing lock");
    let grace = timing
        .ttl()
        .saturating_mul(shared.config.leader_change_grace_ttls.max(1))
        .max(shared.config.leader_change_grace_min);
    let (waiting, _) = shared
        .store
        .update("the agents' states", |store| {
            let mut txn = TxnBuilder::new();
            let mut waiting = Vec::new();
            for (version, mut agent) in store.list::<Agent>(keys::AGENTS)? {
                let state = agent.status.as_ref().map(|s| s.state).unwrap_or_default();
                if state == AgentState::Down as i32 || state == AgentState::Disconnected as i32 {
                    continue;
                }
                waiting.push(agent.id.clone());
                if state == AgentState::Unknown as i32 {
                    continue;
                }
                let key = keys::agent(&agent.id);
                agent.status = Some(AgentStatus {
                    state: AgentState::Unknown as i32,
                    message: "leader changed; waiting for the agent's session".into(),
                    addr: agent.status.map(|s| s.addr).unwrap_or_default(),
                    since_unix_ms: now_unix_ms(),
                });
                txn = txn.require_version(&key, version).put_tagged(
                    &key,
                    &agent,
                    [keys::agent_tag(&agent.id)],
                );
            }
            let txn = txn.build();
            Ok::<_, StoreError>(if txn.ops.is_empty() {
                Attempt::Done(waiting)
            } else {
                Attempt::Propose(txn, waiting)
            })
        })
        .await?;
    info!(
        agents = waiting.len(),
        grace_ms = grace.as_millis() as u64,
        "waiting for agents after leader change"
    );
    shared
        .sessions
        .await_agents(waiting, Instant::now() + grace);
    Ok(())
}

/// Reads the heartbeat timing from the cluster settings.
fn refresh_timing(shared: &Shared) {
    if let Ok((_, record)) = cluster::load(&shared.store) {
        let timing = HeartbeatTiming::from_settings(record.settings.as_ref(), &shared.config);
        let mut current = shared.timing.write().expect("timing lock");
        if *current != timing {
            info!(
                period_ms = timing.period.as_millis() as u64,
                grace = timing.grace_multiplier,
                "heartbeat timing"
            );
            *current = timing;
        }
    }
}

/// Puts a change of the cluster settings in force as soon as it is applied.
async fn follow_settings(shared: &Shared) {
    let mut changes = shared.store.state().watch().subscribe(keys::CLUSTER_TAG);
    loop {
        changes.borrow_and_update();
        refresh_timing(shared);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

async fn expiry_timer(shared: &Shared) {
    loop {
        let timing = *shared.timing.read().expect("timing lock");
        // Each scan visits every session, so it runs a few times per period, not
        // more: an expiry is noticed within a fifth of a period (at most 1 s) of
        // its deadline, well inside the "TTL + one period" agents are promised.
        let tick = (timing.period / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
        tokio::time::sleep(tick).await;
        shared.expiry_scans.fetch_add(1, Ordering::Relaxed);
        let expired = shared.sessions.expire(Instant::now());
        for (agent_id, session_id) in expired.sessions {
            info!(agent = %agent_id, session = %session_id, "heartbeat TTL expired");
            crate::metrics::events().expirations.inc();
            shared.writer.send(Write::AgentState {
                agent_id,
                state: AgentState::Down,
                message: "heartbeat TTL expired".into(),
            });
        }
        for agent_id in expired.awaiting {
            info!(agent = %agent_id, "no session after leader change");
            shared.writer.send(Write::AgentState {
                agent_id,
                state: AgentState::Down,
                message: "no session after the leader changed".into(),
            });
        }
    }
}

/// Keeps the manager list sessions hand out current: re-read on every leadership
/// change and every `managers_refresh`; sessions wake only when it changes.
async fn publish_managers(shared: &Shared) {
    let mut leadership = shared.store.leadership();
    loop {
        if let Ok(list) = super::shared::managers(&shared.store) {
            shared.managers.send_if_modified(|current| {
                let changed = *current != list;
                if changed {
                    *current = list;
                }
                changed
            });
        }
        tokio::select! {
            r = leadership.changed() => if r.is_err() {
                tokio::time::sleep(shared.config.managers_refresh).await;
            },
            _ = tokio::time::sleep(shared.config.managers_refresh) => {}
        }
    }
}
