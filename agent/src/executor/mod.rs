//! Process supervision: turns one assigned task into a supervised child process.
//!
//! The interface other runtimes plug into is [`TaskRuntime`]: given a task and the
//! secrets the agent holds, it returns a [`LaunchPlan`] (a command, the bytes to
//! write to the child's stdin, and a readiness check). [`CommandRuntime`] runs the
//! generic `CommandSpec`; hosted Lightning nodes add their own runtime and register
//! it in [`Runtimes`]. The supervisor ([`supervisor`]) starts the plan, reports every
//! state change, restarts a crashed child with backoff, and stops it with SIGTERM then
//! SIGKILL after a grace.

mod command;
mod plan;
mod process;
mod supervisor;

pub use command::CommandRuntime;
pub use plan::{
    ExecutorError, LaunchPlan, Readiness, ReadinessCheck, Runtimes, SecretBytes, Secrets,
    TaskRuntime,
};
pub use process::kill_stale;
pub use supervisor::{spawn_supervisor, Desired, StatusSink, Supervisor, SupervisorConfig};
