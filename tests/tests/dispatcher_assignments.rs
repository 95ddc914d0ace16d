//! A hand-driven agent (a worker certificate over real mTLS) follows its Assignments
//! through 1 000 task changes: a COMPLETE set first, then INCREMENTAL messages each
//! applying to the previous `results_in`, with no change lost or repeated. Reopening
//! the stream with the last `results_in`, in the same session and in a new one, yields
//! an INCREMENTAL continuation carrying only what changed meanwhile.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use lnswarm_common::api::{
    assignment::Item, control_client::ControlClient, task_spec::Runtime, AssignmentAction,
    AssignmentsMessage, AssignmentsRequest, AssignmentsType, CommandSpec, CreateTaskRequest,
    RemoveTaskRequest, TaskSpec, TaskState, TaskStatus, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use lnswarm_tests::{
    agents::{worker_credentials, HandSession},
    manager::TestManager,
    wait,
};
use tonic::{transport::Channel, Code};

const CREATES: usize = 400;
const REMOVES: usize = 300;

/// What the hand-driven agent holds, rebuilt only from the stream.
#[derive(Default)]
struct Follower {
    last_results_in: Option<String>,
    messages: usize,
    completes: usize,
    /// task id -> (version, desired state)
    held: HashMap<String, (u64, i32)>,
    /// task id -> every version received in an UPDATE.
    updates: HashMap<String, Vec<u64>>,
    removes: HashMap<String, usize>,
    errors: Vec<String>,
}

impl Follower {
    fn apply(&mut self, m: AssignmentsMessage) {
        self.messages += 1;
        if m.r#type == AssignmentsType::Complete as i32 {
            self.completes += 1;
            self.held.clear();
        } else if self.last_results_in.as_deref() != Some(m.applies_to.as_str()) {
            self.errors.push(format!(
                "chain broken: applies_to {:?} after results_in {:?}",
                m.applies_to, self.last_results_in
            ));
        }
        if let Some(last) = &self.last_results_in {
            let (a, b): (u64, u64) = (last.parse().unwrap(), m.results_in.parse().unwrap());
            if b <= a && !(m.changes.is_empty() && b == a) {
                self.errors.push(format!("results_in went from {a} to {b}"));
            }
        }
        for c in m.changes {
            let Some(Item::Task(t)) = c.assignment.and_then(|a| a.item) else {
                continue;
            };
            if c.action == AssignmentAction::Remove as i32 {
                if self.held.remove(&t.id).is_none() {
                    self.errors
                        .push(format!("REMOVE of a task not held: {}", t.id));
                }
                *self.removes.entry(t.id).or_default() += 1;
            } else {
                let v = t.version.map(|v| v.index).unwrap_or(0);
                let seen = self.updates.entry(t.id.clone()).or_default();
                if seen.last().is_some_and(|last| *last >= v) {
                    self.errors.push(format!(
                        "task {} repeated or went back: {seen:?} then {v}",
                        t.id
                    ));
                }
                seen.push(v);
                self.held.insert(t.id, (v, t.desired_state));
            }
        }
        self.last_results_in = Some(m.results_in);
    }
}

fn command_task(agent: &str, n: usize) -> CreateTaskRequest {
    CreateTaskRequest {
        spec: Some(TaskSpec {
            runtime: Some(Runtime::Command(CommandSpec {
                args: vec!["sleep".into(), format!("{}", 1000 + n)],
                env: Default::default(),
            })),
            secret_ids: vec![],
        }),
        agent_id: agent.to_string(),
        secrets: vec![],
    }
}

async fn create_many(
    control: &ControlClient<Channel>,
    agent: &str,
    range: std::ops::Range<usize>,
) -> Vec<String> {
    futures::stream::iter(range)
        .map(|n| {
            let mut c = control.clone();
            let req = command_task(agent, n);
            async move {
                c.create_task(req)
                    .await
                    .expect("create task")
                    .into_inner()
                    .id
            }
        })
        .buffered(8)
        .collect()
        .await
}

async fn open(session: &HandSession, last: Option<&str>) -> tonic::Streaming<AssignmentsMessage> {
    session
        .client
        .clone()
        .assignments(AssignmentsRequest {
            session_id: session.session_id(),
            last_results_in: last.unwrap_or_default().to_string(),
        })
        .await
        .expect("open assignments")
        .into_inner()
}

fn follow(
    mut stream: tonic::Streaming<AssignmentsMessage>,
    f: Arc<Mutex<Follower>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            f.lock().unwrap().apply(m);
        }
    })
}

#[tokio::test]
async fn assignments_follow_1000_changes_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    let op = m.operator();
    let control = ControlClient::new(m.channel_as(Some(&op)).await);
    let (agent_id, creds) = worker_credentials(&m).await;
    let session = HandSession::open(&m.addr, &creds, "hand").await;
    assert_eq!(session.first.agent.as_ref().unwrap().id, agent_id);

    let f = Arc::new(Mutex::new(Follower::default()));
    let follower = follow(open(&session, None).await, f.clone());
    wait::until("the COMPLETE set", Duration::from_secs(10), || async {
        (f.lock().unwrap().completes == 1).then_some(())
    })
    .await;

    // 400 creations.
    let ids = create_many(&control, &agent_id, 0..CREATES).await;
    wait::until("400 tasks assigned", Duration::from_secs(60), || async {
        (f.lock().unwrap().held.len() == CREATES).then_some(())
    })
    .await;

    // 300 removals: desired state SHUTDOWN first.
    for id in &ids[..REMOVES] {
        control
            .clone()
            .remove_task(RemoveTaskRequest { id: id.clone() })
            .await
            .expect("remove task");
    }
    wait::until(
        "300 tasks to shut down",
        Duration::from_secs(60),
        || async {
            let f = f.lock().unwrap();
            let n = f
                .held
                .values()
                .filter(|(_, d)| *d == TaskState::Shutdown as i32)
                .count();
            (n == REMOVES).then_some(())
        },
    )
    .await;

    // The agent reports them stopped; the manager deletes them (300 REMOVEs).
    let mut client = session.client.clone();
    client
        .update_task_status(UpdateTaskStatusRequest {
            session_id: session.session_id(),
            updates: ids[..REMOVES]
                .iter()
                .map(|id| TaskStatusUpdate {
                    task_id: id.clone(),
                    status: Some(TaskStatus {
                        state: TaskState::Shutdown as i32,
                        message: "stopped".into(),
                        timestamp_unix_ms: lnswarm_common::ids::now_unix_ms(),
                        ..Default::default()
                    }),
                })
                .collect(),
        })
        .await
        .expect("report statuses");
    wait::until("300 tasks removed", Duration::from_secs(60), || async {
        (f.lock().unwrap().held.len() == CREATES - REMOVES).then_some(())
    })
    .await;
    // Let any stray message arrive before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    follower.abort();

    let last = {
        let f = f.lock().unwrap();
        assert!(
            f.errors.is_empty(),
            "chain errors: {:#?}",
            &f.errors[..f.errors.len().min(10)]
        );
        assert_eq!(f.completes, 1, "one COMPLETE, then only INCREMENTAL");
        assert!(f.messages > 1);
        // Every change seen exactly once: 400 creations and 300 SHUTDOWNs as UPDATEs,
        // 300 deletions as REMOVEs.
        let updates: usize = f.updates.values().map(Vec::len).sum();
        assert_eq!(updates, CREATES + REMOVES, "UPDATEs received");
        assert_eq!(
            f.removes.values().sum::<usize>(),
            REMOVES,
            "REMOVEs received"
        );
        for id in &ids[..REMOVES] {
            assert_eq!(f.updates[id].len(), 2, "created then shut down: {id}");
            assert_eq!(f.removes.get(id), Some(&1));
        }
        for id in &ids[REMOVES..] {
            assert_eq!(f.updates[id].len(), 1, "created once: {id}");
            assert_eq!(f.held[id].1, TaskState::Running as i32);
        }
        f.last_results_in.clone().unwrap()
    };

    // Changes while the agent is away...
    let more = create_many(&control, &agent_id, 1000..1005).await;
    // ...arrive as an INCREMENTAL continuation of the last results_in.
    let mut stream = open(&session, Some(&last)).await;
    let m1 = stream.message().await.unwrap().unwrap();
    assert_eq!(m1.r#type, AssignmentsType::Incremental as i32);
    assert_eq!(m1.applies_to, last);
    let got: Vec<String> = m1
        .changes
        .iter()
        .filter_map(|c| match c.assignment.as_ref()?.item.as_ref()? {
            Item::Task(t) => Some(t.id.clone()),
            _ => None,
        })
        .collect();
    let mut want = more.clone();
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "only what changed since");
    drop(stream);

    // Also across sessions: a new session resumes from the same point.
    let session2 = HandSession::open(&m.addr, &creds, "hand").await;
    let mut stream = open(&session2, Some(&last)).await;
    let m2 = stream.message().await.unwrap().unwrap();
    assert_eq!(m2.r#type, AssignmentsType::Incremental as i32);
    assert_eq!(m2.applies_to, last);
    assert_eq!(m2.changes.len(), more.len());
    // (Opening the session wrote the agent READY, so the index may have moved on.)
    assert!(m2.results_in.parse::<u64>().unwrap() >= m1.results_in.parse::<u64>().unwrap());

    // A resume point that is not a results_in is refused clearly; one the dispatcher
    // cannot continue from yields a COMPLETE set.
    let bad = session2
        .client
        .clone()
        .assignments(AssignmentsRequest {
            session_id: session2.session_id(),
            last_results_in: "not-a-version".into(),
        })
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut stream = open(&session2, Some("999999999999")).await;
    let m3 = stream.message().await.unwrap().unwrap();
    assert_eq!(m3.r#type, AssignmentsType::Complete as i32);
    assert_eq!(m3.changes.len(), CREATES - REMOVES + more.len());
}
