//! Assembles a manager's gRPC server: every service behind mTLS and the one
//! authorization layer, plus gRPC health and server reflection.
//!
//! The server runs on its own thread: a single-threaded tokio runtime that accepts
//! and keeps its connections for their lifetime (more such threads with
//! `--grpc-threads`, each accepting from the shared listener). Most calls (an
//! agent's heartbeat above all) are short and arrive one at a time; on the shared
//! work-stealing runtime each one often woke a second, idle worker to look for work,
//! and those wakeups cost as much as the call (see the dispatcher section of
//! docs/BENCHMARKS.md). The raft loop, the apply task and the leader-only
//! background work stay on the main runtime; handlers reach them through channels.

use std::{future::Future, sync::Arc};

use anyhow::Context;
use lnswarm_common::{
    api::{
        ca_server::CaServer, control_server::ControlServer, dispatcher_server::DispatcherServer,
        node_state_server::NodeStateServer, raft_server::RaftServer,
        scheduler_server::SchedulerServer, Manager, FILE_DESCRIPTOR_SET,
    },
    authz::AuthzLayer,
    grpc_server, tls,
};
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::{
    ca::{CaService, StoreRevocations},
    control_api::ControlService,
    node_state::{NodeStateService, MAX_NODE_STATE_MESSAGE_BYTES},
    scheduler_api::SchedulerService,
    store::Store,
};

/// Largest request any service accepts; the CA takes far less (see its handler).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const MAX_CA_MESSAGE_BYTES: usize = 64 * 1024;

/// The manager-to-manager raft service of a replicated store.
fn raft_service(
    store: &Store,
) -> anyhow::Result<RaftServer<crate::store::raft::service::RaftService>> {
    use crate::store::raft::service::{RaftService, MAX_RAFT_MESSAGE_BYTES};
    let service =
        RaftService::new(store.clone()).context("the manager serves a replicated store")?;
    Ok(RaftServer::new(service)
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES))
}

/// Default for `threads` in [`serve`]. One thread served 10 000 agents' heartbeats
/// with the fewest CPU seconds and kept the quorum's write throughput within a few
/// per cent of two (docs/BENCHMARKS.md); a busier manager can use more.
pub const DEFAULT_THREADS: usize = 1;

/// Serves on `threads` gRPC threads until `shutdown` resolves or one of them fails,
/// presenting the certificate `identity` holds (renewal swaps it) and trusting the
/// roots `verifier` holds (a root rotation changes them).
pub async fn serve(
    listener: std::net::TcpListener,
    (verifier, identity): (lnswarm_common::pki::PeerVerifier, Arc<tls::LiveIdentity>),
    manager: &crate::manager::Manager,
    this_manager: Manager,
    threads: usize,
    (anonymous, max_per_source): (lnswarm_common::authz::limits::LimitConfig, usize),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = manager.store().clone();
    let verifier =
        verifier.with_revocations(Arc::new(StoreRevocations::new(store.state().clone())));
    let tls_config = tls::server_config_live(identity)?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let _health_task = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        report_quorum_health(store.clone(), health),
    ));
    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET);
    let mut reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET);
    // Only what this server serves (the descriptor set also holds the hosted
    // node's and the unlock services).
    for name in SERVED.iter().chain([RAFT_SERVICE].iter()) {
        reflection = reflection.with_service_name(*name);
        reflection_alpha = reflection_alpha.with_service_name(*name);
    }
    let reflection_v1 = reflection.build_v1()?;
    let reflection_v1alpha = reflection_alpha.build_v1alpha()?;

    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            CaServer::new(CaService::new(store.clone()))
                .max_decoding_message_size(MAX_CA_MESSAGE_BYTES),
        )
        .add_service(
            ControlServer::new(ControlService::new(store.clone(), this_manager))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(DispatcherServer::new(manager.dispatcher()))
        .add_service(raft_service(&store)?)
        .add_service(SchedulerServer::new(SchedulerService::new(store.clone())))
        .add_service(
            NodeStateServer::new(NodeStateService::new(store.clone()))
                .max_decoding_message_size(MAX_NODE_STATE_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_NODE_STATE_MESSAGE_BYTES),
        );
    let authz = AuthzLayer::with_anonymous_limits(verifier, anonymous);
    // One budget of connections for all the threads.
    let limits = Arc::new(grpc_server::ConnectionLimits::new(
        grpc_server::MAX_CONNECTIONS,
        max_per_source,
    ));

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut exits = futures::stream::FuturesUnordered::new();
    for i in 0..threads.max(1) {
        let (authz, routes, tls_config, limits, mut stopped) = (
            authz.clone(),
            routes.clone(),
            tls_config.clone(),
            limits.clone(),
            stopped.clone(),
        );
        let listener = listener.try_clone().context("sharing the listener")?;
        let (exit, exited) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("grpc-{i}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting a gRPC runtime")
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)
                                .context("registering the listener")?;
                            let stop = async move {
                                let _ = stopped.wait_for(|stop| *stop).await;
                            };
                            grpc_server::serve(listener, tls_config, authz, routes, limits, stop)
                                .await;
                            Ok(())
                        })
                    });
                let _ = exit.send(served);
            })
            .context("starting a gRPC thread")?;
        exits.push(exited);
    }
    // Stop every thread on shutdown or when one fails, then wait for all of them.
    use futures::StreamExt;
    let first = tokio::select! {
        () = shutdown => Ok(()),
        Some(exited) = exits.next() => {
            exited.unwrap_or_else(|_| Err(anyhow::anyhow!("a gRPC thread panicked")))
        }
    };
    let _ = stop.send(true);
    while exits.next().await.is_some() {}
    first
}

/// The services that need the quorum to answer (everything but raft, health and
/// reflection).
const SERVED: &[&str] = &[
    "lnswarm.v1.CA",
    "lnswarm.v1.Control",
    "lnswarm.v1.Dispatcher",
    "lnswarm.v1.Scheduler",
    "lnswarm.v1.NodeState",
];
const RAFT_SERVICE: &str = "lnswarm.v1.Raft";

/// gRPC health that tells the truth: the quorum's services (and the server as a
/// whole, "") are SERVING while this manager knows a leader, and NOT_SERVING while
/// it has none (cut off from the quorum, or during an election). Raft itself stays
/// SERVING: peers need it to elect one.
async fn report_quorum_health(store: Store, health: tonic_health::server::HealthReporter) {
    health
        .set_service_status(RAFT_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let mut leadership = store.leadership();
    let mut last = None;
    loop {
        leadership.borrow_and_update();
        let serving = store.knows_leader();
        if last != Some(serving) {
            let status = if serving {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            for name in SERVED.iter().chain([""].iter()) {
                health.set_service_status(*name, status).await;
            }
            tracing::info!(serving, "health");
            last = Some(serving);
        }
        if leadership.changed().await.is_err() {
            return;
        }
    }
}
