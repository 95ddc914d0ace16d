//! Placement: which agent takes a new task. Only agents that are READY and ACTIVE
//! with a free task slot qualify; among them the one running the fewest live tasks
//! wins, so work spreads across agents.

use std::collections::HashMap;

use lnswarm_common::{
    api::{Agent, AgentState, Availability, Task, TaskSpec, TaskState, TaskStatus},
    ids::{new_id, now_unix_ms},
};

use crate::store::{keys, Store, StoreError};

/// Whether a task still holds (or may hold) a process on its agent.
pub fn is_live(task: &Task) -> bool {
    task.status
        .as_ref()
        .map(|s| s.state < TaskState::Complete as i32)
        .unwrap_or(true)
}

pub fn agent_state(agent: &Agent) -> AgentState {
    agent
        .status
        .as_ref()
        .and_then(|s| AgentState::try_from(s.state).ok())
        .unwrap_or(AgentState::Unknown)
}

/// Why an agent cannot take a task now, if it cannot.
pub fn unfit(agent: &Agent, live_tasks: usize) -> Option<String> {
    match agent_state(agent) {
        AgentState::Ready => {}
        other => return Some(format!("agent {} is {}", agent.id, state_word(other))),
    }
    match Availability::try_from(agent.availability).unwrap_or(Availability::Active) {
        Availability::Active => {}
        Availability::Pause => return Some(format!("agent {} is paused", agent.id)),
        Availability::Drain => return Some(format!("agent {} is draining", agent.id)),
    }
    let slots = agent
        .description
        .as_ref()
        .map(|d| d.task_slots as usize)
        .filter(|s| *s > 0)
        .unwrap_or(usize::MAX);
    if live_tasks >= slots {
        return Some(format!("agent {} has no free task slot", agent.id));
    }
    None
}

fn state_word(state: AgentState) -> &'static str {
    match state {
        AgentState::Ready => "READY",
        AgentState::Down => "DOWN",
        AgentState::Disconnected => "DISCONNECTED",
        AgentState::Unknown => "in an unknown state",
    }
}

/// Live tasks per agent, counted once: placement asks for every candidate agent,
/// and the orchestrator for every node, so counting by scanning the task list each
/// time cost agents × tasks.
#[derive(Default)]
pub struct Load(HashMap<String, usize>);

impl Load {
    pub fn of(tasks: &[Task]) -> Self {
        let mut load = Load::default();
        for t in tasks.iter().filter(|t| is_live(t)) {
            load.add(&t.agent_id);
        }
        load
    }

    /// Live tasks on `agent_id`.
    pub fn on(&self, agent_id: &str) -> usize {
        self.0.get(agent_id).copied().unwrap_or(0)
    }

    /// Counts a task placed on `agent_id` since the count was taken, so several
    /// placements in one pass spread out.
    pub fn add(&mut self, agent_id: &str) {
        *self.0.entry(agent_id.to_string()).or_default() += 1;
    }
}

/// Most reasons listed when no agent can take a task.
const MAX_REASONS: usize = 5;

/// The agent a new task should go to, or why none can take it.
pub fn choose(agents: &[Agent], load: &Load) -> Result<String, String> {
    choose_among(agents, load)
}

/// As [`choose`], among some of the agents (for example all but the one a node
/// is leaving).
pub fn choose_among<'a>(
    agents: impl IntoIterator<Item = &'a Agent>,
    load: &Load,
) -> Result<String, String> {
    let mut reasons = Vec::new();
    let (mut seen, mut unfit_count) = (0usize, 0usize);
    let best = agents
        .into_iter()
        .inspect(|_| seen += 1)
        .filter(|a| match unfit(a, load.on(&a.id)) {
            None => true,
            Some(why) => {
                unfit_count += 1;
                if reasons.len() < MAX_REASONS {
                    reasons.push(why);
                }
                false
            }
        })
        .min_by_key(|a| (load.on(&a.id), a.id.as_str()));
    match best {
        Some(a) => Ok(a.id.clone()),
        None if seen == 0 => Err("no agent has joined the cluster".into()),
        None => {
            let more = unfit_count - reasons.len();
            if more > 0 {
                reasons.push(format!("and {more} more"));
            }
            Err(format!("no agent can take it: {}", reasons.join("; ")))
        }
    }
}

/// Every agent and every task in the store: what placement decides from.
pub fn agents_and_tasks(store: &Store) -> Result<(Vec<Agent>, Vec<Task>), StoreError> {
    let agents = store.list::<Agent>(keys::AGENTS)?;
    let tasks = store.list::<Task>(keys::TASKS)?;
    Ok((
        agents.into_iter().map(|(_, a)| a).collect(),
        tasks.into_iter().map(|(_, t)| t).collect(),
    ))
}

/// [`choose`] over the agents and tasks in the store.
pub fn choose_from(store: &Store) -> Result<Result<String, String>, StoreError> {
    let (agents, tasks) = agents_and_tasks(store)?;
    Ok(choose(&agents, &Load::of(&tasks)))
}

/// A new task placed on `agent_id`, wanted running, not yet started.
pub fn assigned_task(spec: TaskSpec, agent_id: &str, node_id: &str) -> Task {
    let now = now_unix_ms();
    Task {
        id: new_id(),
        version: None,
        spec: Some(spec),
        agent_id: agent_id.to_string(),
        node_id: node_id.to_string(),
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Assigned as i32,
            message: "assigned".into(),
            timestamp_unix_ms: now,
            ..Default::default()
        }),
        created_unix_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use lnswarm_common::api::{AgentDescription, AgentStatus, TaskStatus};

    use super::*;

    fn agent(id: &str, state: AgentState, availability: Availability, slots: u32) -> Agent {
        Agent {
            id: id.into(),
            status: Some(AgentStatus {
                state: state as i32,
                ..Default::default()
            }),
            availability: availability as i32,
            description: Some(AgentDescription {
                task_slots: slots,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(agent: &str, state: TaskState) -> Task {
        Task {
            agent_id: agent.into(),
            status: Some(TaskStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn spreads_and_skips_agents_that_cannot_take_work() {
        let agents = vec![
            agent("a", AgentState::Ready, Availability::Active, 10),
            agent("b", AgentState::Ready, Availability::Active, 10),
            agent("c", AgentState::Down, Availability::Active, 10),
            agent("d", AgentState::Ready, Availability::Drain, 10),
        ];
        let tasks = vec![task("a", TaskState::Running), task("b", TaskState::Failed)];
        let mut load = Load::of(&tasks);
        assert_eq!(
            choose(&agents, &load).unwrap(),
            "b",
            "finished tasks do not count"
        );
        load.add("b");
        load.add("b");
        assert_eq!(
            choose(&agents, &load).unwrap(),
            "a",
            "tasks placed since the count was taken count"
        );
        let full = vec![agent("a", AgentState::Ready, Availability::Active, 1)];
        let err = choose(&full, &Load::of(&[task("a", TaskState::Running)])).unwrap_err();
        assert!(err.contains("no free task slot"), "{err}");
        let err = choose(&agents[2..], &Load::default()).unwrap_err();
        assert!(err.contains("DOWN") && err.contains("draining"), "{err}");
    }

    #[test]
    fn lists_a_few_reasons_when_no_agent_fits() {
        let agents: Vec<Agent> = (0..12)
            .map(|i| {
                agent(
                    &format!("a{i:02}"),
                    AgentState::Down,
                    Availability::Active,
                    1,
                )
            })
            .collect();
        let err = choose(&agents, &Load::default()).unwrap_err();
        assert_eq!(err.matches("is DOWN").count(), MAX_REASONS, "{err}");
        assert!(err.ends_with("and 7 more"), "{err}");
    }
}
