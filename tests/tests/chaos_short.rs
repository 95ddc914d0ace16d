//! The short chaos run: `lnswarm-chaos` for 2 minutes with a fixed seed (3
//! managers, 3 agents, 10 hosted nodes in a ring, payments and Control writes,
//! a random fault every few seconds). It fails on any invariant violation the
//! run's checkers report, and on a run that proved nothing (no fault injected,
//! no payment made, no write acknowledged).

use std::process::Command;

use lnswarm_tests::{bin_path, process::run};

/// The `n`th comma-separated figure on the line that starts with `prefix`.
fn figure(out: &str, prefix: &str, n: usize) -> usize {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split(", ").nth(n))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("no figure {n} on a '{prefix}' line in:\n{out}"))
}

#[test]
fn two_minutes_of_faults_break_no_invariant() {
    let mut cmd = Command::new(bin_path("lnswarm-chaos"));
    cmd.args(["--minutes", "2", "--seed", "7"]);
    let (status, out, err) = run(cmd);
    println!("{out}");
    assert!(
        status.success(),
        "the chaos run failed ({status}):\n{out}\n{err}"
    );
    assert_eq!(figure(&out, "## invariant violations: ", 0), 0, "{out}");
    // Each fault waits for the cluster to heal before the next, so how many fit in
    // two minutes depends on the machine (9 to 15 seen); a handful proves a run.
    assert!(figure(&out, "## faults injected: ", 0) >= 5, "{out}");
    assert!(
        figure(&out, "## payments: ", 1) > 0,
        "no payment succeeded:\n{out}"
    );
    assert!(
        figure(&out, "## control writes: ", 1) > 0,
        "no write was acknowledged:\n{out}"
    );
}
