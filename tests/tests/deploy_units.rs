//! The systemd units in deploy/ pass `systemd-analyze verify` against the binaries
//! this build made, and score below 5 in `systemd-analyze security` (what an
//! operator installing them would check). `.ci/run` installs systemd-analyze.

use std::process::Command;

#[test]
fn units_verify_and_are_hardened() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("deploy/check-units.sh"))
        .current_dir(&root)
        .output()
        .expect("run deploy/check-units.sh (needs systemd-analyze)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "deploy/check-units.sh: {text}");
    for unit in ["lnswarm-manager.service", "lnswarm-agent.service"] {
        assert!(
            text.contains(&format!("exposure level for {unit}")),
            "{text}"
        );
    }
}
