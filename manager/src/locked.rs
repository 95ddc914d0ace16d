//! A manager whose data key file is wrapped by the autolock unlock key serves only
//! gRPC health (NOT_SERVING) and `Unlock` until it is given the right key; then its
//! normal start goes on. Nothing else is started while it is locked: no raft, no
//! services, so a stolen disk plus a started process reveals nothing.

use std::time::Duration;

use lnswarm_common::{
    api::{
        unlock_server::{Unlock, UnlockServer},
        UnlockRequest, UnlockResponse,
    },
    authz::{AuthzLayer, NodeScope},
    credentials::Credentials,
    grpc_server,
};
use tokio::{
    net::TcpListener,
    sync::{oneshot, Mutex},
};
use tonic::{service::Routes, Request, Response, Status};
use tracing::{info, warn};

use crate::store::at_rest::{AtRestError, DataKey, StoredKey, UnlockKey};

/// A wrong key is answered only after this, one attempt at a time.
const WRONG_KEY_DELAY: Duration = Duration::from_secs(1);

struct UnlockService {
    stored: StoredKey,
    unlocked: Mutex<Option<oneshot::Sender<DataKey>>>,
}

#[tonic::async_trait]
impl Unlock for UnlockService {
    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let mut unlocked = self.unlocked.lock().await;
        let Some(tx) = unlocked.take() else {
            return Err(Status::failed_precondition(
                "this manager is already unlocked",
            ));
        };
        let key = UnlockKey::parse(&req.get_ref().unlock_key)
            .map_err(|e| Status::invalid_argument(e.to_string()));
        match key.and_then(|k| {
            self.stored.unlock(Some(&k)).map_err(|e| match e {
                AtRestError::WrongUnlockKey => Status::permission_denied(e.to_string()),
                other => Status::internal(other.to_string()),
            })
        }) {
            Ok(data_key) => {
                let _ = tx.send(data_key);
                info!("unlocked");
                Ok(Response::new(UnlockResponse {}))
            }
            Err(status) => {
                *unlocked = Some(tx);
                warn!(code = ?status.code(), "unlock refused");
                tokio::time::sleep(WRONG_KEY_DELAY).await;
                Err(status)
            }
        }
    }
}

/// Serves health and `Unlock` on `listener` until the right key arrives.
pub async fn wait_for_unlock(
    listener: &std::net::TcpListener,
    credentials: &Credentials,
    stored: StoredKey,
) -> anyhow::Result<DataKey> {
    use anyhow::Context;
    let verifier = credentials
        .peer_verifier()
        .context("loading the cluster CA")?;
    let tls = lnswarm_common::tls::server_config(&credentials.cert_pem, &credentials.key_pem)
        .context("loading this manager's certificate")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let (tx, rx) = oneshot::channel();
    let routes = Routes::new(health_service).add_service(UnlockServer::new(UnlockService {
        stored,
        unlocked: Mutex::new(Some(tx)),
    }));
    let listener = TcpListener::from_std(listener.try_clone()?)?;
    warn!("this manager is locked (autolock): unlock it with `lnswarm-manager unlock`");
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let served = tokio::spawn(grpc_server::serve(
        listener,
        tls,
        AuthzLayer::new(verifier, NodeScope::PerRequest),
        routes,
        Default::default(),
        async {
            let _ = done_rx.await;
        },
    ));
    let key = rx.await.context("the unlock server stopped")?;
    let _ = done_tx.send(());
    let _ = served.await;
    Ok(key)
}

/// `lnswarm-manager unlock`: hands the unlock key to the manager of `data_dir`.
pub async fn unlock_client(
    addr: &str,
    manager_id: &str,
    ca_pem: &str,
    unlock_key: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use lnswarm_common::{api::unlock_client::UnlockClient, pki::Role, tls};
    let channel = tls::connect(
        addr,
        &tls::client_config(ca_pem, None)?,
        tls::ServerIdentity::exact(Role::Manager, manager_id),
    )
    .await
    .with_context(|| format!("no manager answers at {addr}: is it running?"))?;
    UnlockClient::new(channel)
        .unlock(UnlockRequest {
            unlock_key: unlock_key.trim().to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(())
}
