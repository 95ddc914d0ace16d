//! Secrets at rest: under a loose umask every file a manager or agent writes is
//! private to its owner; no seed, CA key or sealing key is anywhere in the clear
//! under the manager's data directory (its store, raft log and snapshots); and with
//! autolock a restarted manager serves nothing but health until it is unlocked.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lnswarm_common::{
    api::{
        control_client::ControlClient, scheduler_client::SchedulerClient, ChallengeRequest,
        ChallengeScope, GetClusterInfoRequest,
    },
    node_keys,
    pki::Role,
    tls,
};
use lnswarm_tests::{
    agents::worker_token,
    bin_path,
    certs::TestCa,
    hosting::HostingCluster,
    manager::TestManager,
    process::{run, Proc},
    wait,
};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

fn pem_body_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn data_dirs_are_private_and_hold_no_secret_in_the_clear() {
    // As a shell or systemd with a loose umask would start them.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let dir = tempfile::tempdir().unwrap();
    let test_ca = TestCa::new("cluster-at-rest");
    let c = HostingCluster::start_with_ca(dir.path(), 1, Some(&test_ca)).await;
    let alice = c.host("alice").owner;
    let seed = node_keys::seed_from_mnemonic(&alice.mnemonic).unwrap();
    assert_eq!(node_keys::node_id(&seed).unwrap(), alice.node_id);

    // Every file and directory the manager and the agent (and its hosted node)
    // wrote is private.
    for root in [c.manager.data_dir.clone(), c.agents[0].data_dir.clone()] {
        for path in files_under(&root) {
            let mode = std::fs::symlink_metadata(&path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is mode {:o}",
                path.display(),
                mode & 0o777
            );
        }
    }

    // No secret in the clear under the manager's data directory.
    let ca_key_der = pem_body_der(&test_ca.ca.key_pem());
    let ca_key_pem_line = test_ca.ca.key_pem().lines().nth(1).unwrap().to_string();
    let seal_public = SchedulerClient::new(c.manager.channel_as(None).await)
        .get_challenge(ChallengeRequest {
            scope: ChallengeScope::Register as i32,
            node_id: hex::decode(lnswarm_tests::certs::fake_node_id(9)).unwrap(),
        })
        .await
        .unwrap()
        .into_inner()
        .seal_public_key;
    assert_eq!(seal_public.len(), 32);
    let mut scanned = 0usize;
    let mut public_seen = 0usize;
    for path in files_under(&c.manager.data_dir) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        scanned += bytes.len();
        let name = path.display();
        assert!(!contains(&bytes, &seed), "the seed is in {name}");
        assert!(!contains(&bytes, &ca_key_der), "the CA key is in {name}");
        assert!(
            !contains(&bytes, ca_key_pem_line.as_bytes()),
            "the CA key's PEM is in {name}"
        );
        // The sealing key's secret half would sit next to its public half in the
        // cluster object, as field 8 (tag 0x42, length 32): no such field near any
        // copy of the public key derives it.
        for at in memchr::memmem::find_iter(&bytes, &seal_public) {
            public_seen += 1;
            let lo = at.saturating_sub(512);
            let hi = (at + 512).min(bytes.len());
            for field in memchr::memmem::find_iter(&bytes[lo..hi], &[0x42, 0x20]) {
                let start = lo + field + 2;
                let Some(w) = bytes.get(start..start + 32) else {
                    continue;
                };
                let secret = crypto_box::SecretKey::from(<[u8; 32]>::try_from(w).unwrap());
                assert_ne!(
                    secret.public_key().as_bytes().as_slice(),
                    seal_public.as_slice(),
                    "the sealing key's secret half is in {name}"
                );
            }
        }
    }
    assert!(scanned > 0, "read the manager's files");
    assert!(
        public_seen > 0,
        "the cluster object was found (the scan is not vacuous)"
    );
    // The agent keeps seeds in memory only.
    for path in files_under(&c.agents[0].data_dir) {
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !contains(&bytes, &seed),
                "the seed is in {}",
                path.display()
            );
        }
    }
}

/// Runs `lnswarm-manager unlock --data-dir D` with `key` on stdin.
fn unlock(data_dir: &Path, key: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(bin_path("lnswarm-manager"))
        .args(["unlock", "--data-dir"])
        .arg(data_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(key.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn health(m: &TestManager) -> Option<i32> {
    let ca = m.operator().ca_pem;
    let ch = tls::connect(&m.addr, &tls::client_config(&ca, None).ok()?, Role::Manager)
        .await
        .ok()?;
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

async fn serves_control(m: &TestManager) -> bool {
    let op = m.operator();
    let Ok(tls) = op.client_tls() else {
        return false;
    };
    let Ok(ch) = tls::connect(&m.addr, &tls, Role::Manager).await else {
        return false;
    };
    ControlClient::new(ch)
        .get_cluster_info(GetClusterInfoRequest {})
        .await
        .is_ok()
}

fn restart(m: &mut TestManager, dir: &Path, n: usize) {
    m.proc.terminate();
    let mut cmd = Command::new(bin_path("lnswarm-manager"));
    cmd.args(["run", "--data-dir"]).arg(&m.data_dir);
    m.proc = Proc::spawn(&format!("manager-run-{n}"), cmd, dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_autolocked_manager_serves_only_health_until_unlocked() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = TestManager::init(dir.path(), None).await;
    let token = worker_token(&m);

    let mut on = m.ctl();
    on.args(["cluster", "update", "--autolock", "true"]);
    let (status, out, err) = run(on);
    assert!(status.success(), "{err}");
    let key = out
        .lines()
        .find(|l| l.starts_with("LNSKEY-1-"))
        .unwrap_or_else(|| panic!("prints the unlock key once: {out}"))
        .to_string();
    let mut show = m.ctl();
    show.args(["cluster", "unlock-key"]);
    let (_, shown, _) = run(show);
    assert_eq!(shown.trim(), key, "unlock-key shows the same key");
    // The key file follows the setting before the restart.
    let key_file = m.data_dir.join("keys/data-key.json");
    wait::until(
        "the data key to be wrapped",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(&key_file)
                .ok()
                .filter(|t| t.contains("wrapped"))
                .map(|_| ())
        },
    )
    .await;

    restart(&mut m, dir.path(), 1);
    wait::until(
        "the locked manager's health",
        Duration::from_secs(20),
        || async { health(&m).await.filter(|s| *s == 2).map(|_| ()) },
    )
    .await;
    assert!(
        !serves_control(&m).await,
        "a locked manager answers no Control call"
    );

    let (ok, out) = unlock(&m.data_dir, &format!("LNSKEY-1-{}", "00".repeat(32)));
    assert!(!ok && out.contains("wrong unlock key"), "{out}");
    let (ok, out) = unlock(&m.data_dir, "not a key");
    assert!(!ok && out.contains("malformed"), "{out}");
    assert!(!serves_control(&m).await, "still locked after wrong keys");

    let (ok, out) = unlock(&m.data_dir, &key);
    assert!(ok, "{out}");
    m.wait_ready().await;
    assert_eq!(worker_token(&m), token, "its state is back");

    // A rotated key opens the next restart; the old one no longer does.
    let before = std::fs::read_to_string(&key_file).unwrap();
    let mut rotate = m.ctl();
    rotate.args(["cluster", "unlock-key", "--rotate"]);
    let (status, rotated, err) = run(rotate);
    assert!(status.success(), "{err}");
    let rotated = rotated.trim().to_string();
    assert_ne!(rotated, key);
    wait::until(
        "the data key to be rewrapped",
        Duration::from_secs(10),
        || async { (std::fs::read_to_string(&key_file).ok()? != before).then_some(()) },
    )
    .await;
    restart(&mut m, dir.path(), 2);
    wait::until(
        "the locked manager's health",
        Duration::from_secs(20),
        || async { health(&m).await.filter(|s| *s == 2).map(|_| ()) },
    )
    .await;
    let (ok, out) = unlock(&m.data_dir, &key);
    assert!(
        !ok && out.contains("wrong unlock key"),
        "the old key: {out}"
    );
    let (ok, out) = unlock(&m.data_dir, &rotated);
    assert!(ok, "{out}");
    m.wait_ready().await;

    // Turned off, a restart needs no key.
    let mut off = m.ctl();
    off.args(["cluster", "update", "--autolock", "false"]);
    let (status, _, err) = run(off);
    assert!(status.success(), "{err}");
    wait::until(
        "the data key to be unwrapped",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(&key_file)
                .ok()
                .filter(|t| !t.contains("wrapped"))
                .map(|_| ())
        },
    )
    .await;
    restart(&mut m, dir.path(), 3);
    m.wait_ready().await;
    assert_eq!(worker_token(&m), token);
}
