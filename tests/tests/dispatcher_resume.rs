//! A task placed just before a leader kill still gets its secrets. The agent resumes
//! its assignments with the new leader from the index it last saw; a task created in
//! the gap names a secret written long before (as a hosted node's seed is written at
//! registration). Once it was counted as already held and never sent, and the task
//! waited for it forever. Killed at several delays after the write, the task runs
//! every time, with the secret's bytes on its stdin.

use std::time::Duration;

use lnswarm_common::api::{
    task_spec::Runtime, CommandSpec, CreateTaskRequest, GetTaskRequest, Secret, TaskSpec, TaskState,
};
use lnswarm_tests::{agents::TestAgent, cluster::ManagerCluster, wait};

/// A task that writes the first line of its stdin (its first secret) to `out`.
fn reader(
    agent: &str,
    out: &std::path::Path,
    secret_ids: Vec<String>,
    secrets: Vec<Secret>,
) -> CreateTaskRequest {
    CreateTaskRequest {
        spec: Some(TaskSpec {
            runtime: Some(Runtime::Command(CommandSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "read s; printf %s \"$s\" > {}; exec sleep 600",
                        out.display()
                    ),
                ],
                env: Default::default(),
            })),
            secret_ids,
        }),
        agent_id: agent.into(),
        secrets,
    }
}

async fn task_state(cluster: &ManagerCluster, id: &str) -> Option<(i32, String)> {
    for i in cluster.running() {
        let Some(mut c) = cluster.control(i).await else {
            continue;
        };
        if let Ok(t) = c.get_task(GetTaskRequest { id: id.into() }).await {
            let s = t.into_inner().status.unwrap_or_default();
            return Some((s.state, s.message));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_placed_just_before_a_leader_kill_gets_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let leader = cluster.leader().await;
    let token = cluster.worker_token(leader).await;
    let mut agents: Vec<TestAgent> = (0..2)
        .map(|i| {
            TestAgent::join_at(
                &cluster.managers[leader].addr,
                &token,
                dir.path(),
                &format!("agent-{i}"),
            )
        })
        .collect();
    for a in agents.iter_mut() {
        a.start();
    }
    let (a, b) = (agents[0].id.clone(), agents[1].id.clone());

    // The secret is written early, with a task on the other agent.
    let first_out = dir.path().join("first.out");
    let mut control = wait::until("a Control API", Duration::from_secs(30), || async {
        cluster.control(leader).await
    })
    .await;
    wait::until("agent b to take a task", Duration::from_secs(30), || {
        let mut control = control.clone();
        let req = reader(
            &b,
            &first_out,
            vec![],
            vec![Secret {
                id: "the-seed".into(),
                version: None,
                data: b"seed-bytes".to_vec(),
            }],
        );
        async move { control.create_task(req).await.ok() }
    })
    .await;

    for (round, delay_ms) in [0u64, 50, 150].into_iter().enumerate() {
        let leader = cluster.leader().await;
        control = wait::until("a Control API", Duration::from_secs(30), || async {
            cluster.control(leader).await
        })
        .await;
        let out = dir.path().join(format!("round-{round}.out"));
        // Agent a must be in session with this leader before the race.
        let task = wait::until("agent a to take a task", Duration::from_secs(60), || {
            let mut control = control.clone();
            let req = reader(&a, &out, vec!["the-seed".into()], vec![]);
            async move { control.create_task(req).await.ok() }
        })
        .await
        .into_inner();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        cluster.kill9(leader);
        let _ = cluster.leader().await;

        let wrote = wait::until(
            &format!("round {round} ({delay_ms} ms): the task to read its secret"),
            Duration::from_secs(60),
            || async { std::fs::read_to_string(&out).ok().filter(|s| !s.is_empty()) },
        )
        .await;
        assert_eq!(wrote, "seed-bytes", "round {round}: the secret's bytes");
        let (state, message) = wait::until("the task RUNNING", Duration::from_secs(30), || async {
            task_state(&cluster, &task.id)
                .await
                .filter(|(s, _)| *s == TaskState::Running as i32)
        })
        .await;
        assert_eq!(state, TaskState::Running as i32, "{message}");
        // Back to three managers for the next round.
        cluster.restart(leader, &[]);
    }
}
