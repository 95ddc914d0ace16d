//! Operator calls: cluster info and settings, join tokens, and inspection of
//! managers, agents, tasks and hosted nodes. Writes go through the store and are
//! acknowledged once applied. Reads are linearizable (a ReadIndex barrier first), so
//! any manager answers as the leader would, and a manager that was removed or is
//! cut off from the quorum answers UNAVAILABLE instead of stale state.

use lnswarm_common::{
    api::{
        control_server::Control, Agent, Availability, CertificateRecord, ClusterInfo,
        CreateTaskRequest, GetAgentRequest, GetClusterInfoRequest, GetJoinTokenRequest,
        GetJoinTokenResponse, GetRootCaStatusRequest, GetTaskRequest, GetUnlockKeyRequest,
        GetUnlockKeyResponse, HostedNode, InspectHostedNodeRequest, IssueAppCertificateRequest,
        IssueAppCertificateResponse, JoinRole, ListAgentsRequest, ListAgentsResponse,
        ListHostedNodesRequest, ListHostedNodesResponse, ListManagersRequest, ListManagersResponse,
        ListTasksRequest, ListTasksResponse, Manager, ManagerInfo, MoveHostedNodeRequest,
        RemoveAgentRequest, RemoveAgentResponse, RemoveHostedNodeRequest, RemoveHostedNodeResponse,
        RemoveManagerRequest, RemoveManagerResponse, RemoveTaskRequest, RemoveTaskResponse,
        RootCaStatus, RotateRootCaRequest, Task, UpdateAgentRequest, UpdateClusterSettingsRequest,
        UpgradeHostedNodesRequest, UpgradeHostedNodesResponse, Version,
    },
    pki::{ca_digest, Role},
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::tasks::{self, TaskError};
use crate::{
    cluster::{self, settings},
    orchestrator::upgrades,
    store::at_rest::UnlockKey,
    store::{keys, Attempt, Store, StoreError, TxnBuilder},
};

impl From<TaskError> for Status {
    fn from(e: TaskError) -> Self {
        use TaskError::*;
        match e {
            NoSpec | NoProgram | NotACommand | NoRuntime | SecretTooLarge => {
                Status::invalid_argument(e.to_string())
            }
            NowhereToPlace(_) | AgentReady => Status::failed_precondition(e.to_string()),
            NoAgent(_) | NoSecret(_) | NoTask(_) => Status::not_found(e.to_string()),
            SecretExists => Status::already_exists(e.to_string()),
            Store(e) => e.into(),
        }
    }
}

pub struct ControlService {
    store: Store,
    /// This manager, for the manager list until the quorum lands.
    this_manager: Manager,
}

impl ControlService {
    pub fn new(store: Store, this_manager: Manager) -> Self {
        ControlService {
            store,
            this_manager,
        }
    }

    fn get_or_not_found<M: Message + Default>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<(u64, M), Status> {
        self.store.get::<M>(key)?.ok_or_else(|| {
            Status::not_found(format!(
                "no {what} {:?}",
                key.split('/').nth(1).unwrap_or("")
            ))
        })
    }
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("{what} is not available in this version"))
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_cluster_info(
        &self,
        _req: Request<GetClusterInfoRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        self.store.read_barrier().await?;
        let (_, record) = cluster::load(&self.store)?;
        let ca_der = lnswarm_common::tls::certs_from_pem(&record.ca_cert_pem)
            .map_err(|e| Status::internal(format!("cluster CA: {e}")))?;
        let (managers, agents, hosted_nodes) = self
            .store
            .read_off_thread(|store| {
                let count = |prefix| Ok::<_, StoreError>(store.state().scan(prefix)?.len() as u32);
                Ok((
                    count(keys::MANAGERS)?,
                    count(keys::AGENTS)?,
                    count(keys::HOSTED_NODES)?,
                ))
            })
            .await?;
        let settings = Some(cluster::effective_settings(&record));
        Ok(Response::new(ClusterInfo {
            cluster_id: record.cluster_id,
            root_ca_digest: ca_digest(&ca_der[0]),
            root_ca: record.ca_cert_pem.into_bytes(),
            settings,
            managers,
            agents,
            hosted_nodes,
            created_unix_ms: record.created_unix_ms,
            unlock_key: String::new(),
        }))
    }

    async fn update_cluster_settings(
        &self,
        req: Request<UpdateClusterSettingsRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let update = req
            .into_inner()
            .update
            .ok_or_else(|| Status::invalid_argument("update is required"))?;
        let store = &self.store;
        // Checked as a whole before anything is stored.
        let shown_key = cluster::update(store, |record| {
            let current = cluster::effective_settings(record);
            let next = settings::apply(&current, &update)?;
            let mut shown = None;
            match (current.autolock, next.autolock) {
                (false, true) => {
                    let key = UnlockKey::generate();
                    cluster::set_unlock_key(store, record, Some(&key))?;
                    shown = Some(key.display().to_string());
                }
                (true, false) => cluster::set_unlock_key(store, record, None)?,
                _ => {}
            }
            record.settings = Some(next);
            Ok(shown)
        })
        .await?;
        if shown_key.is_some() {
            tracing::info!("autolock turned on");
        }
        let mut info = self
            .get_cluster_info(Request::new(GetClusterInfoRequest {}))
            .await?
            .into_inner();
        info.unlock_key = shown_key.unwrap_or_default();
        Ok(Response::new(info))
    }

    async fn get_root_ca_status(
        &self,
        _req: Request<GetRootCaStatusRequest>,
    ) -> Result<Response<RootCaStatus>, Status> {
        self.store.read_barrier().await?;
        // It scans managers, agents and hosted nodes.
        let status = self
            .store
            .read_off_thread(|store| Ok(crate::ca::rotation::status(store)))
            .await??;
        Ok(Response::new(status))
    }

    async fn rotate_root_ca(
        &self,
        req: Request<RotateRootCaRequest>,
    ) -> Result<Response<RootCaStatus>, Status> {
        use crate::ca::rotation::{self, RotationError};
        let req = req.into_inner();
        let text = |b: Vec<u8>| {
            String::from_utf8(b)
                .map_err(|_| Status::invalid_argument("the new root CA must be PEM"))
        };
        let (cert, key) = (text(req.ca_cert)?, text(req.ca_key)?);
        let root = match (cert.is_empty(), key.is_empty()) {
            (true, true) => None,
            (false, false) => Some((cert.as_str(), key.as_str())),
            _ => return Err(RotationError::HalfRoot.into()),
        };
        let status = rotation::start(&self.store, root).await?;
        Ok(Response::new(status))
    }

    async fn get_unlock_key(
        &self,
        req: Request<GetUnlockKeyRequest>,
    ) -> Result<Response<GetUnlockKeyResponse>, Status> {
        let rotate = req.into_inner().rotate;
        let store = &self.store;
        let key = if rotate {
            cluster::update(store, |record| {
                if !cluster::effective_settings(record).autolock {
                    return Err(cluster::ClusterError::AutolockOff);
                }
                let key = UnlockKey::generate();
                cluster::set_unlock_key(store, record, Some(&key))?;
                Ok(key)
            })
            .await?
        } else {
            store.read_barrier().await?;
            let (_, record) = cluster::load(store)?;
            if !cluster::effective_settings(&record).autolock {
                return Err(cluster::ClusterError::AutolockOff.into());
            }
            cluster::unlock_key(store, &record)?
                .ok_or_else(|| Status::internal("autolock is on but no unlock key is stored"))?
        };
        if rotate {
            tracing::info!("unlock key rotated");
        }
        Ok(Response::new(GetUnlockKeyResponse {
            unlock_key: key.display().to_string(),
        }))
    }

    async fn get_join_token(
        &self,
        req: Request<GetJoinTokenRequest>,
    ) -> Result<Response<GetJoinTokenResponse>, Status> {
        let req = req.into_inner();
        let role = match req.role() {
            JoinRole::Worker => Role::Worker,
            JoinRole::Manager => Role::Manager,
        };
        let token = if req.rotate {
            let token = cluster::rotate_token(&self.store, role).await?;
            tracing::info!(%role, "join token rotated");
            token
        } else {
            self.store.read_barrier().await?;
            let (_, record) = cluster::load(&self.store)?;
            match role {
                Role::Manager => record.manager_token,
                _ => record.worker_token,
            }
        };
        Ok(Response::new(GetJoinTokenResponse { token }))
    }

    async fn issue_app_certificate(
        &self,
        req: Request<IssueAppCertificateRequest>,
    ) -> Result<Response<IssueAppCertificateResponse>, Status> {
        let req = req.into_inner();
        let ok = !req.name.is_empty()
            && req.name.len() <= 64
            && req
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(Status::invalid_argument(
                "an app name is 1-64 letters, digits, '.', '_' or '-'",
            ));
        }
        let csr_pem = crate::ca::check_csr(&req.csr, Role::App)?;
        let cn = format!("app/{}", req.name);
        let cert = crate::ca::issue_and_record(&self.store, csr_pem, Role::App, &cn, &[]).await?;
        let (_, record) = cluster::load(&self.store)?;
        tracing::info!(app = %req.name, "app credential issued");
        Ok(Response::new(IssueAppCertificateResponse {
            certificate: cert.into_bytes(),
            root_ca: cluster::trust_bundle(&record).into_bytes(),
        }))
    }

    async fn list_managers(
        &self,
        _req: Request<ListManagersRequest>,
    ) -> Result<Response<ListManagersResponse>, Status> {
        let Some(raft) = self.store.raft() else {
            // A store without a quorum: this manager is the whole cluster.
            let applied = self.store.state().applied_index();
            let m = self.this_manager.clone();
            return Ok(Response::new(ListManagersResponse {
                cert_expires_unix: cert_expiries(&self.store, [m.id.as_str()]),
                managers: vec![ManagerInfo {
                    id: m.id,
                    raft_id: m.raft_id,
                    addr: m.addr,
                    leader: true,
                    reachable: true,
                    term: 1,
                    commit_index: applied,
                    applied_index: applied,
                }],
            }));
        };
        let managers = crate::store::raft::membership::list(raft).await?;
        Ok(Response::new(ListManagersResponse {
            cert_expires_unix: cert_expiries(&self.store, managers.iter().map(|m| m.id.as_str())),
            managers,
        }))
    }

    async fn remove_manager(
        &self,
        req: Request<RemoveManagerRequest>,
    ) -> Result<Response<RemoveManagerResponse>, Status> {
        let req = req.into_inner();
        let raft = self
            .store
            .raft()
            .ok_or_else(|| Status::failed_precondition("cannot remove the last manager"))?;
        crate::store::raft::membership::remove(raft, &req.id, req.force).await?;
        Ok(Response::new(RemoveManagerResponse {}))
    }

    async fn list_agents(
        &self,
        _req: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        self.store.read_barrier().await?;
        let agents = self
            .store
            .read_off_thread(|store| store.list::<Agent>(keys::AGENTS))
            .await?;
        let agents: Vec<Agent> = agents.into_iter().map(|(_, a)| a).collect();
        Ok(Response::new(ListAgentsResponse {
            cert_expires_unix: cert_expiries(&self.store, agents.iter().map(|a| a.id.as_str())),
            agents,
        }))
    }

    async fn get_agent(&self, req: Request<GetAgentRequest>) -> Result<Response<Agent>, Status> {
        self.store.read_barrier().await?;
        let id = req.into_inner().id;
        let (_, agent) = self.get_or_not_found::<Agent>(&keys::agent(&id), "agent")?;
        Ok(Response::new(agent))
    }

    async fn update_agent(
        &self,
        req: Request<UpdateAgentRequest>,
    ) -> Result<Response<Agent>, Status> {
        let req = req.into_inner();
        let availability = Availability::try_from(req.availability)
            .map_err(|_| Status::invalid_argument("unknown availability"))?;
        let key = keys::agent(&req.id);
        let (agent, _) = self
            .store
            .update("the agent", |_| {
                let (version, mut agent) = self.get_or_not_found::<Agent>(&key, "agent")?;
                agent.availability = availability as i32;
                let txn = TxnBuilder::new()
                    .require_version(&key, version)
                    .put_tagged(&key, &agent, [keys::agent_tag(&req.id)])
                    .build();
                Ok::<_, Status>(Attempt::Propose(txn, agent))
            })
            .await?;
        Ok(Response::new(agent))
    }

    async fn remove_agent(
        &self,
        req: Request<RemoveAgentRequest>,
    ) -> Result<Response<RemoveAgentResponse>, Status> {
        tasks::remove_agent(&self.store, req.into_inner()).await?;
        Ok(Response::new(RemoveAgentResponse {}))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        self.store.read_barrier().await?;
        let req = req.into_inner();
        let tasks = self
            .store
            .read_off_thread(|store| store.list::<Task>(keys::TASKS))
            .await?
            .into_iter()
            .map(|(_, t)| t)
            .filter(|t| req.agent_id.is_empty() || t.agent_id == req.agent_id)
            .filter(|t| req.node_id.is_empty() || t.node_id == req.node_id)
            .collect();
        Ok(Response::new(ListTasksResponse { tasks }))
    }

    async fn get_task(&self, req: Request<GetTaskRequest>) -> Result<Response<Task>, Status> {
        self.store.read_barrier().await?;
        let id = req.into_inner().id;
        let (_, task) = self.get_or_not_found::<Task>(&keys::task(&id), "task")?;
        Ok(Response::new(task))
    }

    async fn create_task(&self, req: Request<CreateTaskRequest>) -> Result<Response<Task>, Status> {
        let task = tasks::create_task(&self.store, req.into_inner()).await?;
        Ok(Response::new(task))
    }

    async fn remove_task(
        &self,
        req: Request<RemoveTaskRequest>,
    ) -> Result<Response<RemoveTaskResponse>, Status> {
        tasks::remove_task(&self.store, req.into_inner()).await?;
        Ok(Response::new(RemoveTaskResponse {}))
    }

    async fn list_hosted_nodes(
        &self,
        _req: Request<ListHostedNodesRequest>,
    ) -> Result<Response<ListHostedNodesResponse>, Status> {
        self.store.read_barrier().await?;
        let nodes = self
            .store
            .read_off_thread(|store| store.list::<HostedNode>(keys::HOSTED_NODES))
            .await?;
        Ok(Response::new(ListHostedNodesResponse {
            nodes: nodes.into_iter().map(|(_, n)| n).collect(),
        }))
    }

    async fn inspect_hosted_node(
        &self,
        req: Request<InspectHostedNodeRequest>,
    ) -> Result<Response<HostedNode>, Status> {
        self.store.read_barrier().await?;
        let id = req.into_inner().node_id;
        let (_, node) =
            self.get_or_not_found::<HostedNode>(&keys::hosted_node(&id), "hosted node")?;
        Ok(Response::new(node))
    }

    async fn remove_hosted_node(
        &self,
        _req: Request<RemoveHostedNodeRequest>,
    ) -> Result<Response<RemoveHostedNodeResponse>, Status> {
        Err(not_yet("removing hosted nodes"))
    }

    async fn move_hosted_node(
        &self,
        req: Request<MoveHostedNodeRequest>,
    ) -> Result<Response<HostedNode>, Status> {
        let req = req.into_inner();
        let key = keys::hosted_node(&req.node_id);
        if !req.to_agent.is_empty() {
            let (_, agent) =
                self.get_or_not_found::<Agent>(&keys::agent(&req.to_agent), "agent")?;
            if let Some(why) = crate::placement::unfit(&agent, 0) {
                return Err(Status::failed_precondition(format!(
                    "cannot move there: {why}"
                )));
            }
        }
        let (mut node, index) = self
            .store
            .update("the hosted node", |store| {
                let (version, mut node) = store
                    .get::<HostedNode>(&key)?
                    .ok_or_else(|| Status::not_found(format!("no hosted node {}", req.node_id)))?;
                if !node.desired_running || node.agent_id.is_empty() {
                    return Err(Status::failed_precondition(
                        "the node is not scheduled; there is nothing to move",
                    ));
                }
                if node.agent_id == req.to_agent {
                    return Err(Status::failed_precondition(format!(
                        "the node already runs on agent {}",
                        req.to_agent
                    )));
                }
                node.move_to = if req.to_agent.is_empty() {
                    "*".into()
                } else {
                    req.to_agent.clone()
                };
                let txn = TxnBuilder::new()
                    .require_version(&key, version)
                    .put_tagged(&key, &node, [keys::node_tag(&req.node_id)])
                    .build();
                Ok(Attempt::Propose(txn, node))
            })
            .await?;
        node.version = Some(Version { index });
        Ok(Response::new(node))
    }

    async fn upgrade_hosted_nodes(
        &self,
        req: Request<UpgradeHostedNodesRequest>,
    ) -> Result<Response<UpgradeHostedNodesResponse>, Status> {
        self.store.read_barrier().await?;
        let (behind, at_once) =
            upgrades::start_rolling(&self.store, req.get_ref().max_share_percent).await?;
        Ok(Response::new(UpgradeHostedNodesResponse {
            behind: behind as u32,
            at_once: at_once as u32,
        }))
    }
}

/// When the current certificate of each of `ids` expires (Unix seconds), from the
/// CA's records; ids without a readable record are left out.
fn cert_expiries<'a>(
    store: &Store,
    ids: impl IntoIterator<Item = &'a str>,
) -> std::collections::HashMap<String, i64> {
    ids.into_iter()
        .filter_map(|id| {
            let (_, record) = store
                .get::<CertificateRecord>(&keys::certificate(id))
                .ok()??;
            let (_, not_after) = lnswarm_common::pki::validity_of(&record.cert_pem).ok()?;
            Some((id.to_string(), not_after))
        })
        .collect()
}
