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
use tracing::info;

use crate::store::{keys, secrets, Applied, Attempt, Store, StoreError, TxnBuilder};

/// Largest secret a task may carry.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Why a task or agent call was refused; `service.rs` maps each to its gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("spec is required")]
    NoSpec,
    #[error("a command task needs a program")]
    NoProgram,
    #[error("hosted-node tasks come from the Scheduler; CreateTask takes command tasks")]
    NotACommand,
    #[error("spec.runtime is required")]
    NoRuntime,
    /// No agent can take the task (placement's reason).
    #[error("{0}")]
    NowhereToPlace(String),
    #[error("a secret holds at most {MAX_SECRET_BYTES} bytes")]
    SecretTooLarge,
    #[error("a secret with that id exists")]
    SecretExists,
    #[error("no agent {0:?}")]
    NoAgent(String),
    #[error("no secret {0:?}")]
    NoSecret(String),
    #[error("no task {0:?}")]
    NoTask(String),
    #[error("the agent is READY; stop it first or pass force")]
    AgentReady,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn state_of(agent: &Agent) -> i32 {
    agent.status.as_ref().map(|s| s.state).unwrap_or_default()
}

pub async fn create_task(store: &Store, req: CreateTaskRequest) -> Result<Task, TaskError> {
    let mut spec = req.spec.ok_or(TaskError::NoSpec)?;
    match &spec.runtime {
        Some(lnswarm_common::api::task_spec::Runtime::Command(c)) if !c.args.is_empty() => {}
        Some(lnswarm_common::api::task_spec::Runtime::Command(_)) => {
            return Err(TaskError::NoProgram)
        }
        Some(_) => return Err(TaskError::NotACommand),
        None => return Err(TaskError::NoRuntime),
    }
    let agent_id = if req.agent_id.is_empty() {
        store
            .read_off_thread(crate::placement::choose_from)
            .await?
            .map_err(TaskError::NowhereToPlace)?
    } else {
        if store.get::<Agent>(&keys::agent(&req.agent_id))?.is_none() {
            return Err(TaskError::NoAgent(req.agent_id));
        }
        req.agent_id
    };
    let tag = keys::agent_tag(&agent_id);
    let mut txn = TxnBuilder::new();
    let mut created = Vec::new();
    for secret in &req.secrets {
        if secret.data.len() > MAX_SECRET_BYTES {
            return Err(TaskError::SecretTooLarge);
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
            return Err(TaskError::NoSecret(id.clone()));
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
        // A single check, not retried: the ids were the caller's to choose.
        Applied::CheckFailed(_) => Err(TaskError::SecretExists),
    }
}

pub async fn remove_task(store: &Store, req: RemoveTaskRequest) -> Result<(), TaskError> {
    let key = keys::task(&req.id);
    let (deleted, _) = store
        .update("the task", |store| {
            let (version, mut task) = store
                .get::<Task>(&key)?
                .ok_or_else(|| TaskError::NoTask(req.id.clone()))?;
            let tag = keys::agent_tag(&task.agent_id);
            let stopped = task
                .status
                .as_ref()
                .is_some_and(|s| s.state >= TaskState::Complete as i32);
            let agent_gone = task.agent_id.is_empty()
                || store.get::<Agent>(&keys::agent(&task.agent_id))?.is_none();
            let txn = TxnBuilder::new().require_version(&key, version);
            let deleted = stopped || agent_gone;
            let txn = if deleted {
                txn.delete_tagged(&key, [tag])
            } else {
                task.desired_state = TaskState::Shutdown as i32;
                txn.put_tagged(&key, &task, [tag])
            };
            Ok::<_, TaskError>(Attempt::Propose(txn.build(), deleted))
        })
        .await?;
    info!(task = %req.id, deleted, "task removal requested");
    Ok(())
}

pub async fn remove_agent(store: &Store, req: RemoveAgentRequest) -> Result<(), TaskError> {
    let key = keys::agent(&req.id);
    let tag = keys::agent_tag(&req.id);
    store
        .update("the agent", |store| {
            let (version, agent) = store
                .get::<Agent>(&key)?
                .ok_or_else(|| TaskError::NoAgent(req.id.clone()))?;
            if state_of(&agent) == AgentState::Ready as i32 && !req.force {
                return Err(TaskError::AgentReady);
            }
            let mut txn = TxnBuilder::new()
                .require_version(&key, version)
                .delete_tagged(&key, [tag.clone()]);
            // From the index of tasks by agent: no scan of every task.
            for (tkey, task) in store.state().tasks_of_agent(&req.id)? {
                txn = txn
                    .require_version(&tkey, task.version)
                    .delete_tagged(tkey, [tag.clone()]);
            }
            let ckey = keys::certificate(&req.id);
            if let Some((v, mut cert)) = store.get::<CertificateRecord>(&ckey)? {
                cert.revoked = true;
                txn = txn.require_version(&ckey, v).put(ckey, &cert);
            }
            Ok(Attempt::Propose(txn.build(), ()))
        })
        .await?;
    info!(agent = %req.id, "agent removed; its certificate is revoked");
    Ok(())
}
