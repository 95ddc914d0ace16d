//! CPU priority for the quorum. A manager that cannot get the CPU in time misses its
//! raft heartbeats and loses its leader; on a busy host (300 agents starting at
//! once on the same two cores) that happened twice in a row. etcd's tuning guide
//! gives etcd a higher priority for the same reason. Set before any thread starts,
//! the nice value is inherited by every thread of the process.

/// Lowers the process's nice value to `nice` (negative is more urgent) if this
/// process may (root, or CAP_SYS_NICE as the systemd unit grants). Returns whether
/// it did; a process without the right keeps its priority.
pub fn raise_to(nice: i32) -> bool {
    // SAFETY: setpriority takes plain integers and touches only this process.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) == 0 }
}
