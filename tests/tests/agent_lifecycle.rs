//! An agent joins and shows READY in `lnswarmctl agent ls`; after kill -9 it shows
//! DOWN within the heartbeat TTL plus one period; restarted, it is READY again under
//! the same id. Availability set with `lnswarmctl agent update` (by id prefix) shows;
//! an agent stopped with SIGTERM shows DISCONNECTED.

use std::time::Duration;

use lnswarm_tests::{
    agents::{agent_state, ctl_json, set_heartbeat, TestAgent},
    manager::TestManager,
    process::run,
    wait,
};

const PERIOD_MS: u64 = 500;
const GRACE: u32 = 3;

#[tokio::test]
async fn agent_ready_down_after_kill9_ready_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    set_heartbeat(&m, PERIOD_MS, GRACE).await;

    let mut agent = TestAgent::join(&m, dir.path(), "agent-a");
    agent.start();
    wait::until("agent READY", Duration::from_secs(20), || async {
        (agent_state(&m, &agent.id).as_deref() == Some("READY")).then_some(())
    })
    .await;

    let listed = ctl_json(&m, &["agent", "ls"]);
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent.id.as_str())
        .expect("agent listed");
    assert_eq!(me["availability"], "ACTIVE");
    assert_eq!(me["advertised_address"], "127.0.0.1");
    assert!(me["task_slots"].as_u64().unwrap() > 0);

    // It stays READY over several TTLs while it heartbeats.
    tokio::time::sleep(Duration::from_millis(PERIOD_MS * GRACE as u64 * 2)).await;
    assert_eq!(agent_state(&m, &agent.id).as_deref(), Some("READY"));

    agent.kill9();
    // TTL + one period, plus slack for the expiry timer, the batched write and
    // polling.
    let bound = Duration::from_millis(PERIOD_MS * (GRACE as u64 + 1) + 1_000);
    wait::until("agent DOWN within TTL + one period", bound, || async {
        (agent_state(&m, &agent.id).as_deref() == Some("DOWN")).then_some(())
    })
    .await;

    agent.start();
    wait::until("agent READY again", Duration::from_secs(20), || async {
        (agent_state(&m, &agent.id).as_deref() == Some("READY")).then_some(())
    })
    .await;
    let ids: Vec<String> = ctl_json(&m, &["agent", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![agent.id.clone()], "same id, no second agent");

    // Availability is the operator's; ids are taken by unique prefix, as docker
    // takes them.
    let prefix = &agent.id[..6];
    let mut cmd = m.ctl();
    cmd.args(["agent", "update", prefix, "--availability", "drain"]);
    let (status, _, err) = run(cmd);
    assert!(status.success(), "agent update: {err}");
    let a = ctl_json(&m, &["agent", "inspect", prefix]);
    assert_eq!(a["id"], agent.id.as_str());
    let created = a["created"].as_str().unwrap();
    assert!(
        created.ends_with(" ago)"),
        "times read as dates and ages: {created}"
    );
    assert_eq!(a["availability"], "DRAIN");
    assert_eq!(a["state"], "READY");

    // Removing a READY agent needs --force.
    let mut cmd = m.ctl();
    cmd.args(["agent", "rm", &agent.id]);
    let (status, _, err) = run(cmd);
    assert!(!status.success());
    assert!(err.contains("READY"), "clear refusal: {err}");

    // An agent stopped on purpose (SIGTERM) says so: DISCONNECTED, not DOWN.
    agent.terminate();
    wait::until("agent DISCONNECTED", Duration::from_secs(10), || async {
        (agent_state(&m, &agent.id).as_deref() == Some("DISCONNECTED")).then_some(())
    })
    .await;
    // And it stays so (the heartbeat timer does not turn it DOWN).
    tokio::time::sleep(Duration::from_millis(PERIOD_MS * (GRACE as u64 + 1) + 500)).await;
    assert_eq!(agent_state(&m, &agent.id).as_deref(), Some("DISCONNECTED"));
}
