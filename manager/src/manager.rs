//! One value owns a manager's subsystems, as SwarmKit's `Manager` does: the store,
//! the services the gRPC server routes to, and the leader-only work. The leader-only
//! parts (the dispatcher, the orchestrator, the challenge sweeper, the webhook
//! deliverer) start in one place
//! when this manager becomes leader and stop there when it becomes a follower or
//! shuts down ([`Manager::run_leader_lifecycle`]); every handle is kept and joined.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    dispatcher::{Dispatcher, DispatcherConfig},
    store::Store,
    webhooks::deliver::Deliverer,
};

/// What the leader-only work has done, for tests and metrics.
#[derive(Default)]
pub struct LeaderCounters {
    pub terms_led: AtomicU64,
    pub orchestrator_passes: Arc<AtomicU64>,
}

pub struct Manager {
    store: Store,
    dispatcher: Dispatcher,
    counters: Arc<LeaderCounters>,
    webhooks: Option<Deliverer>,
}

impl Manager {
    pub fn new(store: Store, dispatcher_config: DispatcherConfig) -> Self {
        Manager {
            dispatcher: Dispatcher::start(store.leader_only(), dispatcher_config),
            store,
            counters: Arc::default(),
            webhooks: None,
        }
    }

    /// Sends owners' webhooks with `deliverer` while leading.
    pub fn with_webhooks(mut self, deliverer: Deliverer) -> Self {
        self.webhooks = Some(deliverer);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The Dispatcher service (it answers UNAVAILABLE with the leader's address
    /// while this manager does not lead).
    pub fn dispatcher(&self) -> Dispatcher {
        self.dispatcher.clone()
    }

    pub fn counters(&self) -> &LeaderCounters {
        &self.counters
    }

    /// Expiry scans the dispatcher ran.
    pub fn expiry_scans(&self) -> u64 {
        self.dispatcher.expiry_scans()
    }

    /// Starts the leader-only work whenever this manager becomes leader and stops
    /// it (and waits for it) when it becomes a follower, until `shutdown` fires.
    pub async fn run_leader_lifecycle(&self, shutdown: CancellationToken) {
        let mut leadership = self.store.leadership();
        loop {
            // Follower: wait to lead.
            loop {
                if leadership.borrow_and_update().is_leader {
                    break;
                }
                tokio::select! {
                    r = leadership.changed() => if r.is_err() { return },
                    () = shutdown.cancelled() => return,
                }
            }
            let term_stop = shutdown.child_token();
            let work = self.become_leader(term_stop.clone());
            // Leader: until leadership is lost or the manager stops.
            loop {
                tokio::select! {
                    r = leadership.changed() => {
                        if r.is_err() || !leadership.borrow_and_update().is_leader {
                            break;
                        }
                    }
                    () = shutdown.cancelled() => break,
                }
            }
            Self::become_follower(term_stop, work).await;
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Starts every leader-only subsystem under `stop`.
    fn become_leader(&self, stop: CancellationToken) -> JoinSet<()> {
        self.counters.terms_led.fetch_add(1, Ordering::Relaxed);
        info!("leading: starting the dispatcher, orchestrator, challenge sweeper and webhook deliverer");
        let mut work = JoinSet::new();
        let dispatcher = self.dispatcher.clone();
        let s = stop.clone();
        work.spawn(async move { dispatcher.lead(s).await });
        // Leader-only work writes through `leader_only()`: a write it queued
        // before losing the lead must not land on the next leader.
        let store = self.store.leader_only();
        work.spawn(crate::orchestrator::run(
            store.clone(),
            stop.clone(),
            self.counters.orchestrator_passes.clone(),
        ));
        if let Some(webhooks) = &self.webhooks {
            work.spawn(webhooks.clone().run(store.clone(), stop.clone()));
        }
        work.spawn(crate::ca::rotation::finish_when_moved(
            store.clone(),
            stop.clone(),
        ));
        work.spawn(crate::scheduler_api::sweep_challenges(store, stop));
        work
    }

    /// Stops the leader-only subsystems and waits until they have.
    async fn become_follower(stop: CancellationToken, mut work: JoinSet<()>) {
        stop.cancel();
        while work.join_next().await.is_some() {}
        info!("not leading: the leader-only work has stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::{at_rest::DataKey, Leadership};

    /// A manager that loses leadership runs no orchestrator pass and no expiry scan
    /// after it steps down, and starts them again when it leads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn losing_leadership_stops_the_leader_only_work() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        let (lead, leadership) = tokio::sync::watch::channel(Leadership {
            is_leader: true,
            term: 1,
            ..Default::default()
        });
        let store = Store::open_local_led_by(db, Some(DataKey::generate()), leadership).unwrap();
        let config = DispatcherConfig {
            default_period: Duration::from_millis(100),
            ..Default::default()
        };
        let manager = Arc::new(Manager::new(store, config));
        let shutdown = CancellationToken::new();
        let lifecycle = {
            let (m, s) = (manager.clone(), shutdown.clone());
            tokio::spawn(async move { m.run_leader_lifecycle(s).await })
        };
        let passes = || {
            manager
                .counters()
                .orchestrator_passes
                .load(Ordering::Relaxed)
        };
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert!(passes() > 0, "passes while leading");
        assert!(manager.expiry_scans() > 0, "expiry scans while leading");

        lead.send_replace(Leadership::default());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (p, e) = (passes(), manager.expiry_scans());
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(passes(), p, "no orchestrator pass after stepping down");
        assert_eq!(
            manager.expiry_scans(),
            e,
            "no expiry scan after stepping down"
        );

        lead.send_replace(Leadership {
            is_leader: true,
            term: 2,
            ..Default::default()
        });
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert!(passes() > p, "passes again when leading again");
        assert_eq!(manager.counters().terms_led.load(Ordering::Relaxed), 2);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), lifecycle)
            .await
            .expect("the lifecycle stops at shutdown")
            .unwrap();
    }
}
