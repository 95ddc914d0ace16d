//! Root CA rotation, as SwarmKit's `docker swarm ca --rotate`. Starting one stores
//! a new root (sealed key) and its certificate cross-signed by the old root in the
//! cluster object: from then on every certificate is issued by the new root and
//! carries the cross-signed one, so holders that still trust only the old root
//! accept it, and every holder is given both roots to trust. Holders see that
//! their certificate is not from the signing root and renew early
//! (`cert_renewal`). Once every manager, READY agent and running hosted node holds
//! a certificate from the new root, the leader finishes: the new root becomes the
//! only one, and the join tokens change with its digest.

use std::time::Duration;

use lnswarm_common::{
    api::{
        Agent, AgentState, CertificateRecord, ClusterRecord, HostedNode, HostedNodeState, Manager,
        RootCaHolder, RootCaStatus, RootRotation, RootRotationPhase,
    },
    ids::now_unix_ms,
    pki::{ca_digest, issued_by, ClusterCa, JoinToken, PkiError},
    tls::certs_from_pem,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::{
    cluster::{self, ClusterError, NEW_CA_KEY_AAD},
    store::{keys, Store, StoreError},
};

/// How often the leader checks whether every holder has moved, and every manager
/// whether the trusted roots changed.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long connections made with old-root certificates have to reconnect before
/// the old root is dropped: every manager sees the demand within [`CHECK_EVERY`],
/// closes them with a short grace, and their clients reconnect.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(
        "a root CA rotation is already in progress; `lnswarmctl cluster ca` shows how far it is"
    )]
    InProgress,
    #[error("the new root CA: {0}")]
    BadRoot(PkiError),
    #[error("the new root CA: --ca-cert and --ca-key go together")]
    HalfRoot,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts a rotation to `operator_root` (certificate and key PEM) or to a root
/// made here.
pub async fn start(
    store: &Store,
    operator_root: Option<(&str, &str)>,
) -> Result<RootCaStatus, RotationError> {
    let (_, record) = cluster::load(store)?;
    if record.root_rotation.is_some() {
        return Err(RotationError::InProgress);
    }
    let next = match operator_root {
        Some((cert, key)) => ClusterCa::from_operator(&record.cluster_id, cert, key)
            .map_err(RotationError::BadRoot)?,
        None => ClusterCa::create(&record.cluster_id).map_err(RotationError::BadRoot)?,
    };
    let old = cluster::ca(store, &record)?;
    let cross = old.cross_sign(&next).map_err(RotationError::BadRoot)?;
    let key_pem = Zeroizing::new(next.key_pem());
    let sealed = store.seal(NEW_CA_KEY_AAD, key_pem.as_bytes())?;
    let started = cluster::update(store, |record| {
        if record.root_rotation.is_some() {
            return Ok(false);
        }
        record.root_rotation = Some(RootRotation {
            new_ca_cert_pem: next.cert_pem().to_string(),
            new_ca_key_sealed: sealed.clone(),
            cross_signed_pem: cross.clone(),
            started_unix_ms: now_unix_ms() as i64,
            draining_since_unix_ms: 0,
        });
        Ok(true)
    })
    .await?;
    if !started {
        return Err(RotationError::InProgress);
    }
    info!(new_root = %next.digest(), "root CA rotation started");
    status(store)
}

/// The rotation's state, with the holders still on the old root.
pub fn status(store: &Store) -> Result<RootCaStatus, RotationError> {
    let (_, record) = cluster::load(store)?;
    let digest = |pem: &str| -> Result<String, ClusterError> {
        Ok(ca_digest(
            &certs_from_pem(pem).map_err(|e| ClusterError::Corrupt(e.to_string()))?[0],
        ))
    };
    let mut status = RootCaStatus {
        phase: RootRotationPhase::None as i32,
        root_ca_digest: digest(&record.ca_cert_pem)?,
        finished_unix_ms: record.root_rotated_unix_ms,
        ..Default::default()
    };
    if record.root_rotated_unix_ms > 0 {
        status.phase = RootRotationPhase::Done as i32;
    }
    if let Some(rotation) = &record.root_rotation {
        status.phase = RootRotationPhase::Rotating as i32;
        status.new_root_ca_digest = digest(&rotation.new_ca_cert_pem)?;
        status.started_unix_ms = rotation.started_unix_ms;
        status.on_old_root = on_old_root(store, &rotation.new_ca_cert_pem)?;
    }
    Ok(status)
}

/// The managers, READY agents and running hosted nodes whose current certificate
/// (as the CA recorded it) is not from `new_root`.
fn on_old_root(store: &Store, new_root: &str) -> Result<Vec<RootCaHolder>, StoreError> {
    let state = store.state();
    let mut holders: Vec<(&str, String)> = Vec::new();
    for (_, v) in state.scan(keys::MANAGERS)? {
        if let Ok(m) = v.decode::<Manager>() {
            holders.push(("manager", m.id));
        }
    }
    for (_, v) in state.scan(keys::AGENTS)? {
        if let Ok(a) = v.decode::<Agent>() {
            let ready = a.status.as_ref().map(|s| s.state) == Some(AgentState::Ready as i32);
            if ready {
                holders.push(("agent", a.id));
            }
        }
    }
    for (_, v) in state.scan(keys::HOSTED_NODES)? {
        if let Ok(n) = v.decode::<HostedNode>() {
            if n.state == HostedNodeState::Running as i32 {
                holders.push(("node", n.node_id));
            }
        }
    }
    let mut old = Vec::new();
    for (kind, id) in holders {
        let current = store
            .get::<CertificateRecord>(&keys::certificate(&id))?
            .is_some_and(|(_, r)| issued_by(&r.cert_pem, new_root));
        if !current {
            old.push(RootCaHolder {
                kind: kind.to_string(),
                id,
            });
        }
    }
    Ok(old)
}

/// Ends the rotation: the new root is the only root, its key sealed as the
/// cluster's, and both join tokens are new ones pinning its digest.
async fn finish(store: &Store) -> Result<(), RotationError> {
    let finished = cluster::update(store, |record: &mut ClusterRecord| {
        let Some(rotation) = record.root_rotation.take() else {
            return Ok(None);
        };
        let key = Zeroizing::new(store.open_sealed(NEW_CA_KEY_AAD, &rotation.new_ca_key_sealed)?);
        let key = std::str::from_utf8(&key)
            .map_err(|_| ClusterError::Corrupt("the new CA key is not PEM".into()))?;
        record.ca_key_sealed = cluster::seal_ca_key(store, key)?;
        record.ca_key_pem.clear();
        record.ca_cert_pem = rotation.new_ca_cert_pem;
        let digest = ca_digest(
            &certs_from_pem(&record.ca_cert_pem)
                .map_err(|e| ClusterError::Corrupt(e.to_string()))?[0],
        );
        record.worker_token = JoinToken::generate(&digest).to_string();
        record.manager_token = JoinToken::generate(&digest).to_string();
        record.root_rotated_unix_ms = now_unix_ms() as i64;
        Ok(Some(digest))
    })
    .await?;
    if let Some(digest) = finished {
        info!(root = %digest, "root CA rotation done: only the new root is trusted, and the join tokens are new");
    }
    Ok(())
}

/// Starts closing connections made with old-root certificates (every manager
/// does, once it sees this), or stops doing so when `since` is 0.
async fn set_draining(store: &Store, since: i64) -> Result<(), RotationError> {
    cluster::update(store, |record| {
        if let Some(r) = record.root_rotation.as_mut() {
            r.draining_since_unix_ms = since;
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// On the leader: once no holder is left on the old root, has the managers close
/// the connections still made with old-root certificates, and [`DRAIN`] later
/// finishes the rotation.
pub async fn finish_when_moved(store: Store, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let Ok((_, record)) = cluster::load(&store) else {
            continue;
        };
        let Some(rotation) = &record.root_rotation else {
            continue;
        };
        let moved = match status(&store) {
            Ok(s) => s.on_old_root.is_empty(),
            Err(e) => {
                warn!(error = %e, "checking the root rotation");
                continue;
            }
        };
        let draining = rotation.draining_since_unix_ms;
        let step = match (moved, draining) {
            (true, 0) => {
                info!("every holder is on the new root: closing connections made with old-root certificates");
                set_draining(&store, now_unix_ms() as i64).await
            }
            (true, since) if now_unix_ms() as i64 - since >= DRAIN.as_millis() as i64 => {
                finish(&store).await
            }
            // A holder came back on the old root (an agent READY again).
            (false, since) if since > 0 => set_draining(&store, 0).await,
            _ => Ok(()),
        };
        if let Err(e) = step {
            warn!(error = %e, "advancing the root rotation; will retry");
        }
    }
}

/// On every manager: keeps the roots its server and clients trust equal to the
/// cluster's (both during a rotation) from the moment it applies a change, and its
/// `ca.pem` with them, so a restart trusts the same.
pub async fn follow_trust(
    store: Store,
    verifier: lnswarm_common::pki::PeerVerifier,
    ca_file: std::path::PathBuf,
    stop: CancellationToken,
) {
    let mut changes = store.state().watch().subscribe(keys::CLUSTER_TAG);
    loop {
        if let Ok((_, record)) = cluster::load(&store) {
            let bundle = cluster::trust_bundle(&record);
            let required = record
                .root_rotation
                .as_ref()
                .filter(|r| r.draining_since_unix_ms > 0)
                .map(|r| r.new_ca_cert_pem.as_str());
            if let Err(e) = verifier.require_root(required) {
                warn!(error = %e, "the new root does not parse");
            }
            match verifier.set_roots(&bundle) {
                Ok(true) => {
                    info!("the trusted root CAs changed");
                    if let Err(e) =
                        lnswarm_common::cert_files::write_private(&ca_file, bundle.as_bytes())
                    {
                        warn!(error = %e, file = %ca_file.display(), "writing the trusted roots");
                    }
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "the cluster's roots do not parse"),
            }
        }
        // As soon as the cluster object changes (a snapshot install wakes no
        // watch: hence the period too).
        tokio::select! {
            () = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            () = tokio::time::sleep(CHECK_EVERY * 5) => {}
        }
    }
}
