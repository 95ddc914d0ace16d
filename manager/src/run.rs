//! Running a manager from its data directory, whichever command made it (`init`,
//! `join`, `run`): open the data key (waiting to be unlocked when autolock wrapped
//! it), open the replicated store, keep the data key in step with the cluster, and
//! serve until shutdown.

use std::{future::Future, path::PathBuf};

use std::sync::Arc;

use anyhow::Context;
use lnswarm_common::{
    api::Manager,
    credentials::Credentials,
    pki::Role,
    status_server,
    tls::{self, LiveIdentity},
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    ca::Holder,
    data_key,
    dispatcher::DispatcherConfig,
    join::JoinSeed,
    layout::{open_db, DataDir},
    locked, server,
    store::{
        at_rest::{key_file, read_key, write_key, DataKey, StoredKey},
        keys,
        raft::{RaftConfig, RaftOptions},
        Store,
    },
    webhooks::deliver::Deliverer,
};

/// How to run a manager.
pub struct RunConfig {
    pub data_dir: PathBuf,
    /// Bound before anything else happens, so a busy port fails first.
    pub listener: std::net::TcpListener,
    pub raft: RaftConfig,
    pub grpc_threads: usize,
    /// Budgets of the calls anyone may make without a certificate.
    pub anonymous: lnswarm_common::authz::limits::LimitConfig,
    /// Connections one source address may hold (0: no limit).
    pub max_connections_per_source: usize,
    /// Recovery after losing quorum: this manager alone keeps every committed change.
    pub force_new_cluster: bool,
    /// The first start after `join`.
    pub joined: Option<JoinSeed>,
    /// The database `init` just wrote (sled cannot be reopened at once).
    pub db: Option<sled::Db>,
    /// Where to serve `/healthz` and `/metrics`, if anywhere.
    pub status_listen: Option<std::net::SocketAddr>,
    /// A PEM file of CA certificates webhook receivers may chain to, besides the
    /// public web roots.
    pub webhook_ca_file: Option<PathBuf>,
}

/// The operator credential `init` left in the data directory, if it is there.
fn operator_credential(dir: &DataDir) -> anyhow::Result<Option<Holder>> {
    if !Credentials::exist(&dir.operator()) {
        return Ok(None);
    }
    let creds = Credentials::load(&dir.operator())?;
    Ok(Some(Holder {
        role: Role::Operator,
        id: creds.id()?,
        advertise: String::new(),
        credentials_dir: dir.operator(),
        identity: LiveIdentity::new(&creds.cert_pem, &creds.key_pem)
            .context("loading the operator credential")?,
        verifier: None,
    }))
}

/// Runs the manager until `shutdown` resolves.
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let dir = DataDir::new(&config.data_dir);
    dir.restrict_permissions()?;
    let manager_config = dir.read_config()?;
    let credentials = Credentials::load(&dir.credentials())?;
    // Renewal swaps the certificate here; the server and every client read it.
    let identity = LiveIdentity::new(&credentials.cert_pem, &credentials.key_pem)
        .context("loading this manager's certificate")?;
    let client_tls = tls::client_config_live(&credentials.ca_pem, Some(identity.clone()))?;
    // The roots the server and every client trust: one set, which follows the
    // cluster's (a root rotation changes it).
    let verifier = client_tls
        .verifier()
        .cloned()
        .context("the manager's client trusts no CA")?;
    let key_path = key_file(dir.root());
    let mut shutdown = Box::pin(shutdown);

    let data_key = match read_key(&key_path)? {
        Some(StoredKey::Plain(key)) => key,
        Some(locked) => tokio::select! {
            key = locked::wait_for_unlock(&config.listener, &credentials, locked) => key?,
            () = &mut shutdown => return Ok(()),
        },
        None => {
            // A store from before data keys: this key becomes the cluster's when
            // this manager leads, or it is replaced by the cluster's (`data_key`).
            let key = DataKey::generate();
            write_key(&key_path, &key, None)?;
            info!("made a data key for a store that had none");
            key
        }
    };

    let db = match config.db {
        Some(db) => db,
        None => open_db(&dir)?,
    };
    let (join_as, seeds) = match config.joined {
        Some(seed) => (Some(seed.raft_id), seed.members),
        None => (None, vec![]),
    };
    let store = Store::open_raft(
        db,
        RaftOptions {
            manager_id: manager_config.id.clone(),
            addr: manager_config.advertise.clone(),
            tls: client_tls.clone(),
            config: config.raft,
            join_as,
            seeds,
            force_new_cluster: config.force_new_cluster,
        },
        Some(data_key),
    )
    .context("opening the replicated store")?;
    // A manager that joined but has not caught up yet has no record of itself.
    let manager = store
        .get::<Manager>(&keys::manager(&manager_config.id))?
        .map(|(_, m)| m)
        .unwrap_or_else(|| Manager {
            id: manager_config.id.clone(),
            addr: manager_config.advertise.clone(),
            raft_id: store.raft().map(|r| r.raft_id()).unwrap_or(0),
        });

    let webhook_ca = match &config.webhook_ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let deliverer = Deliverer::new(webhook_ca.as_deref())
        .context("loading the webhook CA file (--webhook-ca-file)")?;
    let subsystems = Arc::new(
        crate::manager::Manager::new(store.clone(), DispatcherConfig::default())
            .with_webhooks(deliverer),
    );
    // Every background task of the manager, stopped and joined at shutdown.
    let stop = CancellationToken::new();
    let mut background = JoinSet::new();
    background.spawn(data_key::keep(
        store.clone(),
        key_path,
        client_tls,
        stop.clone(),
    ));
    background.spawn(crate::ca::keep_renewed(
        store.clone(),
        Holder {
            role: Role::Manager,
            id: manager_config.id.clone(),
            advertise: manager_config.advertise.clone(),
            credentials_dir: dir.credentials(),
            identity: identity.clone(),
            verifier: Some(verifier.clone()),
        },
        stop.clone(),
    ));
    background.spawn(crate::ca::rotation::follow_trust(
        store.clone(),
        verifier.clone(),
        dir.credentials().join("ca.pem"),
        stop.clone(),
    ));
    if let Some(holder) = operator_credential(&dir)? {
        background.spawn(crate::ca::keep_renewed(store.clone(), holder, stop.clone()));
    }
    {
        let (m, s) = (subsystems.clone(), stop.clone());
        background.spawn(async move { m.run_leader_lifecycle(s).await });
    }
    if let Some(addr) = config.status_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for status checks on {addr}"))?;
        info!(%addr, "serving /healthz and /metrics");
        let health: status_server::HealthFn = {
            let store = store.clone();
            Arc::new(move || {
                let leader = store.knows_leader();
                let status = if leader {
                    "serving"
                } else {
                    "no leader: cut off from the quorum, or electing one"
                };
                (leader, serde_json::json!({ "status": status }))
            })
        };
        let metrics: status_server::MetricsFn = {
            let (store, identity, m) = (store.clone(), identity.clone(), subsystems.clone());
            Arc::new(move || {
                crate::metrics::render(&store, &identity, m.dispatcher().live_sessions())
            })
        };
        background.spawn(status_server::serve(
            listener,
            status_server::Endpoints { health, metrics },
            stop.clone(),
        ));
    }
    info!(manager = %manager_config.id, addr = %manager_config.listen, "manager running");
    // systemd's Type=notify: the store is open and the listener bound (a no-op
    // outside systemd).
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let served = server::serve(
        config.listener,
        (verifier, identity),
        &subsystems,
        manager,
        config.grpc_threads,
        (config.anonymous, config.max_connections_per_source),
        shutdown,
    )
    .await;
    stop.cancel();
    while background.join_next().await.is_some() {}
    served
}
