//! The process around the node: TLS and authorization for the Node API, gRPC health
//! (NOT_SERVING until ldk-node has started, SERVING after), and a clean stop on
//! SIGTERM (health NOT_SERVING, API closed, `node.stop()`, exit 0).

use std::sync::{Arc, OnceLock};

use lnswarm_common::{
    api::node_server::NodeServer,
    authz::{AuthzLayer, NodeScope},
    credentials::Credentials,
    grpc_server,
    pki::Role,
    tls::{self, ClientTls},
};
use tokio::sync::broadcast;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tracing::Instrument;

use crate::{
    config::{NodeConfig, StateConfig},
    errors::blocking,
    events, ldk,
    seed::{node_id_from_seed, Seed},
    service::{NodeApi, Running},
    state,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the seed on stdin gives node id {actual}, but --node-id is {expected}; refusing to start"
    )]
    WrongSeed { expected: String, actual: String },
    #[error("reading {what} from {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the TLS certificate is not usable: {0}")]
    Certificate(String),
    #[error("binding the Node API on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] ldk::StartError),
    #[error("the node's replicated state: {0}")]
    State(String),
    #[error("internal: {0}")]
    Internal(String),
}

const NODE_SERVICE: &str = "lnswarm.v1.Node";

/// Runs the node until SIGTERM or SIGINT.
pub async fn run(config: NodeConfig, seed: Seed) -> Result<(), RunError> {
    let derived = node_id_from_seed(&seed);
    if derived != config.node_id {
        return Err(RunError::WrongSeed {
            expected: config.node_id.to_string(),
            actual: derived.to_string(),
        });
    }
    let node_id = config.node_id.to_string();
    let span = tracing::info_span!("node", node_id = %node_id);
    run_checked(config, seed, node_id).instrument(span).await
}

/// The replicated state, when the node runs under a lease: the lease must hold
/// (the agent starts nodes only then), and is watched from here on.
fn open_state(
    config: &NodeConfig,
    tls: ClientTls,
    node_id: &str,
) -> Result<Option<(Arc<state::ReplicatedStore>, state::lease_watch::Quiesce)>, RunError> {
    let StateConfig::Replicated {
        managers,
        epoch,
        lease_file,
    } = &config.state
    else {
        return Ok(None);
    };
    if !state::lease_watch::holds(lease_file) {
        tracing::error!(lease = %lease_file.display(), "the agent does not vouch for this node (no lease); not starting");
        std::process::exit(lnswarm_common::lease::EXIT_LEASE_EXPIRED);
    }
    let quiesce = state::lease_watch::spawn(lease_file.clone());
    let store = state::ReplicatedStore::open(
        state::remote::Remote::new(managers.clone(), tls),
        state::replicated::Identity {
            node_id: node_id.to_string(),
            epoch: *epoch,
        },
        &config.storage_dir,
    )
    .map_err(|e| RunError::State(e.to_string()))?;
    Ok(Some((store, quiesce)))
}

fn read(what: &'static str, path: &std::path::Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|source| RunError::ReadFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

async fn run_checked(config: NodeConfig, seed: Seed, node_id: String) -> Result<(), RunError> {
    // A renewal that a crash cut short is finished here.
    let (cert_pem, key_pem) =
        lnswarm_common::cert_files::read_pair(&config.tls_cert, &config.tls_key).map_err(
            |source| RunError::ReadFile {
                what: "the TLS certificate and key",
                path: config.tls_cert.display().to_string(),
                source,
            },
        )?;
    let creds = Credentials {
        cert_pem,
        key_pem,
        ca_pem: read("the cluster CA", &config.ca_cert)?,
    };
    let verifier = creds
        .peer_verifier()
        .map_err(|e| RunError::Certificate(e.to_string()))?;
    let own = {
        // Leaf first; during a root rotation the new root cross-signed by the old.
        let chain = tls::certs_from_pem(&creds.cert_pem)
            .map_err(|e| RunError::Certificate(e.to_string()))?;
        let intermediates: Vec<&[u8]> = chain[1..].iter().map(|c| c.as_ref()).collect();
        verifier
            .verify_chain(&chain[0], &intermediates)
            .map_err(|e| RunError::Certificate(e.to_string()))?
    };
    if own.role != Role::Node || own.id != node_id {
        return Err(RunError::Certificate(format!(
            "it is a {} certificate for {:?}; this node needs a {} certificate for {node_id}",
            own.role,
            own.id,
            Role::Node
        )));
    }
    // Renewal swaps the certificate here; the Node API and the state client read it.
    let identity = tls::LiveIdentity::new(&creds.cert_pem, &creds.key_pem)
        .map_err(|e| RunError::Certificate(e.to_string()))?;
    let server_tls = tls::server_config_live(identity.clone())
        .map_err(|e| RunError::Certificate(e.to_string()))?;
    let client_tls = tls::client_config_live(&creds.ca_pem, Some(identity.clone()))
        .map_err(|e| RunError::Certificate(e.to_string()))?;
    // One set of trusted roots for the Node API and the clients, which renewal
    // keeps equal to the cluster's (a root rotation).
    let verifier = client_tls.verifier().cloned().unwrap_or(verifier);
    let stop_renewal = tokio_util::sync::CancellationToken::new();
    if let StateConfig::Replicated {
        managers, epoch, ..
    } = &config.state
    {
        tokio::spawn(
            crate::renewal::keep_renewed(
                identity,
                client_tls.clone(),
                managers.clone(),
                *epoch,
                (config.tls_cert.clone(), config.tls_key.clone()),
                stop_renewal.clone(),
            )
            .in_current_span(),
        );
    }
    let _stop_renewal = stop_renewal.drop_guard();
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.api_listen,
            source,
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| RunError::Internal(e.to_string()))?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_service_status(NODE_SERVICE, ServingStatus::NotServing)
        .await;

    // Reflection, as the managers offer it: only the Node API is listed.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lnswarm_common::api::FILE_DESCRIPTOR_SET)
        .with_service_name(NODE_SERVICE)
        .build_v1()
        .map_err(|e| RunError::Internal(e.to_string()))?;
    let state: Arc<OnceLock<Running>> = Arc::new(OnceLock::new());
    let last_call = crate::idle::LastCall::default();
    let stamp = last_call.clone();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = grpc_server::serve(
        listener,
        server_tls,
        AuthzLayer::new(verifier, NodeScope::Node(node_id.clone())),
        Routes::new(health_service)
            .add_service(reflection_v1)
            // Every owner call counts as activity (health probes are not owner calls).
            .add_service(NodeServer::with_interceptor(
                NodeApi::new(state.clone()),
                move |req| {
                    stamp.stamp();
                    Ok(req)
                },
            )),
        Default::default(),
        async {
            let _ = api_stopped.await;
        },
    );
    let mut server = tokio::spawn(server.in_current_span());
    tracing::info!(api = %api_addr, "Node API listening (not serving until the node has started)");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| RunError::Internal(e.to_string()))?;

    let start_config = config.clone();
    let span = tracing::Span::current();
    let starting = blocking(move || {
        let _enter = span.enter();
        let store = open_state(&start_config, client_tls, &start_config.node_id.to_string())?;
        let dyn_store = store
            .as_ref()
            .map(|(s, _)| s.clone() as Arc<ldk_node::DynStore>);
        let node = ldk::build_and_start(&start_config, &seed, dyn_store)?;
        if let Some((_, quiesce)) = &store {
            let n = node.clone();
            let _ = quiesce.set(Box::new(move || {
                if let Err(e) = n.stop() {
                    tracing::warn!(error = %e, "the clean stop before the lease ran out failed");
                }
            }));
        }
        Ok::<_, RunError>((node, store.map(|(s, _)| s)))
    });
    let (node, store) = tokio::select! {
        started = starting => started.map_err(|e| RunError::Internal(e.to_string()))??,
        _ = term.recv() => {
            tracing::info!("SIGTERM while starting: exiting");
            return Ok(());
        }
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted while starting: exiting");
            return Ok(());
        }
        _ = &mut server => {
            return Err(RunError::Internal("the Node API server stopped".into()));
        }
    };

    let (events_tx, _) = broadcast::channel(events::BUFFER);
    if let Some(store) = &store {
        crate::peers::follow_hosted_peers(node.clone(), store.clone());
        tokio::spawn(
            crate::idle::watch(node.clone(), store.clone(), events_tx.clone(), last_call)
                .in_current_span(),
        );
    }
    let pump = tokio::spawn(
        events::pump(node.clone(), events_tx.clone(), store.clone()).in_current_span(),
    );
    let _ = state.set(Running {
        node: node.clone(),
        events: events_tx,
        money: tokio::sync::Mutex::new(()),
        store,
    });
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_service_status(NODE_SERVICE, ServingStatus::Serving)
        .await;
    tracing::info!(
        api = %api_addr,
        lightning = %config.listen,
        network = %config.network,
        chain = ?config.chain,
        "node started"
    );

    let result = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: stopping"); Ok(()) }
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: stopping"); Ok(()) }
        _ = &mut server => Err(RunError::Internal("the Node API server stopped".into())),
    };

    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    health
        .set_service_status(NODE_SERVICE, ServingStatus::NotServing)
        .await;
    let _ = stop_api.send(());
    // Open streams (SubscribeEvents) are cut after the server's grace period.
    let _ = server.await;
    pump.abort();
    let stopping = node.clone();
    match blocking(move || stopping.stop()).await {
        Ok(Ok(())) => tracing::info!("node stopped"),
        Ok(Err(e)) => tracing::warn!(error = %e, "node stop reported an error"),
        Err(e) => tracing::warn!(error = %e, "node stop failed"),
    }
    result
}
