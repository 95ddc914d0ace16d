//! Control calls that change tasks and agents: creating a generic command task (the
//! executor's interface, for operators and tests), removing a task (desired SHUTDOWN,
//! deleted once its agent reports it stopped), and removing an agent.
//!
//! Every write of a task or secret placed on an agent carries the agent's watch tag,
//! so that agent's Assignments stream wakes and finds the change in the change log.

use lnswarm_common::{
    api::{
        Agent, AgentState, CertificateRecord, CreateTaskRequest, RemoveAgentRequest,
        RemoveTaskRequest, Secret, Task, TaskState,
    },
    ids::new_id,
};
use tonic::Status;
use tracing::info;

use crate::store::{keys, secrets, Applied, Store, TxnBuilder};

/// Largest secret a task may carry.
const MAX_SECRET_BYTES: usize = 64 * 1024;

fn state_of(agent: &Agent) -> i32 {
    agent.status.as_ref().map(|s| s.state).unwrap_or_default()
}

pub async fn create_task(store: &Store, req: CreateTaskRequest) -> Result<Task, Status> {
    let mut spec = req
        .spec
        .ok_or_else(|| Status::invalid_argument("spec is required"))?;
    match &spec.runtime {
        Some(lnswarm_common::api::task_spec::Runtime::Command(c)) if !c.args.is_empty() => {}
        Some(lnswarm_common::api::task_spec::Runtime::Command(_)) => {
            return Err(Status::invalid_argument("a command task needs a program"))
        }
        Some(_) => {
            return Err(Status::invalid_argument(
                "hosted-node tasks come from the Scheduler; CreateTask takes command tasks",
            ))
        }
        None => return Err(Status::invalid_argument("spec.runtime is required")),
    }
    let agent_id = if req.agent_id.is_empty() {
        store
            .read_off_thread(crate::placement::choose_from)
            .await?
            .map_err(Status::failed_precondition)?
    } else {
        if store.get::<Agent>(&keys::agent(&req.agent_id))?.is_none() {
            return Err(Status::not_found(format!("no agent {:?}", req.agent_id)));
        }
        req.agent_id
    };
    let tag = keys::agent_tag(&agent_id);
    let mut txn = TxnBuilder::new();
    let mut created = Vec::new();
    for secret in &req.secrets {
        if secret.data.len() > MAX_SECRET_BYTES {
            return Err(Status::invalid_argument(format!(
                "a secret holds at most {MAX_SECRET_BYTES} bytes"
            )));
        }
        let secret = Secret {
            id: if secret.id.is_empty() {
                new_id()
            } else {
                secret.id.clone()
            },
            version: None,
            data: secret.data.clone(),
        };
        created.push(secret.id.clone());
        if !spec.secret_ids.contains(&secret.id) {
            spec.secret_ids.push(secret.id.clone());
        }
        txn = secrets::put(
            store,
            txn.require_absent(keys::secret(&secret.id)),
            &secret,
            [tag.clone()],
        )?;
    }
    for id in &spec.secret_ids {
        if !created.contains(id) && store.get::<Secret>(&keys::secret(id))?.is_none() {
            return Err(Status::not_found(format!("no secret {id:?}")));
        }
    }
    let mut task = crate::placement::assigned_task(spec, &agent_id, "");
    let key = keys::task(&task.id);
    let txn = txn
        .require_absent(&key)
        .put_tagged(&key, &task, [tag])
        .build();
    match store.propose(txn).await? {
        Applied::Committed(index) => {
            info!(task = %task.id, agent = %agent_id, "task created");
            task.version = Some(lnswarm_common::api::Version { index });
            Ok(task)
        }
        Applied::CheckFailed(_) => Err(Status::already_exists("a secret with that id exists")),
    }
}

pub async fn remove_task(store: &Store, req: RemoveTaskRequest) -> Result<(), Status> {
    let key = keys::task(&req.id);
    loop {
        let (version, mut task) = store
            .get::<Task>(&key)?
            .ok_or_else(|| Status::not_found(format!("no task {:?}", req.id)))?;
        let tag = keys::agent_tag(&task.agent_id);
        let stopped = task
            .status
            .as_ref()
            .is_some_and(|s| s.state >= TaskState::Complete as i32);
        let agent_gone =
            task.agent_id.is_empty() || store.get::<Agent>(&keys::agent(&task.agent_id))?.is_none();
        let txn = TxnBuilder::new().require_version(&key, version);
        let txn = if stopped || agent_gone {
            txn.delete_tagged(&key, [tag])
        } else {
            task.desired_state = TaskState::Shutdown as i32;
            txn.put_tagged(&key, &task, [tag])
        };
        if let Applied::Committed(_) = store.propose(txn.build()).await? {
            info!(task = %req.id, deleted = stopped || agent_gone, "task removal requested");
            return Ok(());
        }
    }
}

pub async fn remove_agent(store: &Store, req: RemoveAgentRequest) -> Result<(), Status> {
    let key = keys::agent(&req.id);
    let tag = keys::agent_tag(&req.id);
    loop {
        let (version, agent) = store
            .get::<Agent>(&key)?
            .ok_or_else(|| Status::not_found(format!("no agent {:?}", req.id)))?;
        if state_of(&agent) == AgentState::Ready as i32 && !req.force {
            return Err(Status::failed_precondition(
                "the agent is READY; stop it first or pass force",
            ));
        }
        let mut txn = TxnBuilder::new()
            .require_version(&key, version)
            .delete_tagged(&key, [tag.clone()]);
        let tasks = store
            .read_off_thread(|store| store.list::<Task>(keys::TASKS))
            .await?;
        for (v, task) in tasks {
            if task.agent_id == req.id {
                let tkey = keys::task(&task.id);
                txn = txn
                    .require_version(&tkey, v)
                    .delete_tagged(tkey, [tag.clone()]);
            }
        }
        let ckey = keys::certificate(&req.id);
        if let Some((v, mut cert)) = store.get::<CertificateRecord>(&ckey)? {
            cert.revoked = true;
            txn = txn.require_version(&ckey, v).put(ckey, &cert);
        }
        if let Applied::Committed(_) = store.propose(txn.build()).await? {
            info!(agent = %req.id, "agent removed; its certificate is revoked");
            return Ok(());
        }
    }
}
