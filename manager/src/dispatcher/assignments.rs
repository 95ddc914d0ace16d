//! Builds one agent's Assignments messages from the store: a COMPLETE set, then
//! INCREMENTAL changes read from the store's change log by the agent's watch tag.
//!
//! `results_in` is a store index written in decimal: the message brings the agent's
//! set up to the store's state at that index (for the agent's items). Because every
//! manager applies the same log, an agent can present its last `results_in` to any
//! manager, including a new leader, and continue from there; when the change log no
//! longer reaches back that far, it gets a COMPLETE set instead.
//!
//! Items are tasks placed on the agent and the secrets those tasks name. A secret is
//! referenced by the tasks that use it; it is sent when its first task arrives and
//! REMOVEd when its last one goes. (After a resume, tasks removed during the gap are
//! unknown to the dispatcher; agents also drop secrets no task of theirs names.)

use std::collections::{BTreeMap, HashMap, HashSet};

use lnswarm_common::api::{
    assignment::Item, Assignment, AssignmentAction, AssignmentChange, AssignmentsMessage,
    AssignmentsType, Secret, Task, Version,
};
use prost::Message;
use tracing::debug;

use super::config::DispatcherConfig;
use crate::store::{keys, secrets, StateMachine, Store, StoreError};

/// The parsed form of a `results_in` / `applies_to` value.
pub fn parse_version(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// One agent's assignment state, as the stream last sent it.
pub struct AgentAssignments {
    agent_id: String,
    tag: String,
    /// The secret ids each task held by the agent names.
    task_secrets: HashMap<String, Vec<String>>,
    /// Tasks naming each secret the agent holds.
    secret_refs: HashMap<String, HashSet<String>>,
}

/// A change with the store index it brings the agent to.
struct Pending {
    index: u64,
    change: AssignmentChange,
}

fn change(item: Item, action: AssignmentAction) -> AssignmentChange {
    AssignmentChange {
        assignment: Some(Assignment { item: Some(item) }),
        action: action as i32,
    }
}

use keys::{secret_id_of, task_id_of};

impl AgentAssignments {
    pub fn new(agent_id: &str) -> Self {
        AgentAssignments {
            agent_id: agent_id.to_string(),
            tag: keys::agent_tag(agent_id),
            task_secrets: HashMap::new(),
            secret_refs: HashMap::new(),
        }
    }

    /// The agent's tasks as of now (from the store's index of tasks by agent).
    fn current_tasks(&self, store: &Store) -> Result<Vec<Task>, StoreError> {
        store
            .state()
            .tasks_of_agent(&self.agent_id)?
            .into_iter()
            .map(|(_, v)| Ok(with_version(v.version, v.decode::<Task>()?)))
            .collect()
    }

    /// The whole set, and the index it reflects.
    pub fn complete(&mut self, store: &Store) -> Result<(AssignmentsMessage, u64), StoreError> {
        let sm = store.state();
        // Retry until no change for this agent landed while the set was read, so the
        // set is exactly the state at `index`.
        let mut attempts = 0;
        let (tasks, index) = loop {
            let before = sm.applied_index();
            let tasks = self.current_tasks(store)?;
            let after = sm.applied_index();
            attempts += 1;
            let moved = sm
                .changes_since(before, &self.tag)?
                .is_none_or(|sets| sets.iter().any(|s| s.index <= after));
            if !moved || attempts >= 5 {
                break (tasks, after);
            }
        };
        self.task_secrets.clear();
        self.secret_refs.clear();
        let mut changes = Vec::with_capacity(tasks.len());
        for task in tasks {
            self.hold_task(&task);
            changes.push(change(Item::Task(task), AssignmentAction::Update));
        }
        for secret_id in self.secret_refs.keys() {
            if let Some(secret) = secrets::get(store, secret_id)? {
                changes.push(change(Item::Secret(secret), AssignmentAction::Update));
            }
        }
        Ok((
            AssignmentsMessage {
                r#type: AssignmentsType::Complete as i32,
                applies_to: String::new(),
                results_in: index.to_string(),
                changes,
            },
            index,
        ))
    }

    /// Seeds the reference counts before resuming at `since`, an index the agent
    /// presented (this dispatcher has no record of what was sent earlier).
    ///
    /// Only tasks no change has touched since `since` are counted as held: the
    /// agent holds exactly those, with their secrets. A task written after `since`
    /// is unknown as the agent had it (it may be new to the agent), so the replay
    /// of its change must send its secrets; counting it as held made a task placed
    /// just before a leader change wait for its seed forever.
    pub fn resume(&mut self, store: &Store, since: u64) -> Result<(), StoreError> {
        self.task_secrets.clear();
        self.secret_refs.clear();
        for task in self.current_tasks(store)? {
            if task.version.as_ref().is_some_and(|v| v.index <= since) {
                self.hold_task(&task);
            }
        }
        Ok(())
    }

    /// Records that the agent holds `task`; returns the secrets it newly needs.
    fn hold_task(&mut self, task: &Task) -> Vec<String> {
        let ids: Vec<String> = task
            .spec
            .as_ref()
            .map(|s| s.secret_ids.clone())
            .unwrap_or_default();
        let released = self.release_task(&task.id);
        let mut added = Vec::new();
        for id in &ids {
            let refs = self.secret_refs.entry(id.clone()).or_default();
            if refs.is_empty() && !released.contains(id) {
                added.push(id.clone());
            }
            refs.insert(task.id.clone());
        }
        self.task_secrets.insert(task.id.clone(), ids);
        added
    }

    /// Forgets `task_id`; returns the secrets no task needs any more, in order
    /// to REMOVE them (callers that re-hold the task filter those out).
    fn release_task(&mut self, task_id: &str) -> Vec<String> {
        let mut released = Vec::new();
        for id in self.task_secrets.remove(task_id).unwrap_or_default() {
            if let Some(refs) = self.secret_refs.get_mut(&id) {
                refs.remove(task_id);
                if refs.is_empty() {
                    self.secret_refs.remove(&id);
                    released.push(id);
                }
            }
        }
        released
    }

    /// The messages that bring the agent from `cursor` to the current state, cut into
    /// messages within the caps, chained from `applies_to`. `Ok(None)` when the change
    /// log no longer reaches back to `cursor` (send a COMPLETE). Also returns the new
    /// cursor, which advances even when there is nothing to send.
    pub fn incremental(
        &mut self,
        store: &Store,
        cursor: u64,
        applies_to: &str,
        config: &DispatcherConfig,
    ) -> Result<Option<(Vec<AssignmentsMessage>, u64)>, StoreError> {
        let sm = store.state();
        let Some((mut upto, mut keyed)) = self.changed_keys(sm, cursor)? else {
            return Ok(None);
        };
        // Read the changed objects, then make sure nothing for this agent changed
        // after `upto` meanwhile (else take those changes in too), so each value is
        // the one at `upto` and no change is sent twice.
        let mut values: HashMap<String, Option<Value>> = HashMap::new();
        for _ in 0..5 {
            for key in keyed.keys() {
                if !values.contains_key(key) {
                    values.insert(key.clone(), read_value(store, key)?);
                }
            }
            match self.changed_keys(sm, upto)? {
                None => return Ok(None),
                Some((_, extra)) if extra.is_empty() => break,
                Some((last, extra)) => {
                    for (k, i) in extra {
                        values.remove(&k);
                        keyed.insert(k, i);
                    }
                    upto = last;
                }
            }
        }
        for key in keyed.keys() {
            if !values.contains_key(key) {
                values.insert(key.clone(), read_value(store, key)?);
            }
        }
        // Keys in the order of their last change.
        let mut ordered: Vec<(u64, String)> = keyed.into_iter().map(|(k, i)| (i, k)).collect();
        ordered.sort();
        let mut pending = Vec::new();
        for (index, key) in ordered {
            let value = values.remove(&key).flatten();
            if let Some(task_id) = task_id_of(&key) {
                match value {
                    Some(Value::Task(task)) if task.agent_id == self.agent_id => {
                        let task = *task;
                        let before: Vec<String> =
                            self.task_secrets.get(task_id).cloned().unwrap_or_default();
                        let added = self.hold_task(&task);
                        for id in added {
                            if let Some(secret) = secrets::get(store, &id)? {
                                pending.push(Pending {
                                    index,
                                    change: change(Item::Secret(secret), AssignmentAction::Update),
                                });
                            }
                        }
                        pending.push(Pending {
                            index,
                            change: change(Item::Task(task), AssignmentAction::Update),
                        });
                        for id in before {
                            if !self.secret_refs.contains_key(&id) {
                                pending.push(Pending {
                                    index,
                                    change: secret_removal(&id),
                                });
                            }
                        }
                    }
                    _ => {
                        for id in self.release_task(task_id) {
                            pending.push(Pending {
                                index,
                                change: secret_removal(&id),
                            });
                        }
                        pending.push(Pending {
                            index,
                            change: change(
                                Item::Task(Task {
                                    id: task_id.to_string(),
                                    ..Default::default()
                                }),
                                AssignmentAction::Remove,
                            ),
                        });
                    }
                }
            } else if let Some(secret_id) = secret_id_of(&key) {
                if !self.secret_refs.contains_key(secret_id) {
                    continue;
                }
                let c = match value {
                    Some(Value::Secret(secret)) => {
                        change(Item::Secret(secret), AssignmentAction::Update)
                    }
                    _ => secret_removal(secret_id),
                };
                pending.push(Pending { index, change: c });
            }
        }
        Ok(Some((cut(pending, applies_to, upto, config), upto)))
    }

    /// Every task or secret key changed for this agent after `cursor`, with the index
    /// of its last change, and the last index that touched the agent's tag.
    #[allow(clippy::type_complexity)]
    fn changed_keys(
        &self,
        sm: &StateMachine,
        cursor: u64,
    ) -> Result<Option<(u64, BTreeMap<String, u64>)>, StoreError> {
        let Some(sets) = sm.changes_since(cursor, &self.tag)? else {
            return Ok(None);
        };
        let mut last = cursor;
        let mut keyed = BTreeMap::new();
        for set in sets {
            for c in set.changes {
                if task_id_of(&c.key).is_some() || secret_id_of(&c.key).is_some() {
                    keyed.insert(c.key, set.index);
                }
            }
            last = last.max(set.index);
        }
        Ok(Some((last, keyed)))
    }
}

/// Where one Assignments stream stands, so that a stream is a loop of "send what
/// [`Feed::next`] returns, wait for a change": the agent's set as sent, and the
/// store index read up to with the `results_in` of the last message sent (none
/// before the first message).
pub struct Feed {
    set: AgentAssignments,
    at: Option<(u64, String)>,
}

impl Feed {
    pub fn new(agent_id: &str) -> Self {
        Feed {
            set: AgentAssignments::new(agent_id),
            at: None,
        }
    }

    /// A stream's first messages: from `since` (the `results_in` the agent last
    /// applied) when the change log reaches back that far, at least one so that
    /// the agent learns where it stands; else the complete set.
    pub fn start(
        &mut self,
        store: &Store,
        since: Option<u64>,
        config: &DispatcherConfig,
    ) -> Result<Vec<AssignmentsMessage>, StoreError> {
        if let Some(since) = since {
            self.set.resume(store, since)?;
            match self
                .set
                .incremental(store, since, &since.to_string(), config)?
            {
                Some((mut messages, upto)) => {
                    if messages.is_empty() {
                        messages.push(AssignmentsMessage {
                            r#type: AssignmentsType::Incremental as i32,
                            applies_to: since.to_string(),
                            results_in: upto.to_string(),
                            changes: vec![],
                        });
                    }
                    let last = messages
                        .last()
                        .map(|m| m.results_in.clone())
                        .unwrap_or_default();
                    debug!(since, upto, "resuming with an incremental update");
                    self.at = Some((upto, last));
                    return Ok(messages);
                }
                None => debug!(since, "cannot resume from there; sending the complete set"),
            }
        }
        self.complete(store)
    }

    /// The messages since the last ones (none when nothing changed for the
    /// agent), or the complete set when the change log no longer reaches back or
    /// nothing was sent yet.
    pub fn next(
        &mut self,
        store: &Store,
        config: &DispatcherConfig,
    ) -> Result<Vec<AssignmentsMessage>, StoreError> {
        let Some((cursor, last_sent)) = self.at.take() else {
            return self.complete(store);
        };
        match self.set.incremental(store, cursor, &last_sent, config)? {
            Some((messages, upto)) => {
                let last = messages.last().map_or(last_sent, |m| m.results_in.clone());
                self.at = Some((upto, last));
                Ok(messages)
            }
            None => self.complete(store),
        }
    }

    fn complete(&mut self, store: &Store) -> Result<Vec<AssignmentsMessage>, StoreError> {
        let (message, index) = self.set.complete(store)?;
        debug!(index, items = message.changes.len(), "complete set sent");
        self.at = Some((index, message.results_in.clone()));
        Ok(vec![message])
    }
}

/// A task as sent: stamped with the store index that last wrote it.
fn with_version(version: u64, mut task: Task) -> Task {
    task.version = Some(Version { index: version });
    task
}

enum Value {
    Task(Box<Task>),
    Secret(Secret),
}

fn read_value(store: &Store, key: &str) -> Result<Option<Value>, StoreError> {
    Ok(if task_id_of(key).is_some() {
        store
            .get::<Task>(key)?
            .map(|(v, t)| Value::Task(Box::new(with_version(v, t))))
    } else {
        secret_id_of(key)
            .map(|id| secrets::get(store, id))
            .transpose()?
            .flatten()
            .map(Value::Secret)
    })
}

fn secret_removal(id: &str) -> AssignmentChange {
    change(
        Item::Secret(Secret {
            id: id.to_string(),
            ..Default::default()
        }),
        AssignmentAction::Remove,
    )
}

/// Cuts changes (sorted by index) into messages within the caps, at index boundaries,
/// chained from `applies_to`; the last message results in `upto`.
fn cut(
    pending: Vec<Pending>,
    applies_to: &str,
    upto: u64,
    config: &DispatcherConfig,
) -> Vec<AssignmentsMessage> {
    let mut messages: Vec<AssignmentsMessage> = Vec::new();
    let mut current: Vec<AssignmentChange> = Vec::new();
    let mut bytes = 0;
    let mut prev = applies_to.to_string();
    let mut iter = pending.into_iter().peekable();
    while let Some(p) = iter.next() {
        bytes += p.change.encoded_len();
        current.push(p.change);
        let next_index = iter.peek().map(|n| n.index);
        let last = next_index.is_none();
        let at_boundary = next_index.is_none_or(|n| n > p.index);
        let full =
            current.len() >= config.assignments_max_items || bytes >= config.assignments_max_bytes;
        if last || (full && at_boundary) {
            let results_in = if last { upto } else { p.index };
            messages.push(AssignmentsMessage {
                r#type: AssignmentsType::Incremental as i32,
                applies_to: prev.clone(),
                results_in: results_in.to_string(),
                changes: std::mem::take(&mut current),
            });
            prev = results_in.to_string();
            bytes = 0;
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use lnswarm_common::api::TaskSpec;

    use super::*;

    fn task(id: &str, secrets: &[&str]) -> Task {
        Task {
            id: id.into(),
            spec: Some(TaskSpec {
                runtime: None,
                secret_ids: secrets.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn secrets_are_counted_by_the_tasks_that_name_them() {
        let mut a = AgentAssignments::new("a");
        assert_eq!(a.hold_task(&task("t1", &["s1", "s2"])), vec!["s1", "s2"]);
        assert!(
            a.hold_task(&task("t2", &["s1"])).is_empty(),
            "s1 is already held"
        );
        // Re-holding a task with the same secrets sends nothing new.
        assert!(a.hold_task(&task("t1", &["s1", "s2"])).is_empty());
        assert_eq!(a.release_task("t1"), vec!["s2"], "s1 is still named by t2");
        assert_eq!(a.release_task("t2"), vec!["s1"]);
        assert!(a.release_task("t2").is_empty());
    }

    fn pending(index: u64, id: &str) -> Pending {
        Pending {
            index,
            change: change(
                Item::Task(Task {
                    id: id.into(),
                    ..Default::default()
                }),
                AssignmentAction::Update,
            ),
        }
    }

    #[test]
    fn messages_are_cut_at_index_boundaries_and_chained() {
        let config = DispatcherConfig {
            assignments_max_items: 2,
            ..Default::default()
        };
        let p = vec![
            pending(5, "a"),
            pending(6, "b"),
            pending(6, "c"),
            pending(7, "d"),
        ];
        let m = cut(p, "4", 9, &config);
        // 2 items reach the cap at index 6, but "c" shares index 6: cut after it.
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].applies_to.as_str(), m[0].results_in.as_str()),
            ("4", "6")
        );
        assert_eq!(m[0].changes.len(), 3);
        assert_eq!(
            (m[1].applies_to.as_str(), m[1].results_in.as_str()),
            ("6", "9")
        );
        assert!(cut(vec![], "4", 9, &config).is_empty());
    }
}
