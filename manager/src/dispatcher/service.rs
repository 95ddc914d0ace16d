//! The Dispatcher's gRPC handlers. The caller's agent id is always its certificate's
//! CN; a session id only proves which of that agent's sessions a call belongs to, so a
//! worker can never act on another agent's session, assignments or tasks.

use std::sync::{atomic::AtomicBool, Arc, RwLock};

use lnswarm_common::{
    api::{
        dispatcher_server, Agent, AgentDescription, AgentState, AgentStatus, AssignmentsMessage,
        AssignmentsRequest, ClusterRecord, HeartbeatRequest, HeartbeatResponse, SessionMessage,
        SessionRequest, Task, TaskState, UpdateTaskStatusRequest, UpdateTaskStatusResponse,
    },
    authz::caller,
    ids::now_unix_ms,
};
use tonic::{Request, Response, Status};
use tracing::{info, info_span, warn, Instrument};

use super::{
    assignments::{parse_version, Feed},
    assignments_stream::AssignmentsHandler,
    config::{DispatcherConfig, HeartbeatTiming},
    session_stream::SessionHandler,
    sessions::{peer_addr, Sessions},
    shared::{managers, Shared},
    streams::{agent_changes, boxed_channel, unboxed, BoxStream},
    writer::Writer,
};
use crate::store::{keys, Attempt, Store, StoreError, TxnBuilder};

/// Largest number of status updates one call may carry.
const MAX_UPDATES_PER_CALL: usize = 10_000;

/// The Dispatcher service; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    /// The dispatcher, idle until [`Dispatcher::lead`] runs (its writer starts now).
    pub fn start(store: Store, config: DispatcherConfig) -> Self {
        let sessions = Arc::new(Sessions::default());
        let writer = Writer::start(store.clone(), sessions.clone(), config.clone());
        let timing = HeartbeatTiming::from_settings(None, &config);
        let (managers, _) = tokio::sync::watch::channel(self::managers(&store).unwrap_or_default());
        let shared = Arc::new(Shared {
            store,
            config,
            sessions,
            writer,
            timing: RwLock::new(timing),
            active: AtomicBool::new(false),
            managers,
            expiry_scans: Default::default(),
        });
        Dispatcher { shared }
    }

    /// Serves as the cluster's dispatcher until `stop` fires; then every session
    /// has ended. Only the manager's leader lifecycle calls this.
    pub async fn lead(&self, stop: tokio_util::sync::CancellationToken) {
        super::leader::lead(self.shared.clone(), stop).await
    }

    /// Expiry scans so far (they run only while this manager leads).
    pub fn expiry_scans(&self) -> u64 {
        self.shared
            .expiry_scans
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many agents hold a session with this manager.
    pub fn live_sessions(&self) -> usize {
        self.shared.sessions.len()
    }

    fn timing(&self) -> HeartbeatTiming {
        *self.shared.timing.read().expect("timing lock")
    }

    /// UNAVAILABLE, naming the leader when known, unless this manager serves.
    fn ensure_active(&self) -> Result<(), Status> {
        if self.shared.active.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let leadership = self.shared.store.leadership().borrow().clone();
        let mut status = match (&leadership.leader_addr, leadership.is_leader) {
            (_, true) => Status::unavailable("the dispatcher is starting; retry shortly"),
            (Some(addr), false) => Status::unavailable(format!(
                "this manager is not the leader; the leader is at {addr}"
            )),
            (None, false) => {
                Status::unavailable("this manager is not the leader; no leader is known")
            }
        };
        if let (Some(addr), false) = (&leadership.leader_addr, leadership.is_leader) {
            if let Ok(v) = addr.parse() {
                status.metadata_mut().insert("lnswarm-leader-addr", v);
            }
        }
        Err(status)
    }
}

/// The calling agent's id, from its certificate.
fn agent_id<T>(req: &Request<T>) -> Result<String, Status> {
    caller(req)
        .map(|who| who.id.clone())
        .ok_or_else(|| Status::unauthenticated("a worker certificate is required"))
}

fn validate_description(d: &AgentDescription) -> Result<(), Status> {
    if d.hostname.is_empty() || d.hostname.len() > 253 {
        return Err(Status::invalid_argument(
            "hostname must be 1 to 253 characters",
        ));
    }
    if d.version.len() > 64 || d.node_version.len() > 64 || d.advertised_address.len() > 253 {
        return Err(Status::invalid_argument(
            "version, node version or advertised address too long",
        ));
    }
    if d.port_range_start > d.port_range_end || d.port_range_end > 65_535 {
        return Err(Status::invalid_argument(
            "port range must be start <= end <= 65535",
        ));
    }
    Ok(())
}

/// Writes the agent READY with its description (creating it on first contact).
async fn mark_ready(
    store: &Store,
    agent_id: &str,
    description: AgentDescription,
    addr: String,
) -> Result<Agent, StoreError> {
    let key = keys::agent(agent_id);
    let (mut agent, index) = store
        .update("the agent's record", |store| {
            let existing = store.get::<Agent>(&key)?;
            let (check, mut agent) = match existing {
                Some((v, a)) => (Some(v), a),
                None => (
                    None,
                    Agent {
                        id: agent_id.to_string(),
                        created_unix_ms: now_unix_ms(),
                        ..Default::default()
                    },
                ),
            };
            agent.description = Some(description.clone());
            agent.status = Some(AgentStatus {
                state: AgentState::Ready as i32,
                message: "session opened".into(),
                addr: addr.clone(),
                since_unix_ms: now_unix_ms(),
            });
            let txn = match check {
                Some(v) => TxnBuilder::new().require_version(&key, v),
                None => TxnBuilder::new().require_absent(&key),
            }
            .put_tagged(&key, &agent, [keys::agent_tag(agent_id)])
            .build();
            Ok::<_, StoreError>(Attempt::Propose(txn, agent))
        })
        .await?;
    agent.version = Some(lnswarm_common::api::Version { index });
    Ok(agent)
}

fn root_ca(store: &Store) -> Result<Vec<u8>, StoreError> {
    Ok(store
        .get::<ClusterRecord>(keys::CLUSTER)?
        .map(|(_, r)| crate::cluster::trust_bundle(&r).into_bytes())
        .unwrap_or_default())
}

#[tonic::async_trait]
impl dispatcher_server::Dispatcher for Dispatcher {
    type SessionStream = BoxStream<SessionMessage>;
    type AssignmentsStream = BoxStream<AssignmentsMessage>;

    async fn session(
        &self,
        req: Request<SessionRequest>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.ensure_active()?;
        let agent_id = agent_id(&req)?;
        let addr = peer_addr(&req)
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let description = req
            .into_inner()
            .description
            .ok_or_else(|| Status::invalid_argument("description is required"))?;
        validate_description(&description)?;
        let shared = &self.shared;
        let registered = shared.sessions.register(
            &agent_id,
            self.timing().ttl(),
            shared.config.max_registrations,
            shared.config.registration_window,
        )?;
        let session_id = registered.session_id.clone();
        let span = info_span!("session", agent = %agent_id, session = %session_id);
        let agent = match mark_ready(&shared.store, &agent_id, description, addr)
            .instrument(span.clone())
            .await
        {
            Ok(a) => a,
            Err(e) => {
                shared.sessions.end(
                    &agent_id,
                    Some(&session_id),
                    super::sessions::EndReason::Expired,
                );
                return Err(e.into());
            }
        };
        span.in_scope(|| info!("session opened; agent READY"));
        let first = SessionMessage {
            session_id: session_id.clone(),
            agent: Some(agent.clone()),
            managers: shared.managers.borrow().clone(),
            root_ca: root_ca(&shared.store)?,
        };
        let (tx, rx) = boxed_channel::<SessionMessage>();
        let mut managers = shared.managers.subscribe();
        managers.borrow_and_update();
        let wake = agent_changes(&shared.store, &agent_id);
        let handler = SessionHandler {
            store: shared.store.clone(),
            agent_id,
            tx,
            last: first,
            end: registered.end,
            wake,
            managers,
        };
        tokio::spawn(handler.run().instrument(span));
        Ok(Response::new(unboxed(rx)))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.ensure_active()?;
        let agent_id = agent_id(&req)?;
        let timing = self.timing();
        let session_id = &req.get_ref().session_id;
        self.shared
            .sessions
            .heartbeat(&agent_id, session_id, timing.ttl())?;
        crate::metrics::events().heartbeats.inc();
        if req.get_ref().leaving {
            info!(agent = %agent_id, session = %session_id, "agent leaving");
            self.shared.sessions.end(
                &agent_id,
                Some(session_id),
                super::sessions::EndReason::Left,
            );
            self.shared.writer.send(super::writer::Write::AgentState {
                agent_id,
                state: AgentState::Disconnected,
                message: "the agent shut down".into(),
            });
        }
        let config = &self.shared.config;
        let period = timing.next_period(
            config.period_jitter,
            config.heartbeat_slot,
            now_unix_ms() as u64,
        );
        Ok(Response::new(HeartbeatResponse {
            period_ms: period.as_millis() as u64,
            ttl_ms: timing.ttl().as_millis() as u64,
        }))
    }

    async fn update_task_status(
        &self,
        req: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        self.ensure_active()?;
        let agent_id = agent_id(&req)?;
        let req = req.into_inner();
        self.shared.sessions.check(&agent_id, &req.session_id)?;
        if req.updates.len() > MAX_UPDATES_PER_CALL {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_UPDATES_PER_CALL} updates per call"
            )));
        }
        let mut accepted = Vec::with_capacity(req.updates.len());
        for u in req.updates {
            let status = u
                .status
                .ok_or_else(|| Status::invalid_argument("every update needs a status"))?;
            if TaskState::try_from(status.state).is_err() {
                return Err(Status::invalid_argument(format!(
                    "unknown task state {}",
                    status.state
                )));
            }
            if u.task_id.is_empty() {
                return Err(Status::invalid_argument("every update needs a task id"));
            }
            match self.shared.store.get::<Task>(&keys::task(&u.task_id))? {
                // Unknown tasks are accepted and ignored.
                None => continue,
                Some((_, task)) if task.agent_id != agent_id => {
                    warn!(agent = %agent_id, task = %u.task_id, "status report for another agent's task refused");
                    return Err(Status::permission_denied(format!(
                        "task {} is not assigned to this agent",
                        u.task_id
                    )));
                }
                Some(_) => accepted.push((u.task_id, status)),
            }
        }
        self.shared.writer.task_statuses(accepted).await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }

    async fn assignments(
        &self,
        req: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        self.ensure_active()?;
        let agent_id = agent_id(&req)?;
        let req = req.into_inner();
        let end = self.shared.sessions.check(&agent_id, &req.session_id)?;
        let since = match req.last_results_in.as_str() {
            "" => None,
            s => Some(parse_version(s).ok_or_else(|| {
                Status::invalid_argument("last_results_in must be a results_in value")
            })?),
        };
        let store = self.shared.store.clone();
        let wake = agent_changes(&store, &agent_id);
        let span = info_span!("assignments", agent = %agent_id, session = %req.session_id);
        let (tx, rx) = boxed_channel::<AssignmentsMessage>();
        let handler = AssignmentsHandler {
            store,
            config: self.shared.config.clone(),
            feed: Feed::new(&agent_id),
            since,
            tx,
            end,
            wake,
        };
        tokio::spawn(handler.run().instrument(span));
        Ok(Response::new(unboxed(rx)))
    }
}
