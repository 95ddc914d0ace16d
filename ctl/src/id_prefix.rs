//! Ids by unique prefix, as `docker` takes them: typing a whole UUID is a chore,
//! and a prefix that names two objects must not silently pick one.

use anyhow::{bail, Result};
use lnswarm_common::api::{control_client::ControlClient, ListAgentsRequest, ListTasksRequest};
use tonic::transport::Channel;

/// The one id of `ids` that is `given` or starts with it. When none does, `given`
/// itself, so that the manager's own "not found" names it.
pub fn resolve<'a>(
    kind: &str,
    given: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<String> {
    if given.is_empty() {
        bail!("an empty {kind} id matches nothing");
    }
    let mut matches = Vec::new();
    for id in ids {
        if id == given {
            return Ok(id.to_string());
        }
        if id.starts_with(given) {
            matches.push(id);
        }
    }
    match matches.as_slice() {
        [] => Ok(given.to_string()),
        [one] => Ok(one.to_string()),
        many => bail!(
            "{kind} id prefix {given:?} is ambiguous: it matches {} {kind}s ({}); give more characters",
            many.len(),
            many.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        ),
    }
}

pub async fn agent(control: &mut ControlClient<Channel>, given: &str) -> Result<String> {
    let agents = control
        .list_agents(ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    resolve("agent", given, agents.iter().map(|a| a.id.as_str()))
}

pub async fn task(control: &mut ControlClient<Channel>, given: &str) -> Result<String> {
    let tasks = control
        .list_tasks(ListTasksRequest::default())
        .await?
        .into_inner()
        .tasks;
    resolve("task", given, tasks.iter().map(|t| t.id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [&str; 3] = ["a1b2", "a1c3", "b77"];

    #[test]
    fn a_unique_prefix_names_its_object() {
        assert_eq!(resolve("agent", "a1b", IDS).unwrap(), "a1b2");
        assert_eq!(resolve("agent", "b", IDS).unwrap(), "b77");
    }

    #[test]
    fn an_exact_id_wins_over_longer_ones() {
        assert_eq!(resolve("agent", "b7", ["b7", "b77"]).unwrap(), "b7");
    }

    #[test]
    fn an_ambiguous_prefix_is_refused_with_the_candidates() {
        let e = resolve("agent", "a1", IDS).unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("a1b2") && e.contains("a1c3"),
            "{e}"
        );
    }

    #[test]
    fn no_match_passes_the_id_through() {
        assert_eq!(resolve("agent", "zz", IDS).unwrap(), "zz");
        assert!(resolve("agent", "", IDS).is_err());
    }
}
