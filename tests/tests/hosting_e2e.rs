//! Node hosting end to end, with real processes over mTLS: owners register nodes
//! through the Scheduler, the cluster places them on different agents, they open a
//! channel and pay through their Node APIs; an owner reaches only its own node; a
//! node whose agent is killed serves again from another agent with the same channel
//! and balance, and pays both ways; the agent, back, runs nothing for it; a drain and
//! an operator's move carry nodes with their channels; a crashed node is restarted.
//! Throughout, no node id ever runs in two processes.

use std::time::Duration;

use lnswarm_common::{
    api::{
        node_client::NodeClient, scheduler_client::SchedulerClient, GetInfoRequest,
        NodeInfoRequest, ScheduleRequest,
    },
    pki::Role,
    tls,
};
use lnswarm_tests::{
    hosting::{node_processes, DuplicateWatch, HostingCluster, Owner},
    process::run,
    wait,
};
use tonic::Code;

async fn scheduler_as(
    c: &HostingCluster,
    owner: &Owner,
) -> SchedulerClient<tonic::transport::Channel> {
    SchedulerClient::new(c.manager.channel_as(Some(&owner.creds)).await)
}

fn node_id_bytes(owner: &Owner) -> Vec<u8> {
    hex::decode(&owner.node_id).unwrap()
}

/// Waits until `owner`'s channel is usable again (peers reconnect after a move).
async fn wait_usable(c: &HostingCluster, owner: &Owner, channel_id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let chans = c.owner_json(owner, &["channels", "--format", "json"]);
        let usable = chans.as_array().is_some_and(|a| {
            a.iter()
                .any(|ch| ch["channel_id"] == channel_id && ch["is_usable"] == true)
        });
        if usable {
            return;
        }
        if std::time::Instant::now() > deadline {
            let peers = c.owner_ctl(owner, &["peers"]);
            panic!(
                "{}'s channel is not usable after 90 s: {chans}\npeers: {peers:?}",
                owner.name
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `from` pays an invoice of `to` for `msat`.
fn pay(c: &HostingCluster, from: &Owner, to: &Owner, msat: u64) {
    let (ok, invoice, err) = c.owner_ctl(to, &["invoice", &msat.to_string(), "--description", "x"]);
    assert!(ok, "invoice: {err}");
    let paid = c.owner_json(from, &["pay", invoice.trim()]);
    assert_eq!(
        paid["status"], "succeeded",
        "{} pays {}: {paid}",
        from.name, to.name
    );
}

fn addr_of(uri: &str) -> String {
    uri.trim_start_matches("https://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_are_hosted_paid_isolated_and_fail_over_with_their_channels() {
    let tmp = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("LNSWARM_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap();
    let c = HostingCluster::start(tmp.path(), 2).await;
    // A 1 s heartbeat (TTL 3 s), so that failover takes seconds.
    lnswarm_tests::agents::set_heartbeat(&c.manager, 1000, 3).await;
    let watch = DuplicateWatch::start(tmp.path());

    // Register and schedule two nodes: they land on different agents.
    let alice = c.register("alice");
    let bob = c.register("bob");
    let (ok, alice_uri, err) = c.owner_ctl(&alice, &["schedule"]);
    assert!(ok, "schedule alice: {err}");
    assert!(
        alice_uri.trim().starts_with("https://127.0.0.1:"),
        "prints the Node API address: {alice_uri}"
    );
    let (ok, bob_uri, err) = c.owner_ctl(&bob, &["schedule"]);
    assert!(ok, "schedule bob: {err}");
    let alice_agent = c.inspect(&alice.node_id)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    let bob_agent = c.inspect(&bob.node_id)["agent_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        alice_agent, bob_agent,
        "placement spreads nodes across agents"
    );
    assert_eq!(c.inspect(&alice.node_id)["state"], "running");
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(
        info["node_id"],
        alice.node_id.as_str(),
        "the node runs with the owner's seed"
    );

    // Fund alice, open a channel to bob, pay an invoice.
    c.regtest.mine(101).await;
    let (_, address, _) = c.owner_ctl(&alice, &["newaddr"]);
    c.regtest.send(address.trim(), 1.0).await;
    c.regtest.mine(6).await;
    wait::until("alice's funds", Duration::from_secs(60), || async {
        let b = c.owner_json(&alice, &["balances"]);
        (b["onchain_spendable_sats"].as_u64()? >= 100_000_000).then_some(())
    })
    .await;
    let bob_info = c.owner_json(&bob, &["getinfo"]);
    let bob_port = bob_info["listening_addresses"][0]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    let (ok, channel_id, err) = c.owner_ctl(
        &alice,
        &[
            "open-channel",
            &format!("{}@127.0.0.1:{bob_port}", bob.node_id),
            "500000",
        ],
    );
    assert!(ok, "open-channel: {err}");
    let channel_id = channel_id.trim().to_string();
    c.regtest
        .mine_after_broadcast("the funding transaction", 1, 6)
        .await;
    wait::until("a usable channel", Duration::from_secs(90), || async {
        let chans = c.owner_json(&alice, &["channels", "--format", "json"]);
        chans
            .as_array()?
            .iter()
            .any(|ch| ch["is_usable"] == true)
            .then_some(())
    })
    .await;
    let (ok, invoice, err) = c.owner_ctl(&bob, &["invoice", "25000000", "--description", "test"]);
    assert!(ok, "invoice: {err}");
    let paid = c.owner_json(&alice, &["pay", invoice.trim()]);
    assert_eq!(paid["status"], "succeeded", "{paid}");
    let bob_payments = c.owner_json(&bob, &["payments", "--format", "json"]);
    assert!(
        bob_payments
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["direction"] == "inbound"
                && p["status"] == "succeeded"
                && p["amount_msat"] == 25_000_000),
        "bob sees the payment: {bob_payments}"
    );

    // Owner isolation: alice's certificate opens nothing of bob's.
    let mut as_alice = scheduler_as(&c, &alice).await;
    let err = as_alice
        .schedule(ScheduleRequest {
            node_id: node_id_bytes(&bob),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = as_alice
        .get_node_info(NodeInfoRequest {
            node_id: node_id_bytes(&bob),
            wait: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let to_bob = tls::connect(
        &addr_of(bob_uri.trim()),
        &alice.creds.client_tls().unwrap(),
        Role::Node,
    )
    .await
    .unwrap();
    let err = NodeClient::new(to_bob)
        .get_info(GetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // kill -9 alice's agent: alice starts on the other agent, with her channel.
    let before = c.owner_json(&alice, &["balances"]);
    let a = c.agent_index(&alice_agent);
    let mut agents = c.agents;
    agents[a].kill9();
    let c = HostingCluster { agents, ..c };
    let moved_to = wait::until(
        "alice to serve from another agent",
        Duration::from_secs(90),
        || async {
            let n = c.inspect(&alice.node_id);
            (n["state"] == "running" && n["agent_id"] != alice_agent.as_str())
                .then(|| n["agent_id"].as_str().unwrap().to_string())
        },
    )
    .await;
    assert_eq!(moved_to, bob_agent, "the only other agent");
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str(), "the same node");
    wait_usable(&c, &alice, &channel_id).await;
    let after = c.owner_json(&alice, &["balances"]);
    assert_eq!(
        after["lightning_sats"], before["lightning_sats"],
        "channel balance unchanged: {before} -> {after}"
    );
    pay(&c, &alice, &bob, 1_000_000);
    pay(&c, &bob, &alice, 2_000_000);

    // The agent returns: it runs nothing it no longer owns.
    let mut agents = c.agents;
    agents[a].start();
    let c = HostingCluster { agents, ..c };
    c.wait_agents_ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let on_a = c.agents[a].data_dir.join("tasks");
    assert_eq!(
        node_processes(tmp.path())[&alice.node_id].len(),
        1,
        "one alice ({})",
        on_a.display()
    );
    assert_eq!(c.inspect(&alice.node_id)["agent_id"], bob_agent.as_str());

    // Drain bob's agent: both nodes stop cleanly there and start on the other,
    // channel intact.
    let mut drain = c.manager.ctl();
    drain.args(["agent", "update", &bob_agent, "--availability", "drain"]);
    let (status, out, err) = run(drain);
    assert!(status.success(), "drain: {out}{err}");
    for owner in [&alice, &bob] {
        wait::until(
            "the node to move off the draining agent",
            Duration::from_secs(90),
            || async {
                let n = c.inspect(&owner.node_id);
                (n["state"] == "running" && n["agent_id"] == alice_agent.as_str()).then_some(())
            },
        )
        .await;
    }
    let bob_log = std::fs::read_dir(c.agents[c.agent_index(&bob_agent)].data_dir.join("tasks"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        bob_log.contains("node stopped"),
        "stopped cleanly before the move"
    );
    // Both ends moved, to new addresses: each finds where the other went through
    // the cluster (NodeState.PeerAddresses), without the owners' help.
    wait_usable(&c, &alice, &channel_id).await;
    pay(&c, &alice, &bob, 1_000_000);

    // An operator moves alice back by hand.
    let mut active = c.manager.ctl();
    active.args(["agent", "update", &bob_agent, "--availability", "active"]);
    assert!(run(active).0.success());
    let mut mv = c.manager.ctl();
    mv.args(["node", "move", &alice.node_id, "--to", &bob_agent]);
    let (status, out, err) = run(mv);
    assert!(status.success(), "node move: {out}{err}");
    wait::until(
        "alice to run on the named agent",
        Duration::from_secs(90),
        || async {
            let n = c.inspect(&alice.node_id);
            (n["state"] == "running" && n["agent_id"] == bob_agent.as_str()).then_some(())
        },
    )
    .await;
    wait_usable(&c, &alice, &channel_id).await;
    pay(&c, &bob, &alice, 1_000_000);
    let alice_agent = bob_agent.clone();

    // A crashed node is restarted on the same agent. (Its channel is not checked
    // here: a node killed within a moment of a payment can find ldk-node's channel
    // manager on disk older than its channel monitors, and LDK then force-closes the
    // channel on restart; see the project notes.)
    let crashed = node_processes(tmp.path())[&alice.node_id][0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(crashed as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = wait::until(
        "alice's node to be restarted",
        Duration::from_secs(60),
        || async {
            let pids = node_processes(tmp.path()).get(&alice.node_id).cloned()?;
            pids.into_iter().find(|p| *p != crashed)
        },
    )
    .await;
    assert_ne!(restarted, crashed);
    let (ok, _, err) = c.owner_ctl(&alice, &["schedule"]);
    assert!(ok, "schedule after a crash: {err}");
    assert_eq!(
        c.inspect(&alice.node_id)["agent_id"],
        alice_agent.as_str(),
        "restarted in place"
    );
    let info = c.owner_json(&alice, &["getinfo"]);
    assert_eq!(info["node_id"], alice.node_id.as_str());

    let violations = watch.finish();
    assert!(violations.is_empty(), "a node ran twice: {violations:?}");
}
