//! `lnswarmctl task`: list and inspect tasks; create and remove generic command tasks
//! (the executor's interface, for operators and tests).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use lnswarm_common::api::{
    task_spec::Runtime, CommandSpec, CreateTaskRequest, GetTaskRequest, ListTasksRequest,
    RemoveTaskRequest, Secret, Task, TaskSpec, TaskState,
};
use serde_json::{json, Value};

use crate::{
    connection::Connection,
    output::{print_json, print_table, Format},
};

#[derive(Subcommand)]
pub enum TaskCommand {
    /// List tasks.
    Ls {
        /// Only tasks on this agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one task.
    Inspect {
        /// The task's id, or a unique prefix of it.
        id: String,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Run a command as a task: `task create [--agent ID] -- PROGRAM ARGS...`.
    /// Prints the new task's id.
    Create {
        /// Agent to run on; otherwise any READY, ACTIVE agent.
        #[arg(long)]
        agent: Option<String>,
        /// A file whose contents become a secret of the task, written to the task's
        /// stdin (never to argv, environment or disk). Repeatable.
        #[arg(long)]
        secret_file: Vec<PathBuf>,
        /// Extra environment, NAME=VALUE. Repeatable.
        #[arg(long)]
        env: Vec<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a task and remove it once stopped.
    Rm {
        /// The task's id, or a unique prefix of it.
        id: String,
    },
}

/// A task state's SwarmKit name.
pub fn state_name(state: i32) -> String {
    TaskState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("TASK_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| state.to_string())
}

pub fn task_json(t: &Task) -> Value {
    let s = t.status.clone().unwrap_or_default();
    let spec = t.spec.clone().unwrap_or_default();
    let command = match &spec.runtime {
        Some(Runtime::Command(c)) => json!(c.args),
        _ => Value::Null,
    };
    json!({
        "id": t.id,
        "agent_id": t.agent_id,
        "node_id": t.node_id,
        "desired_state": state_name(t.desired_state),
        "state": state_name(s.state),
        "message": s.message,
        "err": s.err,
        "pid": s.pid,
        "endpoint": s.endpoint,
        "timestamp_unix_ms": s.timestamp_unix_ms,
        "updated": crate::output::ms_time(s.timestamp_unix_ms),
        "command": command,
        "secret_ids": spec.secret_ids,
        "created_unix_ms": t.created_unix_ms,
        "created": crate::output::ms_time(t.created_unix_ms),
        "store_version": t.version.map(|v| v.index).unwrap_or(0),
    })
}

pub async fn run(conn: &Connection, cmd: TaskCommand) -> Result<()> {
    let mut control = conn.control().await?;
    match cmd {
        TaskCommand::Ls { agent, format } => {
            let tasks = control
                .list_tasks(ListTasksRequest {
                    agent_id: agent.unwrap_or_default(),
                    node_id: String::new(),
                })
                .await?
                .into_inner()
                .tasks;
            match format {
                Format::Json => print_json(&Value::Array(tasks.iter().map(task_json).collect())),
                Format::Table => print_table(
                    &["ID", "AGENT", "DESIRED", "STATE", "PID", "MESSAGE"],
                    &tasks
                        .iter()
                        .map(|t| {
                            let s = t.status.clone().unwrap_or_default();
                            vec![
                                t.id.clone(),
                                t.agent_id.clone(),
                                state_name(t.desired_state),
                                state_name(s.state),
                                s.pid.to_string(),
                                s.message,
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        TaskCommand::Inspect { id, format } => {
            let id = crate::id_prefix::task(&mut control, &id).await?;
            let t = control.get_task(GetTaskRequest { id }).await?.into_inner();
            let v = task_json(&t);
            crate::output::print_object(format, &v);
        }
        TaskCommand::Create {
            agent,
            secret_file,
            env,
            command,
        } => {
            let mut secrets = Vec::new();
            for path in secret_file {
                let data =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                secrets.push(Secret {
                    id: String::new(),
                    version: None,
                    data,
                });
            }
            let env = env
                .into_iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--env {kv:?} is not NAME=VALUE"))
                })
                .collect::<Result<_>>()?;
            let task = control
                .create_task(CreateTaskRequest {
                    spec: Some(TaskSpec {
                        runtime: Some(Runtime::Command(CommandSpec { args: command, env })),
                        secret_ids: vec![],
                    }),
                    agent_id: agent.unwrap_or_default(),
                    secrets,
                })
                .await?
                .into_inner();
            println!("{}", task.id);
        }
        TaskCommand::Rm { id } => {
            let id = crate::id_prefix::task(&mut control, &id).await?;
            control
                .remove_task(RemoveTaskRequest { id: id.clone() })
                .await?;
            println!("{id}");
        }
    }
    Ok(())
}
