//! Calls that wait through an election. Right after a leader is lost, managers answer
//! UNAVAILABLE ("no quorum", "not the leader") until a new one is elected, and a dead
//! manager does not answer at all. For calls that are safe to repeat, lnswarmctl
//! tries each manager it was given in turn, with backoff, for up to
//! [`ELECTION_BOUND`], and then reports the last answer.

use std::{future::Future, time::Duration};

use tonic::{Code, Status};

/// Longest wait for a cluster to answer again (an election takes a few seconds).
pub const ELECTION_BOUND: Duration = Duration::from_secs(30);

/// The metadata key managers set on an UNAVAILABLE that is worth retrying (no
/// leader, no quorum); an UNAVAILABLE without it is a verdict about the request.
pub const TRANSIENT: &str = "lnswarm-transient";

/// An UNAVAILABLE from a cluster that is not answering for now.
pub fn is_transient(s: &Status) -> bool {
    s.code() == Code::Unavailable && s.metadata().get(TRANSIENT).is_some()
}

/// UNAVAILABLE for a manager that could not be reached: the next one may answer.
pub fn unreachable(why: impl std::fmt::Display) -> Status {
    let mut s = Status::unavailable(why.to_string());
    s.metadata_mut()
        .insert(TRANSIENT, tonic::metadata::MetadataValue::from_static("1"));
    s
}

/// The addresses in a `--manager` value (`HOST:PORT[,HOST:PORT...]`).
pub fn manager_addrs(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs `call` against each of `managers` in turn until one answers with anything
/// but UNAVAILABLE, or [`ELECTION_BOUND`] has passed. Only for calls that are safe to
/// repeat: an UNAVAILABLE write may still commit.
pub async fn idempotent<T, F, Fut>(managers: &[String], mut call: F) -> Result<T, Status>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = tokio::time::Instant::now() + ELECTION_BOUND;
    let mut delay = Duration::from_millis(200);
    let mut said = false;
    for attempt in 0usize.. {
        let addr = managers[attempt % managers.len().max(1)].clone();
        match call(addr).await {
            Err(s) if is_transient(&s) && tokio::time::Instant::now() < deadline => {
                if !said {
                    eprintln!(
                        "the cluster is not answering ({}); retrying for up to {} s",
                        s.message(),
                        ELECTION_BOUND.as_secs()
                    );
                    said = true;
                }
                // A full round over every manager before waiting.
                if (attempt + 1) % managers.len().max(1) == 0 {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}
