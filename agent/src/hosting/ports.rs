//! Ports for hosted nodes from the agent's range, remembered per node so a node keeps
//! its Lightning and Node API addresses across restarts (peers and owners reconnect
//! to the same place).

use std::{
    collections::HashSet,
    net::TcpListener,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodePorts {
    pub lightning: u16,
    pub api: u16,
}

const FILE: &str = "ports.json";

fn read(dir: &Path) -> Option<NodePorts> {
    serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
}

fn free_now(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok()
}

/// The node's ports: the ones it had, or two unused ones from `range`.
/// `nodes_root` holds one directory per node; `node_dir` is this node's.
pub fn allocate(
    nodes_root: &Path,
    node_dir: &Path,
    range: (u16, u16),
) -> std::io::Result<NodePorts> {
    if let Some(p) = read(node_dir) {
        return Ok(p);
    }
    let taken: HashSet<u16> = std::fs::read_dir(nodes_root)?
        .filter_map(|e| e.ok())
        .filter_map(|e| read(&e.path()))
        .flat_map(|p| [p.lightning, p.api])
        .collect();
    let mut free = (range.0..=range.1).filter(|p| !taken.contains(p) && free_now(*p));
    let (Some(lightning), Some(api)) = (free.next(), free.next()) else {
        return Err(std::io::Error::other(format!(
            "no two free ports left in {}-{}",
            range.0, range.1
        )));
    };
    let ports = NodePorts { lightning, api };
    let path: PathBuf = node_dir.join(FILE);
    std::fs::write(&path, serde_json::to_vec(&ports)?)?;
    Ok(ports)
}
