//! Assembles a manager's gRPC server: every service behind mTLS and the one
//! authorization layer, plus gRPC health and server reflection.

use std::{future::Future, sync::Arc};

use anyhow::Context;
use lnswarm_common::{
    api::{
        ca_server::CaServer, control_server::ControlServer, dispatcher_server::DispatcherServer,
        raft_server::RaftServer, scheduler_server::SchedulerServer, Manager, FILE_DESCRIPTOR_SET,
    },
    authz::{AuthzLayer, NodeScope},
    credentials::Credentials,
    tls,
};
use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::{
    ca::{CaService, StoreRevocations},
    control_api::ControlService,
    dispatcher::{Dispatcher, DispatcherConfig},
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
    let handle = store
        .raft()
        .context("the manager serves a replicated store")?
        .clone();
    Ok(RaftServer::new(RaftService::new(handle))
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    credentials: &Credentials,
    store: Store,
    this_manager: Manager,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let verifier = credentials
        .peer_verifier()
        .context("loading the cluster CA")?
        .with_revocations(Arc::new(StoreRevocations::new(store.state().clone())));
    let tls_config = tls::server_config(&credentials.cert_pem, &credentials.key_pem)
        .context("loading this manager's certificate")?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CaServer<CaService>>().await;
    health.set_serving::<ControlServer<ControlService>>().await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Leader-only background work; each acts only while this manager leads.
    crate::orchestrator::spawn(store.clone());
    crate::scheduler_api::spawn_challenge_sweeper(store.clone());

    Server::builder()
        .layer(AuthzLayer::new(verifier, NodeScope::PerRequest))
        .add_service(health_service)
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
        .add_service(DispatcherServer::new(Dispatcher::start(
            store.clone(),
            DispatcherConfig::default(),
        )))
        .add_service(raft_service(&store)?)
        .add_service(SchedulerServer::new(SchedulerService::new(store.clone())))
        .serve_with_incoming_shutdown(tls::incoming(listener, tls_config), shutdown)
        .await
        .context("serving gRPC")
}
