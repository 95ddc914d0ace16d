//! Starting and stopping one child: its own process group (so a stop reaches its
//! children too), stdin from a pipe, stdout and stderr to a log file, and SIGTERM then
//! SIGKILL after a grace. A started child is recorded by pid and start time, so an
//! agent that restarts can stop a child it left behind without hitting a reused pid.

use std::{path::Path, process::Stdio, time::Duration};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::{io::AsyncWriteExt, process::Child};

use super::plan::{ExecutorError, LaunchPlan};

/// The kernel's start time of `pid` (clock ticks since boot), to tell a pid apart
/// from a later process that reuses it. `None` once it has exited.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // A zombie is gone as far as we care.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Starts the plan's process and feeds its stdin.
pub async fn start(plan: &LaunchPlan, log: &Path) -> Result<Child, ExecutorError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = tokio::process::Command::new(&plan.program);
    cmd.args(&plan.args)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &plan.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = plan.stdin.clone();
        // A child that never reads its stdin must not block the supervisor.
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes.0).await;
            let _ = stdin.shutdown().await;
        });
    }
    Ok(child)
}

/// SIGTERM to the child's group, then SIGKILL if it has not exited after `grace`.
pub async fn stop(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Anything left in the group (grandchildren) goes too.
    let _ = killpg(group, Signal::SIGKILL);
}

/// SIGKILL to the child's group at once (a hosted node whose lease ran out).
pub fn kill_now(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Stops a child a previous run of the agent left behind, if `pid` still names the
/// process that was started at `started`.
pub async fn kill_stale(pid: u32, started: u64, grace: Duration) {
    if pid == 0 || start_time(pid) != Some(started) {
        return;
    }
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while start_time(pid) == Some(started) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if start_time(pid) == Some(started) {
        let _ = killpg(group, Signal::SIGKILL);
    }
}
