//! The generic runtime: run the program named in a task's `CommandSpec`. Its secrets
//! (spec.secret_ids, in order) are written to stdin, each followed by a newline.

use lnswarm_common::api::{task_spec::Runtime, Task};

use super::plan::{ExecutorError, LaunchPlan, Readiness, SecretBytes, Secrets, TaskRuntime};

#[derive(Default)]
pub struct CommandRuntime;

impl TaskRuntime for CommandRuntime {
    fn plan(&self, task: &Task, secrets: &Secrets) -> Result<LaunchPlan, ExecutorError> {
        let spec = task
            .spec
            .as_ref()
            .ok_or_else(|| ExecutorError::NoRuntime(task.id.clone()))?;
        let Some(Runtime::Command(cmd)) = &spec.runtime else {
            return Err(ExecutorError::InvalidSpec("not a command task".into()));
        };
        let (program, args) = cmd
            .args
            .split_first()
            .ok_or_else(|| ExecutorError::InvalidSpec("empty command".into()))?;
        let mut stdin = Vec::new();
        for id in &spec.secret_ids {
            let secret = secrets
                .get(id)
                .ok_or_else(|| ExecutorError::MissingSecret(id.clone()))?;
            stdin.extend_from_slice(&secret.0);
            stdin.push(b'\n');
        }
        Ok(LaunchPlan {
            program: program.into(),
            args: args.to_vec(),
            env: cmd
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: None,
            stdin: SecretBytes(stdin),
            readiness: Readiness::Started,
            endpoint: String::new(),
            lightning_addr: String::new(),
            version: String::new(),
            lease: None,
            log_name: task.id.clone(),
        })
    }
}
