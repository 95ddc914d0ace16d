//! A model-based test of the assignments code: random interleavings of task,
//! secret and agent changes, deliveries, and leader changes (a new dispatcher that
//! resumes from the agent's last `results_in`, as after a failover). After every
//! delivery, what the simulated agent holds must equal the COMPLETE set for it in
//! the store: its tasks, and exactly the secrets they name, with their current data.

use std::collections::{BTreeMap, BTreeSet};

use lnswarm_common::api::{
    assignment::Item, AssignmentAction, AssignmentsMessage, AssignmentsType, Secret, Task,
    TaskSpec, TaskState,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{
    assignments::{parse_version, Feed},
    config::DispatcherConfig,
};
use crate::store::{keys, secrets, Store, TxnBuilder};

const AGENT: &str = "a";

/// What an agent holds, applied as the worker applies messages.
#[derive(Default, Debug)]
struct SimAgent {
    tasks: BTreeMap<String, Task>,
    secrets: BTreeMap<String, Vec<u8>>,
    results_in: Option<u64>,
}

impl SimAgent {
    fn apply(&mut self, m: AssignmentsMessage) {
        let complete = m.r#type == AssignmentsType::Complete as i32;
        if !complete {
            assert_eq!(
                parse_version(&m.applies_to),
                self.results_in,
                "an incremental message follows the last one"
            );
        }
        let mut new_secrets = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for c in m.changes {
            let remove = c.action == AssignmentAction::Remove as i32;
            match c.assignment.and_then(|a| a.item) {
                Some(Item::Secret(s)) if remove => {
                    self.secrets.remove(&s.id);
                }
                Some(Item::Secret(s)) => {
                    new_secrets.insert(s.id, s.data);
                }
                Some(Item::Task(t)) => {
                    seen.insert(t.id.clone());
                    if remove {
                        self.tasks.remove(&t.id);
                    } else {
                        self.tasks.insert(t.id.clone(), t);
                    }
                }
                _ => {}
            }
        }
        if complete {
            self.secrets = new_secrets;
            self.tasks.retain(|id, _| seen.contains(id));
        } else {
            self.secrets.extend(new_secrets);
        }
        // The agent drops secrets no task of its own names.
        let named: BTreeSet<String> = self
            .tasks
            .values()
            .flat_map(|t| t.spec.iter().flat_map(|s| s.secret_ids.clone()))
            .collect();
        self.secrets.retain(|id, _| named.contains(id));
        self.results_in = parse_version(&m.results_in);
    }
}

/// The agent's complete set as the store has it now.
fn expected(store: &Store) -> (BTreeMap<String, String>, BTreeMap<String, Vec<u8>>) {
    let mut tasks = BTreeMap::new();
    let mut named = BTreeSet::new();
    for (_, t) in store.list::<Task>(keys::TASKS).unwrap() {
        if t.agent_id == AGENT {
            named.extend(t.spec.iter().flat_map(|s| s.secret_ids.clone()));
            tasks.insert(t.id.clone(), format!("{:?}", (t.desired_state, &t.spec)));
        }
    }
    let secrets = named
        .into_iter()
        .filter_map(|id| secrets::get(store, &id).unwrap().map(|s| (id, s.data)))
        .collect();
    (tasks, secrets)
}

fn held(sim: &SimAgent) -> (BTreeMap<String, String>, BTreeMap<String, Vec<u8>>) {
    (
        sim.tasks
            .iter()
            .map(|(id, t)| (id.clone(), format!("{:?}", (t.desired_state, &t.spec))))
            .collect(),
        sim.secrets.clone(),
    )
}

async fn store() -> (tempfile::TempDir, Store) {
    crate::store::test_db::sealing_store().await
}

/// One random change to the store: a task placed (on this agent or another, with
/// secrets old and new), changed or removed, or a secret rewritten.
async fn random_change(store: &Store, rng: &mut StdRng, n: &mut u32) {
    *n += 1;
    let tasks: Vec<Task> = store
        .list::<Task>(keys::TASKS)
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let secret_ids: Vec<String> = store
        .list::<Secret>(keys::SECRETS)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.id)
        .collect();
    let mut txn = TxnBuilder::new();
    match rng.gen_range(0..10) {
        0..=3 => {
            let agent = if rng.gen_bool(0.7) { AGENT } else { "b" };
            let mut ids = Vec::new();
            for _ in 0..rng.gen_range(0..3) {
                if !secret_ids.is_empty() && rng.gen_bool(0.5) {
                    ids.push(secret_ids[rng.gen_range(0..secret_ids.len())].clone());
                } else {
                    let s = Secret {
                        id: format!("s{n}-{}", ids.len()),
                        version: None,
                        data: vec![rng.gen(); 4],
                    };
                    txn = secrets::put(store, txn, &s, [keys::agent_tag(agent)]).unwrap();
                    ids.push(s.id);
                }
            }
            ids.sort();
            ids.dedup();
            let t = Task {
                id: format!("t{n}"),
                agent_id: agent.into(),
                desired_state: TaskState::Running as i32,
                spec: Some(TaskSpec {
                    runtime: None,
                    secret_ids: ids,
                }),
                ..Default::default()
            };
            txn = txn.put_tagged(keys::task(&t.id), &t, [keys::agent_tag(agent)]);
        }
        4..=5 if !tasks.is_empty() => {
            let mut t = tasks[rng.gen_range(0..tasks.len())].clone();
            t.desired_state = if t.desired_state == TaskState::Running as i32 {
                TaskState::Shutdown as i32
            } else {
                TaskState::Running as i32
            };
            txn = txn.put_tagged(keys::task(&t.id), &t, [keys::agent_tag(&t.agent_id)]);
        }
        6..=7 if !tasks.is_empty() => {
            let t = &tasks[rng.gen_range(0..tasks.len())];
            txn = txn.delete_tagged(keys::task(&t.id), [keys::agent_tag(&t.agent_id)]);
        }
        8 => {
            // The agent's own record (a state change) wakes its stream too.
            let agent = lnswarm_common::api::Agent {
                id: AGENT.into(),
                created_unix_ms: i64::from(*n),
                ..Default::default()
            };
            txn = txn.put_tagged(keys::agent(AGENT), &agent, [keys::agent_tag(AGENT)]);
        }
        _ if !secret_ids.is_empty() => {
            let id = &secret_ids[rng.gen_range(0..secret_ids.len())];
            let s = Secret {
                id: id.clone(),
                version: None,
                data: vec![rng.gen(); 4],
            };
            // Written as the orchestrator writes a TLS secret: tagged for every agent
            // that may hold it.
            txn = secrets::put(
                store,
                txn,
                &s,
                [keys::agent_tag(AGENT), keys::agent_tag("b")],
            )
            .unwrap();
        }
        _ => return,
    }
    store.propose(txn.build()).await.unwrap();
}

#[tokio::test]
async fn the_agent_always_ends_up_with_its_complete_set() {
    let config = DispatcherConfig::default();
    for seed in 0..40u64 {
        let (_dir, store) = store().await;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = SimAgent::default();
        let mut n = 0;
        // The stream's state, as the Assignments handler keeps it.
        let mut feed = Feed::new(AGENT);
        // Whether this feed has sent anything: from then on the change log must
        // reach back, so no COMPLETE set is needed again.
        let mut streaming = false;
        for step in 0..120 {
            match rng.gen_range(0..10) {
                0..=4 => random_change(&store, &mut rng, &mut n).await,
                5 => {
                    // A leader change: a new dispatcher, and the agent resumes.
                    feed = Feed::new(AGENT);
                    streaming = false;
                    if let Some(since) = sim.results_in {
                        let messages = feed.start(&store, Some(since), &config).unwrap();
                        assert!(!messages.is_empty(), "a resume tells the agent where it is");
                        assert!(
                            messages
                                .iter()
                                .all(|m| m.r#type == AssignmentsType::Incremental as i32),
                            "seed {seed}, step {step}: the change log reaches back"
                        );
                        for m in messages {
                            sim.apply(m);
                        }
                        streaming = true;
                        assert_eq!(
                            held(&sim),
                            expected(&store),
                            "seed {seed}, step {step}: after resuming"
                        );
                    }
                }
                _ => {
                    // A delivery on the current stream.
                    let messages = feed.next(&store, &config).unwrap();
                    if streaming {
                        assert!(
                            messages
                                .iter()
                                .all(|m| m.r#type == AssignmentsType::Incremental as i32),
                            "seed {seed}, step {step}: the change log reaches back"
                        );
                    }
                    for m in messages {
                        sim.apply(m);
                    }
                    streaming = true;
                    assert_eq!(
                        held(&sim),
                        expected(&store),
                        "seed {seed}, step {step}: the agent holds its complete set"
                    );
                }
            }
        }
    }
}
