//! A worker certificate cannot open another agent's session, read its assignments or
//! report on its tasks: the agent id always comes from the certificate, and a session
//! id only counts for the agent that opened it.

use std::time::Duration;

use lnswarm_common::api::{
    assignment::Item, control_client::ControlClient, dispatcher_client::DispatcherClient,
    task_spec::Runtime, AssignmentsRequest, AssignmentsType, CommandSpec, CreateTaskRequest,
    GetTaskRequest, HeartbeatRequest, SessionRequest, TaskSpec, TaskState, TaskStatus,
    TaskStatusUpdate, UpdateTaskStatusRequest,
};
use lnswarm_tests::{
    agents::{description, worker_credentials, HandSession},
    manager::TestManager,
};
use tonic::Code;

#[tokio::test]
async fn a_worker_cannot_act_for_another_agent() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    let op = m.operator();
    let mut control = ControlClient::new(m.channel_as(Some(&op)).await);
    let (a_id, a_creds) = worker_credentials(&m).await;
    let (b_id, b_creds) = worker_credentials(&m).await;
    let a = HandSession::open(&m.addr, &a_creds, "host-a").await;
    let b = HandSession::open(&m.addr, &b_creds, "host-b").await;
    assert_eq!(a.first.agent.as_ref().unwrap().id, a_id);
    assert_eq!(
        b.first.agent.as_ref().unwrap().id,
        b_id,
        "B's session is B's, whatever it asks"
    );

    let task = control
        .create_task(CreateTaskRequest {
            spec: Some(TaskSpec {
                runtime: Some(Runtime::Command(CommandSpec {
                    args: vec!["sleep".into(), "60".into()],
                    env: Default::default(),
                })),
                secret_ids: vec![],
            }),
            agent_id: a_id.clone(),
            secrets: vec![],
        })
        .await
        .unwrap()
        .into_inner();

    let mut as_b = b.client.clone();
    // B presenting A's session id: not B's session.
    let e = as_b
        .heartbeat(HeartbeatRequest {
            session_id: a.session_id(),
            leaving: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = as_b
        .assignments(AssignmentsRequest {
            session_id: a.session_id(),
            last_results_in: String::new(),
        })
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let report = |session_id: String| UpdateTaskStatusRequest {
        session_id,
        updates: vec![TaskStatusUpdate {
            task_id: task.id.clone(),
            status: Some(TaskStatus {
                state: TaskState::Failed as i32,
                message: "forged".into(),
                ..Default::default()
            }),
        }],
    };
    let e = as_b
        .update_task_status(report(a.session_id()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // B's own session, A's task: refused.
    let e = as_b
        .update_task_status(report(b.session_id()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let stored = control
        .get_task(GetTaskRequest {
            id: task.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored.status.unwrap().state,
        TaskState::Assigned as i32,
        "A's task is untouched"
    );

    // B's assignments hold nothing of A's; A's hold the task.
    let mut sb = as_b
        .assignments(AssignmentsRequest {
            session_id: b.session_id(),
            last_results_in: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = sb.message().await.unwrap().unwrap();
    assert_eq!(first.r#type, AssignmentsType::Complete as i32);
    assert!(first.changes.is_empty(), "B sees none of A's tasks");
    let mut sa = a
        .client
        .clone()
        .assignments(AssignmentsRequest {
            session_id: a.session_id(),
            last_results_in: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = sa.message().await.unwrap().unwrap();
    let ids: Vec<String> = first
        .changes
        .iter()
        .filter_map(|c| match c.assignment.as_ref()?.item.as_ref()? {
            Item::Task(t) => Some(t.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ids, vec![task.id.clone()]);
    // Nothing more reaches B while A's task changes.
    control
        .remove_task(lnswarm_common::api::RemoveTaskRequest {
            id: task.id.clone(),
        })
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(800), sb.message())
            .await
            .is_err(),
        "B's stream stays quiet"
    );

    // An operator certificate may not open a session at all.
    let mut as_op = DispatcherClient::new(m.channel_as(Some(&op)).await);
    let e = as_op
        .session(SessionRequest {
            description: Some(description("op")),
            session_id: String::new(),
        })
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

#[tokio::test]
async fn replaced_sessions_are_invalid_and_reregistration_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    let (_, creds) = worker_credentials(&m).await;
    let mut first = HandSession::open(&m.addr, &creds, "h").await;
    let second = HandSession::open(&m.addr, &creds, "h").await;
    // The first session's stream ends and its calls are refused.
    let end = first.stream.message().await;
    assert!(
        matches!(&end, Err(s) if s.code() == Code::Aborted) || matches!(end, Ok(None)),
        "replaced session's stream ends: {end:?}"
    );
    let e = second
        .client
        .clone()
        .heartbeat(HeartbeatRequest {
            session_id: first.session_id(),
            leaving: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let _third = HandSession::open(&m.addr, &creds, "h").await;
    // A fourth registration within 8 s is refused.
    let e = second
        .client
        .clone()
        .session(SessionRequest {
            description: Some(description("h")),
            session_id: String::new(),
        })
        .await
        .map(|_| ())
        .expect_err("rate limited");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    // Bad input gets a clear code.
    let e = second
        .client
        .clone()
        .session(SessionRequest {
            description: None,
            session_id: String::new(),
        })
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}
