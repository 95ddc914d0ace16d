//! What a runtime hands the supervisor: the command to run, the bytes for its stdin,
//! and how to tell it is ready. Secrets travel only through `stdin`.

use std::{collections::HashMap, future::Future, path::PathBuf, pin::Pin, sync::Arc};

use lnswarm_common::api::{task_spec::Runtime, Task};

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("task {0} has no runtime in its spec")]
    NoRuntime(String),
    #[error("this agent cannot run {0} tasks")]
    Unsupported(&'static str),
    #[error("task needs secret {0}, which the agent does not hold yet")]
    MissingSecret(String),
    #[error("invalid task spec: {0}")]
    InvalidSpec(String),
    #[error("starting the process: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Secret bytes; never printed.
#[derive(Clone, Default)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} secret bytes>", self.0.len())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        // Best effort: do not leave secrets behind in freed memory.
        for b in self.0.iter_mut() {
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// The secrets this agent holds, in memory only.
pub type Secrets = HashMap<String, SecretBytes>;

/// A check that the child serves. Polled until it says yes or the child exits.
pub trait ReadinessCheck: Send + Sync {
    fn ready(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// How the supervisor decides a started child is RUNNING.
#[derive(Clone)]
pub enum Readiness {
    /// As soon as the process started.
    Started,
    /// When a TCP connection to this address succeeds.
    TcpConnect(String),
    /// When a runtime-specific check passes (for example, the Node API answers).
    Check(Arc<dyn ReadinessCheck>),
}

/// Everything needed to start one task's process.
#[derive(Clone)]
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Written to the child's stdin, which is then closed. The only way secrets
    /// reach a child.
    pub stdin: SecretBytes,
    pub readiness: Readiness,
    /// Where the task serves once RUNNING (reported in its status), if anywhere.
    pub endpoint: String,
    /// A hosted node's Lightning address (reported with the endpoint).
    pub lightning_addr: String,
    /// The version of the program, when known (reported with the endpoint).
    pub version: String,
    /// When set, the child starts (and restarts) only while this lease holds: a
    /// hosted node must not start on an agent that may have lost it.
    pub lease: Option<std::sync::Arc<crate::lease::AgentLease>>,
    /// The task's log is `<log dir>/<log_name>.log`: a hosted node's is named by
    /// its node id (what operators search for), so its successive tasks append to
    /// one file; other tasks' by task id.
    pub log_name: String,
}

/// Turns a task into a launch plan. Implemented by [`super::CommandRuntime`] and by
/// the hosted-node runtime.
pub trait TaskRuntime: Send + Sync {
    fn plan(&self, task: &Task, secrets: &Secrets) -> Result<LaunchPlan, ExecutorError>;
}

/// Picks the runtime for a task by its spec.
#[derive(Clone)]
pub struct Runtimes {
    pub command: Arc<dyn TaskRuntime>,
    /// Set by the hosted-node runtime; `None` refuses hosted-node tasks.
    pub hosted_node: Option<Arc<dyn TaskRuntime>>,
}

impl Runtimes {
    pub fn plan(&self, task: &Task, secrets: &Secrets) -> Result<LaunchPlan, ExecutorError> {
        match task.spec.as_ref().and_then(|s| s.runtime.as_ref()) {
            Some(Runtime::Command(_)) => self.command.plan(task, secrets),
            Some(Runtime::HostedNode(_)) => self
                .hosted_node
                .as_ref()
                .ok_or(ExecutorError::Unsupported("hosted-node"))?
                .plan(task, secrets),
            None => Err(ExecutorError::NoRuntime(task.id.clone())),
        }
    }
}
