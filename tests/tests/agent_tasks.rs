//! The agent runs command tasks as supervised children: RUNNING with a pid, restarted
//! after a crash, stopped and removed on `task rm`, a clean exit is COMPLETE. A task's
//! secret reaches it through stdin only (not argv, environment or any file the agent
//! writes). A killed and restarted agent stops the child it left behind and runs the
//! task again.

use std::{path::Path, time::Duration};

use lnswarm_tests::{
    agents::{agent_state, create_task, ctl_json, set_heartbeat, task, TestAgent},
    manager::TestManager,
    process::run,
    wait,
};
use serde_json::Value;

fn alive(pid: u64) -> bool {
    // Gone, or a zombie waiting to be reaped.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn running(m: &TestManager, id: &str, not_pid: u64) -> Value {
    wait::until(
        &format!("task {id} RUNNING with a new pid"),
        Duration::from_secs(30),
        || async {
            task(m, id).filter(|t| {
                t["state"] == "RUNNING"
                    && t["pid"].as_u64().unwrap_or(0) != 0
                    && t["pid"] != not_pid
            })
        },
    )
    .await
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[tokio::test]
async fn command_tasks_run_restart_stop_and_survive_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    set_heartbeat(&m, 500, 3).await;
    let mut agent = TestAgent::join(&m, dir.path(), "agent-t");
    agent.start();
    wait::until("agent READY", Duration::from_secs(20), || async {
        (agent_state(&m, &agent.id).as_deref() == Some("READY")).then_some(())
    })
    .await;

    // A task with a secret: the child reads it from stdin and writes its digest.
    let secret = b"correct horse battery staple 7f3a";
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, secret).unwrap();
    let out = dir.path().join("digest.txt");
    let script = format!(
        "read s; printf %s \"$s\" | sha256sum > {}; exec sleep 600",
        out.display()
    );
    let t1 = create_task(
        &m,
        Some(&agent.id),
        Some(&secret_file),
        &["sh", "-c", &script],
    );
    let first = running(&m, &t1, 0).await;
    let pid1 = first["pid"].as_u64().unwrap();
    assert_eq!(first["agent_id"], agent.id.as_str());
    let digest = wait::until(
        "the child to read its secret",
        Duration::from_secs(10),
        || async { std::fs::read_to_string(&out).ok().filter(|s| s.len() >= 64) },
    )
    .await;
    let expected = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(secret))
    };
    assert_eq!(
        &digest[..64],
        expected,
        "the secret reached the child through stdin"
    );
    let cmdline = std::fs::read(format!("/proc/{pid1}/cmdline")).unwrap_or_default();
    let environ = std::fs::read(format!("/proc/{pid1}/environ")).unwrap_or_default();
    for (what, bytes) in [("argv", &cmdline), ("environment", &environ)] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "secret in the child's {what}"
        );
    }
    std::fs::remove_file(&secret_file).unwrap();
    // Not in anything the agent writes (its state, task logs) nor in any process log.
    // (The manager's replicated store holds secrets; that is where they live.)
    let mut leaks = files_containing(&agent.data_dir, secret);
    leaks.extend(
        files_containing(dir.path(), secret)
            .into_iter()
            .filter(|p| p.ends_with(".log")),
    );
    assert!(leaks.is_empty(), "secret found in files: {leaks:?}");

    // A crashed child is restarted.
    run({
        let mut c = std::process::Command::new("kill");
        c.args(["-9", &pid1.to_string()]);
        c
    });
    let second = running(&m, &t1, pid1).await;
    let pid2 = second["pid"].as_u64().unwrap();
    assert!(alive(pid2));

    // A clean exit is COMPLETE and not restarted.
    let t2 = create_task(&m, Some(&agent.id), None, &["true"]);
    wait::until("task COMPLETE", Duration::from_secs(30), || async {
        task(&m, &t2).filter(|t| t["state"] == "COMPLETE")
    })
    .await;

    // kill -9 the agent: the child outlives it; the restarted agent stops that child
    // and runs the task again.
    agent.kill9();
    assert!(alive(pid2), "children outlive a killed agent");
    agent.start();
    let third = running(&m, &t1, pid2).await;
    let pid3 = third["pid"].as_u64().unwrap();
    wait::until(
        "the left-behind child to be stopped",
        Duration::from_secs(10),
        || async { (!alive(pid2)).then_some(()) },
    )
    .await;
    assert!(alive(pid3));

    // `task rm`: the child is stopped (SIGTERM) and the task disappears.
    let mut c = m.ctl();
    c.args(["task", "rm", &t1]);
    let (status, _, err) = run(c);
    assert!(status.success(), "task rm: {err}");
    wait::until("task removed", Duration::from_secs(30), || async {
        task(&m, &t1).is_none().then_some(())
    })
    .await;
    wait::until("child stopped", Duration::from_secs(10), || async {
        (!alive(pid3)).then_some(())
    })
    .await;
    let listed = ctl_json(&m, &["task", "ls"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != t1.as_str()));
}
