//! Fencing, with real processes: an agent frozen with SIGSTOP (as a partition looks
//! to the managers) has its node stop itself before the replacement starts on
//! another agent; thawed, the agent starts nothing for that node; and a write under
//! the old lease epoch, sent by hand with the old copy's own certificate, is refused
//! with FAILED_PRECONDITION and changes nothing. A node reaches only its own state.
//! Throughout, no node id ever runs in two processes.

use std::time::Duration;

use lnswarm_common::{
    api::{
        node_state_client::NodeStateClient, LoadNodeStateRequest, NodeStateKey, NodeStateOp,
        WriteNodeStateRequest,
    },
    credentials::Credentials,
    pki::Role,
    tls,
};
use lnswarm_tests::{
    agents::set_heartbeat,
    hosting::{DuplicateWatch, Hosted, HostingCluster},
    wait, Cluster,
};
use tonic::Code;

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn write_request(node_id: &str, epoch: u64) -> WriteNodeStateRequest {
    WriteNodeStateRequest {
        node_id: node_id.to_string(),
        epoch,
        ops: vec![NodeStateOp {
            key: Some(NodeStateKey {
                primary: String::new(),
                secondary: String::new(),
                key: "manager".into(),
            }),
            value: b"a stale copy's manager".to_vec(),
            remove: false,
        }],
        incarnation: 7,
        seq: 1,
        after_version: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_agents_node_stops_itself_and_its_stale_writes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = HostingCluster::start(tmp.path(), 2).await;
    set_heartbeat(&c.manager, 1000, 3).await;
    let watch = DuplicateWatch::start(tmp.path());

    let Hosted {
        owner: alice,
        agent: first,
        ..
    } = c.host("alice");
    let old_pid = c.node_pids(&alice)[0];
    let i = c.agent_index(&first);

    // Freeze alice's agent: her process stops itself, then she starts elsewhere.
    c.agents[i].freeze(true);
    wait::until(
        "the frozen agent's node to stop itself",
        Duration::from_secs(60),
        || async { (!alive(old_pid)).then_some(()) },
    )
    .await;
    assert!(
        c.node_pids(&alice).is_empty(),
        "nothing else ran alice while the old copy was alive"
    );
    c.wait_running(
        &alice,
        "alice to serve from the other agent",
        Duration::from_secs(90),
        |agent| agent != first,
    )
    .await;
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());
    // The same answer as a table, for people.
    let (ok, table, err) = c.owner_ctl(&alice, &["getinfo", "--format", "table"]);
    assert!(ok, "getinfo --format table: {err}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("node_id") && l.ends_with(alice.node_id.as_str())),
        "a FIELD / VALUE row per field: {table}"
    );
    let new_pid = c.node_pids(&alice)[0];
    let old_log = c.agents[i].task_logs();
    // At the deadline ("ran out"), or once its clean stop just before it ("ran low").
    assert!(
        old_log.contains("lease ran out") || old_log.contains("lease ran low"),
        "the old copy says why it stopped"
    );

    // Thawed, the old agent starts nothing for alice.
    c.agents[i].freeze(false);
    c.wait_agents_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        c.node_pids(&alice),
        vec![new_pid],
        "only the replacement runs"
    );

    // The old copy's certificate is still valid, but its epoch is not.
    let dir = c.agents[i].data_dir.join("nodes").join(&alice.node_id);
    let old = Credentials {
        cert_pem: std::fs::read_to_string(dir.join("tls.crt")).unwrap(),
        key_pem: std::fs::read_to_string(dir.join("tls.key")).unwrap(),
        ca_pem: c.manager.operator().ca_pem,
    };
    let channel = tls::connect(
        &c.manager.any_addr(),
        &old.client_tls().unwrap(),
        Role::Manager,
    )
    .await
    .unwrap();
    let mut state = NodeStateClient::new(channel);
    let err = state
        .write(write_request(&alice.node_id, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("stale"), "{}", err.message());
    let err = state
        .load(LoadNodeStateRequest {
            node_id: alice.node_id.clone(),
            epoch: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // Nothing changed: the replacement still serves, on its own state.
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());
    assert!(alive(new_pid), "the replacement was not disturbed");

    // A node reaches only its own state.
    let bob = c.register("bob");
    let err = state
        .write(write_request(&bob.node_id, 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    let violations = watch.finish();
    assert!(violations.is_empty(), "a node ran twice: {violations:?}");
}
