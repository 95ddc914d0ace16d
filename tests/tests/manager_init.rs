//! `lnswarm-manager init` creates the cluster and exits, as a systemd setup needs;
//! `lnswarm-manager run` then serves it, with the tokens init printed. With
//! `--log-format json` every log line is a JSON object a log pipeline can read.

use std::{process::Command, time::Duration};

use lnswarm_common::{
    api::{control_client::ControlClient, GetClusterInfoRequest},
    credentials::Credentials,
    pki::Role,
    tls,
};
use lnswarm_tests::{
    bin_path, free_addr,
    process::{run, Proc},
    wait,
};

#[tokio::test]
async fn init_exits_and_run_serves_the_cluster_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("m0");
    let addr = free_addr();
    let mut init = Command::new(bin_path("lnswarm-manager"));
    init.args(["--log-format", "json", "init", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen", &addr]);
    let (status, out, err) = run(init);
    assert!(status.success(), "init: {out}{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "init logs what it did");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(err.contains("cluster created"), "{err}");
    assert!(
        out.contains("worker token: LNSTKN-1-"),
        "prints the tokens: {out}"
    );
    assert!(
        out.contains("lnswarm-manager run --data-dir"),
        "says how to start it: {out}"
    );
    // Nothing serves after init.
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "init left nothing listening"
    );

    let mut cmd = Command::new(bin_path("lnswarm-manager"));
    cmd.args(["run", "--data-dir"]).arg(&data_dir);
    let _manager = Proc::spawn("m0", cmd, dir.path());
    let creds = Credentials::load(&data_dir.join("operator")).unwrap();
    let info = wait::until("the manager to serve", Duration::from_secs(30), || async {
        let channel = tls::connect(&addr, &creds.client_tls().ok()?, Role::Manager)
            .await
            .ok()?;
        ControlClient::new(channel)
            .get_cluster_info(GetClusterInfoRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    })
    .await;
    assert_eq!(info.managers, 1);
    assert!(
        out.contains(&info.cluster_id),
        "the cluster init made: {out}"
    );
}
