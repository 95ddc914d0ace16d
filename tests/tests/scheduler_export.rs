//! ExportNode end to end, as an owner sees it: alice's node, with a channel to
//! bob's, is exported; it stops and can never be scheduled again; a second export
//! answers the same export; a download cut off part way resumes with
//! `lnswarmctl node export` and matches its digest; bob's mnemonic cannot open
//! it; with alice's it becomes a data directory from which `lnswarm-node` runs
//! alice's node outside the cluster, and it pays bob over the same channel.

use std::{process::Command, time::Duration};

use lnswarm_common::{
    api::{
        node_client::NodeClient, scheduler_client::SchedulerClient, DownloadExportRequest,
        ExportNodeRequest, ListChannelsRequest, PayRequest, PaymentStatus, ScheduleRequest,
    },
    credentials::Credentials,
    pki::Role,
    tls,
};
use lnswarm_tests::{
    bin_path, free_addr,
    hosting::HostingCluster,
    lightning::{RPC_PASSWORD, RPC_USER},
    process::{run, Proc},
    wait,
};
use sha2::{Digest, Sha256};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exported_node_never_runs_here_again_and_runs_from_its_export_outside() {
    let tmp = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("LNSWARM_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let c = HostingCluster::start(dir, 2).await;
    let alice = c.host("alice").owner;
    let bob = c.host("bob").owner;
    let channel_id = c.funded_channel(&alice, &bob).await;

    // Export: the node stops, and is EXPORTED.
    let mut as_alice = SchedulerClient::new(c.manager.channel_as(Some(&alice.creds)).await);
    let first = as_alice
        .export_node(ExportNodeRequest {})
        .await
        .expect("ExportNode")
        .into_inner();
    assert!(first.size > 0);
    assert_eq!(
        first.url,
        format!(
            "lnswarm-export:{}?size={}&sha256={}",
            alice.node_id,
            first.size,
            hex::encode(&first.sha256)
        )
    );
    assert_eq!(c.inspect(&alice.node_id)["state"], "exported");
    assert!(
        c.node_pids(&alice).is_empty(),
        "the exported node no longer runs"
    );

    // Schedule refuses it, clearly; the cluster leaves it alone.
    let err = as_alice
        .schedule(ScheduleRequest {
            node_id: hex::decode(&alice.node_id).unwrap(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("exported"), "{}", err.message());
    let (ok, _, stderr) = c.owner_ctl(&alice, &["schedule"]);
    assert!(!ok);
    assert!(stderr.contains("exported"), "{stderr}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(c.node_pids(&alice).is_empty(), "still not running");

    // Idempotent: the same export again.
    let second = as_alice
        .export_node(ExportNodeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (&second.url, second.size, &second.sha256),
        (&first.url, first.size, &first.sha256)
    );

    // A download cut off part way: half of what the first piece brought.
    let mut stream = as_alice
        .download_export(DownloadExportRequest { offset: 0 })
        .await
        .unwrap()
        .into_inner();
    let piece = stream.message().await.unwrap().expect("a first piece");
    drop(stream);
    assert_eq!((piece.offset, piece.total_size), (0, first.size));
    let cut = piece.data.len() / 2;
    assert!(cut > 0);
    let out = dir.join("alice.export");
    std::fs::write(dir.join("alice.export.part"), &piece.data[..cut]).unwrap();

    // Past the end is refused.
    let err = as_alice
        .download_export(DownloadExportRequest {
            offset: first.size + 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    // lnswarmctl resumes it, checks the digest, and warns.
    let (ok, stdout, stderr) = c.owner_ctl(&alice, &["export", "--out", out.to_str().unwrap()]);
    assert!(ok, "node export: {stdout}{stderr}");
    assert!(
        stderr.contains(&format!("resuming the download at byte {cut}")),
        "{stderr}"
    );
    assert!(stderr.contains("WARNING"), "{stderr}");
    assert!(stdout.contains(&hex::encode(&first.sha256)), "{stdout}");
    let blob = std::fs::read(&out).unwrap();
    assert_eq!(blob.len() as u64, first.size);
    assert_eq!(Sha256::digest(&blob).as_slice(), first.sha256.as_slice());
    assert!(!dir.join("alice.export.part").exists());

    // The wrong mnemonic cannot open it, and leaves nothing behind.
    let words = |o: &lnswarm_tests::hosting::Owner| {
        let f = dir.join(format!("{}.words", o.name));
        std::fs::write(&f, &o.mnemonic).unwrap();
        f
    };
    let standalone = dir.join("standalone");
    let import = |mnemonic: &std::path::Path| {
        let mut cmd = Command::new(bin_path("lnswarm-node"));
        cmd.arg("import")
            .arg("--export")
            .arg(&out)
            .arg("--mnemonic-file")
            .arg(mnemonic)
            .arg("--data-dir")
            .arg(&standalone);
        run(cmd)
    };
    let (status, _, err) = import(&words(&bob));
    assert!(!status.success());
    assert!(err.contains("does not decrypt with this node key"), "{err}");
    assert!(!standalone.exists(), "a failed import writes nothing");

    // The right one makes a data directory, once.
    let (status, stdout, err) = import(&words(&alice));
    assert!(status.success(), "import: {stdout}{err}");
    assert!(stdout.contains(&alice.node_id), "{stdout}");
    assert!(err.contains("WARNING"), "{err}");
    let (status, _, err) = import(&words(&alice));
    assert!(!status.success());
    assert!(err.contains("imported once only"), "{err}");

    // It runs outside the cluster: seed from the mnemonic, config from the import.
    let mut seed_cmd = Command::new(bin_path("lnswarm-node"));
    seed_cmd
        .args(["seed", "--mnemonic-file"])
        .arg(words(&alice));
    let seed = seed_cmd.output().unwrap();
    assert!(seed.status.success());
    assert_eq!(seed.stdout.len(), 64);
    let api = free_addr();
    let mut node = Command::new(bin_path("lnswarm-node"));
    node.arg("--config")
        .arg(standalone.join("node.json"))
        .args(["--bitcoind-rpc-host", "127.0.0.1"])
        .args(["--bitcoind-rpc-port", &c.regtest.port.to_string()])
        .args(["--bitcoind-rpc-user", RPC_USER])
        .args(["--bitcoind-rpc-password", RPC_PASSWORD])
        .args(["--listen", &free_addr()])
        .args(["--api-listen", &api]);
    let mut proc = Proc::spawn_with_stdin("standalone-alice", node, dir, &seed.stdout);
    let owner = Credentials::load(&standalone.join("owner")).unwrap();
    let client_tls = owner.client_tls().unwrap();
    let mut alice_node = wait::until("the standalone node's API", Duration::from_secs(90), || {
        if let Some(status) = proc.try_exit() {
            panic!("standalone node exited: {status}\n{}", proc.log_text());
        }
        let (api, client_tls, id) = (api.clone(), client_tls.clone(), alice.node_id.clone());
        async move {
            let ch = tls::connect(
                &api,
                &client_tls,
                tls::ServerIdentity::exact(Role::Node, &id),
            )
            .await
            .ok()?;
            let mut client = NodeClient::new(ch);
            client.list_channels(ListChannelsRequest {}).await.ok()?;
            Some(client)
        }
    })
    .await;
    wait::until(
        "the channel to bob to be usable from outside",
        Duration::from_secs(90),
        || {
            let mut client = alice_node.clone();
            let channel_id = channel_id.clone();
            async move {
                let chans = client
                    .list_channels(ListChannelsRequest {})
                    .await
                    .ok()?
                    .into_inner()
                    .channels;
                chans
                    .iter()
                    .any(|ch| ch.channel_id == channel_id && ch.is_usable)
                    .then_some(())
            }
        },
    )
    .await;
    let (ok, invoice, err) = c.owner_ctl(&bob, &["invoice", "10000000", "--description", "x"]);
    assert!(ok, "invoice: {err}");
    let paid = alice_node
        .pay(PayRequest {
            bolt11: invoice.trim().to_string(),
            amount_msat: 0,
        })
        .await
        .expect("pay")
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(paid.status, PaymentStatus::Succeeded as i32, "{paid:?}");
    assert!(proc.terminate().is_some_and(|s| s.success()));
}
