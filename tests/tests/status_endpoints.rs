//! The plain-HTTP status endpoints, as a probe or a Prometheus scraper sees them:
//! a manager's `/healthz` is 200 while it knows a leader and its `/metrics` counts
//! what happens (heartbeats answered, proposals) and shows its raft state; an
//! agent's `/healthz` is 200 while the managers vouch for it and 503 once its
//! manager is gone, and its `/metrics` shows its processes and certificate. The
//! values move: a killed agent shows as an expiry and a session fewer.

use std::time::Duration;

use lnswarm_tests::{
    agents::{agent_state, TestAgent},
    free_addr,
    manager::TestManager,
    wait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status code and body of `GET path` at `addr`.
async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default()
        .to_string();
    Some((code, body))
}

async fn healthz(addr: &str) -> Option<(u16, String)> {
    get(addr, "/healthz").await
}

/// The value of the first sample of `name` in a Prometheus text answer.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split([' ', '{']).next() == Some(name))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn health_and_metrics_as_probes_and_scrapers_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let manager_status = free_addr();
    let mut m =
        TestManager::init_with(dir.path(), None, &["--status-listen", &manager_status]).await;
    lnswarm_tests::agents::set_heartbeat(&m, 500, 3).await;
    let mut agent = TestAgent::join(&m, dir.path(), "agent");
    let addr = free_addr();
    agent.status_listen = Some(addr.clone());
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

    let (code, _) = healthz(&manager_status).await.expect("manager /healthz");
    assert_eq!(code, 200, "the manager knows a leader (itself)");
    let (code, text) = get(&manager_status, "/metrics")
        .await
        .expect("manager /metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&text, "lnswarm_manager_raft_is_leader"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "lnswarm_manager_dispatcher_heartbeats_total") > Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "lnswarm_manager_raft_proposals_total") > Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "lnswarm_manager_dispatcher_sessions"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "lnswarm_manager_cert_expiry_timestamp_seconds") > Some(0.0),
        "{text}"
    );
    let (code, text) = get(&addr, "/metrics").await.expect("agent /metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&text, "lnswarm_agent_task_processes"),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "lnswarm_agent_lease_remaining_seconds").is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "lnswarm_agent_cert_expiry_timestamp_seconds") > Some(0.0),
        "{text}"
    );

    // The values move: an agent killed is an expiry and a session fewer, and
    // its restart a session again.
    let metric = |name: &'static str| {
        let addr = manager_status.clone();
        async move { sample(&get(&addr, "/metrics").await?.1, name) }
    };
    let expired_before = metric("lnswarm_manager_dispatcher_expirations_total")
        .await
        .unwrap_or(0.0);
    agent.kill9();
    wait::until(
        "an expiry and no session in /metrics",
        Duration::from_secs(20),
        || async {
            let expired = metric("lnswarm_manager_dispatcher_expirations_total").await?;
            let sessions = metric("lnswarm_manager_dispatcher_sessions").await?;
            (expired > expired_before && sessions == 0.0).then_some(())
        },
    )
    .await;
    agent.start();
    wait::until(
        "the session back in /metrics",
        Duration::from_secs(20),
        || async { (metric("lnswarm_manager_dispatcher_sessions").await? == 1.0).then_some(()) },
    )
    .await;
    wait::until("healthz 200 again", Duration::from_secs(20), || async {
        healthz(&addr).await.filter(|(code, _)| *code == 200)
    })
    .await;

    // The manager goes away: within the lease's TTL the agent says it is not
    // vouched for.
    m.proc.kill9();
    let (_, body) = wait::until("healthz 503", Duration::from_secs(20), || async {
        healthz(&addr).await.filter(|(code, _)| *code == 503)
    })
    .await;
    assert!(body.contains("not vouched for"), "{body}");
}
