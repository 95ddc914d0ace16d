//! Certificates that renew themselves. Every manager, agent and hosted node runs a
//! [`Renewal`]: at a random moment between 50 % and 80 % of its certificate's
//! lifetime (so that a fleet issued at once does not renew at once, as SwarmKit
//! does), it makes a new key, trades a CSR for a certificate through the CA with
//! the certificate it still holds, writes the pair (atomically, 0600) and swaps it
//! into its TLS configs. On failure it keeps the old certificate and retries with
//! backoff until the certificate expires; a holder whose certificate has expired
//! cannot renew and must join again.
//!
//! A holder given a [`TrustSync`] also asks the CA now and then which roots the
//! cluster trusts and which one signs: it trusts the same, and during a root
//! rotation renews early, since its certificate is not from the signing root.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::BoxFuture;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::{
    api::{ca_client::CaClient, GetRootCaCertificateRequest, IssueNodeCertificateRequest},
    pki::{issued_by, new_key_and_csr, subject_of, validity_of, PeerVerifier, PkiError, Role},
    tls::{self, ClientTls, LiveIdentity},
};

/// The part of a certificate's lifetime at which renewal is due, chosen at random
/// in this range for each certificate.
pub const RENEW_WINDOW: (f64, f64) = (0.5, 0.8);
/// Retry delays after a failed renewal: doubling from the first to the second.
const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// What a renewal brings back.
pub struct Renewed {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA bundle the holder should trust from now on.
    pub ca_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    /// The CA said no for a reason that a retry does not change (revoked, fenced,
    /// expired).
    #[error("the CA refused to renew: {0}")]
    Refused(String),
    /// Worth retrying: no manager answered, no quorum, a timeout.
    #[error("renewal failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

impl From<Status> for RenewalError {
    fn from(s: Status) -> Self {
        match s.code() {
            Code::Unauthenticated | Code::PermissionDenied | Code::FailedPrecondition => {
                RenewalError::Refused(s.message().to_string())
            }
            _ => RenewalError::Failed(format!("{}: {}", s.code(), s.message())),
        }
    }
}

/// Why a holder's renewal stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum RenewalStopped {
    #[error("{0}")]
    Refused(String),
    #[error("the certificate expired before it could be renewed: the holder must join the cluster again with a join token")]
    Expired,
}

/// Trades a CSR (PEM) for a certificate.
pub type RequestFn =
    Box<dyn Fn(String) -> BoxFuture<'static, Result<Renewed, RenewalError>> + Send + Sync>;
/// Writes a renewed pair (and CA) where the holder keeps it.
pub type SaveFn = Box<dyn Fn(&Renewed) -> std::io::Result<()> + Send + Sync>;

/// Saves a renewal as the three files of a credentials directory
/// ([`crate::credentials::Credentials::save`]).
pub fn save_credentials(dir: std::path::PathBuf) -> SaveFn {
    Box::new(move |r: &Renewed| {
        crate::credentials::Credentials {
            cert_pem: r.cert_pem.clone(),
            key_pem: r.key_pem.clone(),
            ca_pem: r.ca_pem.clone(),
        }
        .save(&dir)
        .map_err(std::io::Error::other)
    })
}

pub struct Renewal {
    pub identity: Arc<LiveIdentity>,
    pub role: Role,
    pub request: RequestFn,
    pub save: SaveFn,
    /// Following the cluster's roots (a root rotation); `None` for a holder that
    /// renews only when it runs (lnswarmctl).
    pub trust: Option<TrustSync>,
}

/// The cluster's roots as the CA reports them.
pub struct RootState {
    /// PEM of the root that signs certificates now.
    pub signing_root: String,
    /// PEM of every root trusted now.
    pub trust_bundle: String,
}

/// Asks the CA for [`RootState`].
pub type ProbeFn =
    Box<dyn Fn() -> BoxFuture<'static, Result<RootState, RenewalError>> + Send + Sync>;

/// How a holder follows the cluster's roots.
pub struct TrustSync {
    /// The verifier its server and clients share: its roots are replaced.
    pub verifier: PeerVerifier,
    pub probe: ProbeFn,
    /// Where the holder keeps the roots it trusts (rewritten when they change), so
    /// that a restart trusts the same; `None` when its renewal's save writes them.
    pub ca_file: Option<PathBuf>,
}

/// How often a holder asks for the roots: a twentieth of its certificate's
/// lifetime, between 1 and 60 s (10 000 agents at 60 s: 170 calls/s).
fn probe_every(not_before: i64, not_after: i64) -> Duration {
    let life = (not_after - not_before).max(0) as f64;
    Duration::from_secs_f64((life / 20.0).clamp(1.0, 60.0))
}

/// Longest random delay before a renewal a root rotation asks for, so a fleet does
/// not renew at once: a twentieth of the lifetime, between 1 and 60 s.
fn rotation_spread(not_before: i64, not_after: i64) -> Duration {
    let life = (not_after - not_before).max(0) as f64;
    Duration::from_secs_f64((life / 20.0).clamp(1.0, 60.0))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// When a certificate valid from `not_before` to `not_after` (Unix seconds) is
/// due for renewal, for a point `at` of its lifetime.
pub fn due_at(not_before: i64, not_after: i64, at: f64) -> f64 {
    not_before as f64 + (not_after - not_before).max(0) as f64 * at
}

/// Whether a certificate is inside its renewal window now (past 50 % of its
/// lifetime): what a holder that runs only now and then (lnswarmctl) asks.
pub fn in_window(cert_pem: &str) -> Result<bool, PkiError> {
    let (nb, na) = validity_of(cert_pem)?;
    Ok(unix_now() >= due_at(nb, na, RENEW_WINDOW.0))
}

impl Renewal {
    /// Renews for as long as `stop` is not cancelled. Returns only when it is, or
    /// when renewal can no longer succeed.
    pub async fn run(self, stop: CancellationToken) -> Result<(), RenewalStopped> {
        let id = subject_of(&self.identity.cert_pem())
            .ok()
            .and_then(|s| s.common_name)
            .unwrap_or_default();
        let mut retry = RETRY.0;
        loop {
            let (nb, na) = validity_of(&self.identity.cert_pem())
                .map_err(|e| RenewalStopped::Refused(e.to_string()))?;
            let point = rand::thread_rng().gen_range(RENEW_WINDOW.0..RENEW_WINDOW.1);
            let wait = (due_at(nb, na, point) - unix_now()).max(0.0);
            let due = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
            loop {
                let probe = tokio::time::sleep(probe_every(nb, na));
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep_until(due) => break,
                    () = probe, if self.trust.is_some() => {
                        if self.follow_roots().await {
                            let spread = rotation_spread(nb, na).mul_f64(rand::thread_rng().gen_range(0.0..1.0));
                            info!(%id, role = %self.role, "the cluster's root CA is rotating: renewing early");
                            tokio::select! {
                                () = stop.cancelled() => return Ok(()),
                                () = tokio::time::sleep(spread) => break,
                            }
                        }
                    }
                }
            }
            // Retry until it works or the certificate runs out.
            loop {
                match self.renew_now().await {
                    Ok(not_after) => {
                        info!(%id, role = %self.role, not_after, "certificate renewed");
                        retry = RETRY.0;
                        break;
                    }
                    Err(RenewalError::Refused(why)) => return Err(RenewalStopped::Refused(why)),
                    Err(_) if unix_now() >= na as f64 => return Err(RenewalStopped::Expired),
                    Err(e) => {
                        let left = (na as f64 - unix_now()).max(0.0);
                        let delay = retry.min(Duration::from_secs_f64(left / 4.0 + 0.1));
                        warn!(%id, error = %e, retry_in_ms = delay.as_millis() as u64, "certificate renewal failed; keeping the current certificate");
                        tokio::select! {
                            () = stop.cancelled() => return Ok(()),
                            () = tokio::time::sleep(delay) => {}
                        }
                        retry = (retry * 2).min(RETRY.1);
                    }
                }
            }
        }
    }

    /// Trusts the roots the cluster trusts now; whether this holder's certificate
    /// is not from the root that signs now (so it should renew).
    async fn follow_roots(&self) -> bool {
        let Some(trust) = &self.trust else {
            return false;
        };
        let state = match (trust.probe)().await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "could not ask the CA for its roots");
                return false;
            }
        };
        self.trust_roots(&state.trust_bundle);
        !state.signing_root.is_empty() && !issued_by(&self.identity.cert_pem(), &state.signing_root)
    }

    /// Trusts exactly `bundle` from now on (and writes it, if this holder keeps
    /// its roots in a file of their own).
    fn trust_roots(&self, bundle: &str) {
        let Some(trust) = &self.trust else { return };
        if bundle.is_empty() {
            return;
        }
        match trust.verifier.set_roots(bundle) {
            Ok(true) => {
                info!(role = %self.role, "the trusted root CAs changed");
                if let Some(file) = &trust.ca_file {
                    if let Err(e) = crate::cert_files::write_private(file, bundle.as_bytes()) {
                        warn!(error = %e, file = %file.display(), "writing the trusted roots");
                    }
                }
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "the CA's roots do not parse"),
        }
    }

    /// One renewal: a new key, the CA's certificate for it, written, then used.
    /// Returns the new certificate's expiry (Unix seconds).
    pub async fn renew_now(&self) -> Result<i64, RenewalError> {
        let old = subject_of(&self.identity.cert_pem())?;
        let fresh = new_key_and_csr(old.common_name.as_deref().unwrap_or(""), Some(self.role))?;
        let mut renewed = (self.request)(fresh.csr_pem).await?;
        renewed.key_pem = fresh.key_pem;
        let new = subject_of(&renewed.cert_pem)?;
        if new.common_name != old.common_name
            || new.organizational_units != old.organizational_units
        {
            return Err(RenewalError::Refused(format!(
                "the CA answered with a certificate for {:?}, not {:?}",
                new.common_name, old.common_name
            )));
        }
        // Checked before anything is written: the pair must match.
        LiveIdentity::new(&renewed.cert_pem, &renewed.key_pem)
            .map_err(|e| RenewalError::Failed(e.to_string()))?;
        (self.save)(&renewed).map_err(|e| RenewalError::Failed(format!("writing it: {e}")))?;
        self.identity
            .replace(&renewed.cert_pem, &renewed.key_pem)
            .map_err(|e| RenewalError::Failed(e.to_string()))?;
        self.trust_roots(&renewed.ca_pem);
        Ok(validity_of(&renewed.cert_pem)?.1)
    }
}

/// A [`RequestFn`] that renews through the CA service of the first manager that
/// answers (of those `managers` names at the time), presenting the certificate
/// `tls` holds. `lease_epoch` is a hosted node's (the CA refuses a stale copy); 0
/// for everyone else.
pub fn through_managers(
    managers: impl Fn() -> Vec<String> + Send + Sync + 'static,
    tls: ClientTls,
    lease_epoch: u64,
) -> RequestFn {
    Box::new(move |csr| {
        let (managers, tls) = (managers(), tls.clone());
        Box::pin(async move { request_from_managers(&managers, &tls, csr, lease_epoch).await })
    })
}

/// A [`ProbeFn`] that asks the CA service of the first manager that answers, on
/// one connection per manager kept between checks (a check is frequent: a new
/// TLS handshake each time would cost every holder and the managers).
pub fn probe_managers(
    managers: impl Fn() -> Vec<String> + Send + Sync + 'static,
    tls: ClientTls,
) -> ProbeFn {
    let channels: Arc<
        std::sync::Mutex<std::collections::HashMap<String, tonic::transport::Channel>>,
    > = Arc::default();
    Box::new(move || {
        let (managers, tls, channels) = (managers(), tls.clone(), channels.clone());
        Box::pin(async move {
            let mut last = RenewalError::Failed("no manager address known".into());
            for addr in &managers {
                let cached = channels.lock().expect("probe channels").get(addr).cloned();
                let channel = match cached {
                    Some(c) => c,
                    None => match tls::connect_lazy(addr, &tls, Role::Manager) {
                        Ok(c) => {
                            let mut all = channels.lock().expect("probe channels");
                            // Addresses come and go with the manager list.
                            all.retain(|a, _| managers.contains(a));
                            all.insert(addr.clone(), c.clone());
                            c
                        }
                        Err(e) => {
                            last = RenewalError::Failed(e.to_string());
                            continue;
                        }
                    },
                };
                let mut req = tonic::Request::new(GetRootCaCertificateRequest {});
                req.set_timeout(Duration::from_secs(10));
                match CaClient::new(channel).get_root_ca_certificate(req).await {
                    Ok(answer) => {
                        let a = answer.into_inner();
                        let text = |b: Vec<u8>| String::from_utf8(b).unwrap_or_default();
                        let certificate = text(a.certificate);
                        let signing_root = match text(a.signing_root) {
                            s if s.is_empty() => certificate.clone(),
                            s => s,
                        };
                        let trust_bundle = match text(a.trust_bundle) {
                            s if s.is_empty() => certificate,
                            s => s,
                        };
                        return Ok(RootState {
                            signing_root,
                            trust_bundle,
                        });
                    }
                    Err(status) => last = RenewalError::from(status),
                }
            }
            Err(last)
        })
    })
}

async fn request_from_managers(
    managers: &[String],
    tls: &ClientTls,
    csr_pem: String,
    lease_epoch: u64,
) -> Result<Renewed, RenewalError> {
    let mut last = RenewalError::Failed("no manager address known".into());
    for addr in managers {
        let channel = match tls::connect(addr, tls, Role::Manager).await {
            Ok(c) => c,
            Err(e) => {
                last = RenewalError::Failed(e.to_string());
                continue;
            }
        };
        let mut req = tonic::Request::new(IssueNodeCertificateRequest {
            csr: csr_pem.clone().into_bytes(),
            token: String::new(),
            addr: String::new(),
            lease_epoch,
        });
        req.set_timeout(Duration::from_secs(10));
        match CaClient::new(channel).issue_node_certificate(req).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                return Ok(Renewed {
                    cert_pem: String::from_utf8(answer.certificate)
                        .map_err(|_| RenewalError::Failed("certificate is not PEM".into()))?,
                    key_pem: String::new(),
                    ca_pem: String::from_utf8(answer.root_ca)
                        .map_err(|_| RenewalError::Failed("CA is not PEM".into()))?,
                });
            }
            Err(status) => match RenewalError::from(status) {
                refused @ RenewalError::Refused(_) => return Err(refused),
                other => last = other,
            },
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_inside_the_window() {
        assert_eq!(due_at(1000, 2000, 0.5), 1500.0);
        assert_eq!(due_at(1000, 2000, 0.8), 1800.0);
        // A certificate that ends before it starts is due at once.
        assert_eq!(due_at(1000, 900, 0.5), 1000.0);
    }
}
