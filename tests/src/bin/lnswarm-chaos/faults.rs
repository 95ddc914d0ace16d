//! The faults, one at a time: each is injected, held for a while, and healed (the
//! killed process started again, the stopped one continued), so that at most one
//! manager of three is ever down and every fault is a minority fault.

use std::{path::Path, time::Duration};

use anyhow::{anyhow, Result};
use lnswarm_tests::{agents::TestAgent, cluster::ManagerCluster, hosting::node_processes};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use rand::{rngs::StdRng, seq::SliceRandom, Rng};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillFollower,
    KillAgent,
    StopAgent,
    RestartManager,
    PauseManager,
    KillNode,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::KillAgent,
        Fault::StopAgent,
        Fault::RestartManager,
        Fault::PauseManager,
        Fault::KillNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill -9 leader",
            Fault::KillFollower => "kill -9 follower",
            Fault::KillAgent => "kill -9 agent",
            Fault::StopAgent => "SIGSTOP agent",
            Fault::RestartManager => "restart manager",
            Fault::PauseManager => "SIGSTOP manager",
            Fault::KillNode => "kill -9 hosted node",
        }
    }
}

/// What the fault loop holds to inject faults.
pub struct Targets<'a> {
    pub managers: &'a mut ManagerCluster,
    pub agents: &'a mut [TestAgent],
    pub root: &'a Path,
    /// Node ids, in ring order.
    pub nodes: &'a [String],
}

/// Injects `fault`, holds it for `hold`, and heals it. Returns what it hit.
pub async fn inject(
    t: &mut Targets<'_>,
    fault: Fault,
    hold: Duration,
    rng: &mut StdRng,
) -> Result<String> {
    match fault {
        Fault::KillLeader | Fault::KillFollower => {
            let l = t
                .managers
                .agreed_leader()
                .await
                .ok_or_else(|| anyhow!("no agreed leader"))?;
            let i = if fault == Fault::KillLeader {
                l
            } else {
                *(0..t.managers.managers.len())
                    .filter(|i| *i != l)
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .expect("three managers")
            };
            t.managers.kill9(i);
            tokio::time::sleep(hold).await;
            t.managers.restart(i, &[]);
            Ok(t.managers.managers[i].name.clone())
        }
        Fault::RestartManager => {
            let i = rng.gen_range(0..t.managers.managers.len());
            if let Some(mut p) = t.managers.managers[i].proc.take() {
                p.terminate();
            }
            t.managers.restart(i, &[]);
            Ok(t.managers.managers[i].name.clone())
        }
        Fault::PauseManager => {
            let i = rng.gen_range(0..t.managers.managers.len());
            let pid = t.managers.managers[i].proc.as_ref().map_or(0, |p| p.pid()) as i32;
            kill(Pid::from_raw(pid), Signal::SIGSTOP)?;
            tokio::time::sleep(hold).await;
            kill(Pid::from_raw(pid), Signal::SIGCONT)?;
            Ok(t.managers.managers[i].name.clone())
        }
        Fault::KillAgent => {
            let i = rng.gen_range(0..t.agents.len());
            t.agents[i].kill9();
            tokio::time::sleep(hold).await;
            t.agents[i].start();
            Ok(t.agents[i].id.clone())
        }
        Fault::StopAgent => {
            let i = rng.gen_range(0..t.agents.len());
            t.agents[i].freeze(true);
            tokio::time::sleep(hold).await;
            t.agents[i].freeze(false);
            Ok(t.agents[i].id.clone())
        }
        Fault::KillNode => {
            let procs = node_processes(t.root);
            let node = t.nodes.choose(rng).ok_or_else(|| anyhow!("no nodes"))?;
            let pid = procs
                .get(node)
                .and_then(|p| p.first().copied())
                .ok_or_else(|| anyhow!("node {node} has no process"))?;
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
            Ok(format!("node {}", &node[..12]))
        }
    }
}
