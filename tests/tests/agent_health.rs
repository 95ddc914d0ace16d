//! The agent's own health endpoint: plain-HTTP `GET /healthz` says 200 while the
//! managers vouch for the agent (its session's heartbeats are answered), and 503
//! once they cannot (its manager is gone), as a probe would see it.

use std::time::Duration;

use lnswarm_tests::{
    agents::{agent_state, TestAgent},
    free_addr,
    manager::TestManager,
    wait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status code and body of `GET /healthz` at `addr`.
async fn healthz(addr: &str) -> Option<(u16, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    Some((code, body))
}

#[tokio::test]
async fn healthz_follows_whether_the_managers_vouch_for_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = TestManager::init(dir.path(), None).await;
    lnswarm_tests::agents::set_heartbeat(&m, 500, 3).await;
    let mut agent = TestAgent::join(&m, dir.path(), "agent");
    let addr = free_addr();
    agent.health_listen = Some(addr.clone());
    agent.start();
    wait::until("agent READY", Duration::from_secs(20), || async {
        (agent_state(&m, &agent.id).as_deref() == Some("READY")).then_some(())
    })
    .await;
    let (code, body) = wait::until("healthz 200", Duration::from_secs(20), || async {
        healthz(&addr).await.filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("\"ready\""), "{body}");

    // The manager goes away: within the lease's TTL the agent says it is not
    // vouched for.
    m.proc.kill9();
    let (_, body) = wait::until("healthz 503", Duration::from_secs(20), || async {
        healthz(&addr).await.filter(|(code, _)| *code == 503)
    })
    .await;
    assert!(body.contains("not vouched for"), "{body}");
}
