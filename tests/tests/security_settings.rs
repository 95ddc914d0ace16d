//! Settings that cannot break the cluster: every cluster setting at and beyond its
//! bounds is either refused with INVALID_ARGUMENT, storing nothing, or accepted and
//! harmless. An agent stays READY throughout.

use std::time::Duration;

use lnswarm_common::api::{
    chain_source::Source, control_client::ControlClient, BitcoindRpc, ChainSource,
    ClusterSettingsUpdate, GetClusterInfoRequest, UpdateClusterSettingsRequest,
};
use lnswarm_tests::{
    agents::{agent_state, set_heartbeat, TestAgent},
    manager::TestManager,
    process::run,
    wait,
};
use tonic::Code;

fn bitcoind(host: &str, port: u32, user: &str, password: &str) -> Option<ChainSource> {
    Some(ChainSource {
        source: Some(Source::BitcoindRpc(BitcoindRpc {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
        })),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_setting_is_bounded_and_the_cluster_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let m = TestManager::init(dir.path(), None).await;
    set_heartbeat(&m, 500, 3).await;
    let mut agent = TestAgent::join(&m, dir.path(), "agent");
    agent.start();
    let ready = || async {
        wait::until("the agent to be READY", Duration::from_secs(30), || async {
            (agent_state(&m, &agent.id).as_deref() == Some("READY")).then_some(())
        })
        .await
    };
    ready().await;

    let mut control = ControlClient::new(m.channel_as(Some(&m.operator())).await);
    let u = ClusterSettingsUpdate::default;
    let refused = [
        (
            "period 0",
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(0),
                ..u()
            },
        ),
        (
            "period 99 ms",
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(99),
                ..u()
            },
        ),
        (
            "period 10^13 ms",
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(10_000_000_000_000),
                ..u()
            },
        ),
        (
            "period 600001 ms",
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(600_001),
                ..u()
            },
        ),
        (
            "grace 0",
            ClusterSettingsUpdate {
                heartbeat_grace_multiplier: Some(0),
                ..u()
            },
        ),
        (
            "grace 1",
            ClusterSettingsUpdate {
                heartbeat_grace_multiplier: Some(1),
                ..u()
            },
        ),
        (
            "grace 101",
            ClusterSettingsUpdate {
                heartbeat_grace_multiplier: Some(101),
                ..u()
            },
        ),
        (
            "grace 2^32-1",
            ClusterSettingsUpdate {
                heartbeat_grace_multiplier: Some(u32::MAX),
                ..u()
            },
        ),
        (
            "period × grace over an hour",
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(600_000),
                heartbeat_grace_multiplier: Some(7),
                ..u()
            },
        ),
        (
            "network bogus",
            ClusterSettingsUpdate {
                network: Some("bogus".into()),
                ..u()
            },
        ),
        (
            "network mainnet",
            ClusterSettingsUpdate {
                network: Some("mainnet".into()),
                ..u()
            },
        ),
        (
            "network 3.9 MiB",
            ClusterSettingsUpdate {
                network: Some("x".repeat(3_900_000)),
                ..u()
            },
        ),
        (
            "empty chain source",
            ClusterSettingsUpdate {
                chain_source: Some(ChainSource { source: None }),
                ..u()
            },
        ),
        (
            "bitcoind host 254 chars",
            ClusterSettingsUpdate {
                chain_source: bitcoind(&"h".repeat(254), 8332, "u", "p"),
                ..u()
            },
        ),
        (
            "bitcoind host with a space",
            ClusterSettingsUpdate {
                chain_source: bitcoind("a b", 8332, "u", "p"),
                ..u()
            },
        ),
        (
            "bitcoind port 0",
            ClusterSettingsUpdate {
                chain_source: bitcoind("h", 0, "u", "p"),
                ..u()
            },
        ),
        (
            "bitcoind port 65536",
            ClusterSettingsUpdate {
                chain_source: bitcoind("h", 65_536, "u", "p"),
                ..u()
            },
        ),
        (
            "bitcoind user empty",
            ClusterSettingsUpdate {
                chain_source: bitcoind("h", 1, "", "p"),
                ..u()
            },
        ),
        (
            "bitcoind password 257 bytes",
            ClusterSettingsUpdate {
                chain_source: bitcoind("h", 1, "u", &"p".repeat(257)),
                ..u()
            },
        ),
        (
            "esplora ftp URL",
            ClusterSettingsUpdate {
                chain_source: Some(ChainSource {
                    source: Some(Source::EsploraUrl("ftp://x".into())),
                }),
                ..u()
            },
        ),
        (
            "electrum URL of 3000 chars",
            ClusterSettingsUpdate {
                chain_source: Some(ChainSource {
                    source: Some(Source::ElectrumUrl(format!("tcp://{}", "e".repeat(3000)))),
                }),
                ..u()
            },
        ),
    ];
    let before = control
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .settings;
    for (what, update) in refused {
        let err = control
            .update_cluster_settings(UpdateClusterSettingsRequest {
                update: Some(update),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        let now = control
            .get_cluster_info(GetClusterInfoRequest {})
            .await
            .unwrap()
            .into_inner()
            .settings;
        assert_eq!(now, before, "{what}: nothing is stored");
    }
    ready().await;

    // At the bounds: accepted, and the agent stays READY.
    for (period, grace) in [(100, 100), (600_000, 6), (100, 2), (500, 3)] {
        control
            .update_cluster_settings(UpdateClusterSettingsRequest {
                update: Some(ClusterSettingsUpdate {
                    heartbeat_period_ms: Some(period),
                    heartbeat_grace_multiplier: Some(grace),
                    ..u()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("{period} ms × {grace}: {e:?}"));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        ready().await;
    }
    for network in ["bitcoin", "testnet", "testnet4", "signet", "regtest"] {
        control
            .update_cluster_settings(UpdateClusterSettingsRequest {
                update: Some(ClusterSettingsUpdate {
                    network: Some(network.into()),
                    ..u()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("{network}: {e:?}"));
    }
    control
        .update_cluster_settings(UpdateClusterSettingsRequest {
            update: Some(ClusterSettingsUpdate {
                chain_source: bitcoind(
                    &"h".repeat(253),
                    65_535,
                    &"u".repeat(256),
                    &"p".repeat(256),
                ),
                ..u()
            }),
        })
        .await
        .expect("the longest accepted chain source");
    assert!(
        agent.proc.as_mut().unwrap().try_exit().is_none(),
        "the agent is still running"
    );
    ready().await;

    // lnswarmctl refuses what the help does not list, before sending anything.
    for args in [
        vec!["--heartbeat-period-ms", "0"],
        vec!["--network", "mainnet"],
        vec!["--heartbeat-grace", "4294967295"],
    ] {
        let mut cmd = m.ctl();
        cmd.args(["cluster", "update"]).args(&args);
        let (status, out, err) = run(cmd);
        assert!(!status.success(), "{args:?}: {out}");
        assert!(!out.contains("updated"), "{args:?}: {out}");
        assert!(err.contains("invalid value"), "{args:?}: {err}");
    }
    let mut cmd = m.ctl();
    cmd.args(["cluster", "update"]);
    let (status, _, err) = run(cmd);
    assert!(
        !status.success() && err.contains("nothing to change"),
        "{err}"
    );
}
