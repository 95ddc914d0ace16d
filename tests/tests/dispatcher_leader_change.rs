//! Three managers; kill -9 the leader. Agents reconnect to the new leader, none is
//! marked DOWN on the way (they are UNKNOWN until they return), their running tasks
//! keep running with the same pids, and new work still reaches them.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use lnswarm_common::{
    api::{
        task_spec::Runtime, AgentState, ClusterSettingsUpdate, CommandSpec, CreateTaskRequest,
        GetTaskRequest, ListAgentsRequest, TaskSpec, TaskState, UpdateClusterSettingsRequest,
    },
    ids::now_unix_ms,
};
use lnswarm_tests::{agents::TestAgent, cluster::ManagerCluster, wait};

fn sleeper(agent: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        spec: Some(TaskSpec {
            runtime: Some(Runtime::Command(CommandSpec {
                args: vec!["sleep".into(), "600".into()],
                env: Default::default(),
            })),
            secret_ids: vec![],
        }),
        agent_id: agent.into(),
        secrets: vec![],
    }
}

/// (state, since) of every agent, read through any manager that answers.
async fn agent_states(cluster: &ManagerCluster) -> Option<Vec<(String, i32, i64)>> {
    for i in cluster.running() {
        let Some(mut c) = cluster.control(i).await else {
            continue;
        };
        if let Ok(r) = c.list_agents(ListAgentsRequest {}).await {
            return Some(
                r.into_inner()
                    .agents
                    .into_iter()
                    .map(|a| {
                        let s = a.status.unwrap_or_default();
                        (a.id, s.state, s.since_unix_ms)
                    })
                    .collect(),
            );
        }
    }
    None
}

/// (state, pid) of a task, read through any manager that answers.
async fn task_state(cluster: &ManagerCluster, id: &str) -> Option<(i32, u32)> {
    for i in cluster.running() {
        let Some(mut c) = cluster.control(i).await else {
            continue;
        };
        if let Ok(t) = c.get_task(GetTaskRequest { id: id.into() }).await {
            let s = t.into_inner().status.unwrap_or_default();
            return Some((s.state, s.pid));
        }
    }
    None
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_agents_move_to_the_new_leader_and_tasks_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ManagerCluster::start(dir.path(), 3, &[]).await;
    let leader = cluster.leader().await;
    cluster
        .control(leader)
        .await
        .unwrap()
        .update_cluster_settings(UpdateClusterSettingsRequest {
            update: Some(ClusterSettingsUpdate {
                heartbeat_period_ms: Some(500),
                heartbeat_grace_multiplier: Some(3),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

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
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    wait::until("both agents READY", Duration::from_secs(30), || async {
        let states = agent_states(&cluster).await?;
        ids.iter()
            .all(|id| {
                states
                    .iter()
                    .any(|(a, s, _)| a == id && *s == AgentState::Ready as i32)
            })
            .then_some(())
    })
    .await;
    // Each agent learned every manager from its session.
    for a in &agents {
        wait::until(
            "the agent to save the manager list",
            Duration::from_secs(10),
            || async {
                let config: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(a.data_dir.join("agent.json")).ok()?,
                )
                .ok()?;
                (config["managers"].as_array()?.len() == 3).then_some(())
            },
        )
        .await;
    }

    let mut tasks = Vec::new();
    for id in &ids {
        let t = cluster
            .control(leader)
            .await
            .unwrap()
            .create_task(sleeper(id))
            .await
            .unwrap()
            .into_inner();
        tasks.push(t.id);
    }
    let mut pids = Vec::new();
    for t in &tasks {
        let pid = wait::until("task RUNNING", Duration::from_secs(30), || async {
            let (state, pid) = task_state(&cluster, t).await?;
            (state == TaskState::Running as i32 && pid != 0).then_some(pid)
        })
        .await;
        pids.push(pid);
    }

    // Watch every state every agent shows, through the failover.
    let seen_down = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen_down, stop) = (seen_down.clone(), stop.clone());
        let addrs: Vec<String> = cluster.managers.iter().map(|m| m.addr.clone()).collect();
        let operator = cluster.operator();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for addr in &addrs {
                    let tls = operator.client_tls().unwrap();
                    let Ok(ch) = lnswarm_common::tls::connect(
                        addr,
                        &tls,
                        lnswarm_common::pki::Role::Manager,
                    )
                    .await
                    else {
                        continue;
                    };
                    let mut c = lnswarm_common::api::control_client::ControlClient::new(ch);
                    if let Ok(r) = c.list_agents(ListAgentsRequest {}).await {
                        for a in r.into_inner().agents {
                            if a.status.map(|s| s.state) == Some(AgentState::Down as i32) {
                                seen_down.lock().unwrap().push(a.id);
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let killed_at = now_unix_ms();
    cluster.kill9(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);

    // Both agents hold a session with the new leader: READY since after the kill.
    wait::until(
        "both agents READY on the new leader",
        Duration::from_secs(60),
        || async {
            let states = agent_states(&cluster).await?;
            ids.iter()
                .all(|id| {
                    states.iter().any(|(a, s, since)| {
                        a == id && *s == AgentState::Ready as i32 && *since > killed_at
                    })
                })
                .then_some(())
        },
    )
    .await;
    // Stay a few TTLs longer: nobody drops to DOWN afterwards either.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let down = seen_down.lock().unwrap().clone();
    assert!(
        down.is_empty(),
        "agents marked DOWN during the failover: {down:?}"
    );

    // Running tasks kept running: same pids, alive, still RUNNING.
    for (t, pid) in tasks.iter().zip(&pids) {
        assert!(alive(*pid), "task {t}'s process {pid} still runs");
        let (state, now_pid) = task_state(&cluster, t).await.unwrap();
        assert_eq!(state, TaskState::Running as i32);
        assert_eq!(now_pid, *pid, "not restarted");
    }

    // New work reaches an agent through the new leader.
    let t = cluster
        .control(new_leader)
        .await
        .unwrap()
        .create_task(sleeper(&ids[0]))
        .await
        .unwrap()
        .into_inner();
    wait::until(
        "a task created after the failover to run",
        Duration::from_secs(30),
        || async {
            let (state, pid) = task_state(&cluster, &t.id).await?;
            (state == TaskState::Running as i32 && pid != 0).then_some(())
        },
    )
    .await;
}
