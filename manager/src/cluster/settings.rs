//! Cluster settings and their bounds. An update is checked as a whole against the
//! settings it would produce, before anything is stored: one out-of-range value
//! refuses the whole update with a message naming the setting and its range, so no
//! stored combination can make a reader overflow (a heartbeat TTL of 10^13 ms times
//! 4·10^9 once panicked every Session handler).

use std::time::Duration;

use lnswarm_common::api::{
    chain_source::Source, BitcoindRpc, ChainSource, ClusterSettings, ClusterSettingsUpdate,
};

/// Networks a hosted node can run on (ldk-node's names).
pub const NETWORKS: &[&str] = &["bitcoin", "testnet", "testnet4", "signet", "regtest"];

pub const HEARTBEAT_PERIOD_MS: (u64, u64) = (100, 600_000);
pub const HEARTBEAT_GRACE: (u32, u32) = (2, 100);
/// The heartbeat TTL (period × grace) is at most an hour: an agent that is gone is
/// noticed within the hour, and every reader's arithmetic stays small.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Certificate lifetimes: short enough for tests at the floor (renewal then runs
/// every few seconds), at most five years.
pub const CERT_EXPIRY_SECS: (u64, u64) = (10, 5 * 365 * 86_400);
pub const DEFAULT_CERT_EXPIRY: Duration = Duration::from_secs(90 * 86_400);
pub const DEFAULT_DEVICE_CERT_EXPIRY: Duration = Duration::from_secs(365 * 86_400);
/// Webhook delivery: attempts per event, the first retry's wait (it doubles after
/// each failure; 1 s is the floor tests use), and one attempt's timeout.
pub const WEBHOOK_ATTEMPTS: (u32, u32) = (1, 20);
pub const WEBHOOK_FIRST_RETRY_SECS: (u64, u64) = (1, 86_400);
pub const WEBHOOK_TIMEOUT_SECS: (u64, u64) = (1, 300);
/// How long a pairing request waits for the owner's answer (1 s is for tests).
pub const PAIRING_TTL_SECS: (u64, u64) = (1, 3_600);
/// How long a hosted node without channels may sit idle before it is stopped (5 s
/// is for tests; a node re-syncs its wallet when it starts again).
pub const IDLE_STOP_SECS: (u64, u64) = (5, 30 * 86_400);
/// The share of hosted nodes a rolling upgrade restarts at once, percent.
pub const UPGRADE_MAX_SHARE_PERCENT: (u32, u32) = (1, 100);
const MAX_HOST: usize = 253;
const MAX_CREDENTIAL: usize = 256;
const MAX_URL: usize = 2048;

/// Default settings of a new cluster.
pub fn defaults() -> ClusterSettings {
    ClusterSettings {
        heartbeat_period_ms: 5_000,
        heartbeat_grace_multiplier: 3,
        network: "regtest".into(),
        chain_source: None,
        require_invite_code: false,
        autolock: false,
        open_registration: false,
        cert_expiry_secs: DEFAULT_CERT_EXPIRY.as_secs(),
        device_cert_expiry_secs: DEFAULT_DEVICE_CERT_EXPIRY.as_secs(),
        webhook_loopback_http: false,
        webhook_attempts: 5,
        webhook_first_retry_secs: 60,
        webhook_timeout_secs: 30,
        pairing_ttl_secs: 300,
        idle_stop_secs: 3_600,
        upgrade_max_share_percent: 10,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidSetting(pub String);

fn invalid(msg: impl Into<String>) -> InvalidSetting {
    InvalidSetting(msg.into())
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: T,
    (lo, hi): (T, T),
    unit: &str,
) -> Result<T, InvalidSetting> {
    if v < lo || v > hi {
        return Err(invalid(format!(
            "{name} must be between {lo} and {hi}{unit}, not {v}"
        )));
    }
    Ok(v)
}

/// The settings `update` makes of `current`, or why it is refused.
pub fn apply(
    current: &ClusterSettings,
    update: &ClusterSettingsUpdate,
) -> Result<ClusterSettings, InvalidSetting> {
    let mut next = current.clone();
    if let Some(p) = update.heartbeat_period_ms {
        next.heartbeat_period_ms = in_range("heartbeat period", p, HEARTBEAT_PERIOD_MS, " ms")?;
    }
    if let Some(g) = update.heartbeat_grace_multiplier {
        next.heartbeat_grace_multiplier = in_range("heartbeat grace", g, HEARTBEAT_GRACE, "")?;
    }
    let ttl_ms = next
        .heartbeat_period_ms
        .saturating_mul(u64::from(next.heartbeat_grace_multiplier));
    if ttl_ms > MAX_TTL.as_millis() as u64 {
        return Err(invalid(format!(
            "heartbeat period × grace is {ttl_ms} ms; it must be at most {} ms (an hour)",
            MAX_TTL.as_millis()
        )));
    }
    if let Some(n) = &update.network {
        if !NETWORKS.contains(&n.as_str()) {
            return Err(invalid(format!(
                "network must be one of {}, not {:?}",
                NETWORKS.join(", "),
                truncated(n)
            )));
        }
        next.network = n.clone();
    }
    if let Some(source) = &update.chain_source {
        check_chain_source(source)?;
        next.chain_source = Some(source.clone());
    }
    if let Some(r) = update.require_invite_code {
        next.require_invite_code = r;
    }
    if let Some(a) = update.autolock {
        next.autolock = a;
    }
    if let Some(o) = update.open_registration {
        next.open_registration = o;
    }
    if let Some(e) = update.cert_expiry_secs {
        next.cert_expiry_secs = in_range("certificate expiry", e, CERT_EXPIRY_SECS, " s")?;
    }
    if let Some(e) = update.device_cert_expiry_secs {
        next.device_cert_expiry_secs =
            in_range("device certificate expiry", e, CERT_EXPIRY_SECS, " s")?;
    }
    if let Some(h) = update.webhook_loopback_http {
        next.webhook_loopback_http = h;
    }
    if let Some(a) = update.webhook_attempts {
        next.webhook_attempts = in_range("webhook attempts", a, WEBHOOK_ATTEMPTS, "")?;
    }
    if let Some(r) = update.webhook_first_retry_secs {
        next.webhook_first_retry_secs =
            in_range("webhook first retry", r, WEBHOOK_FIRST_RETRY_SECS, " s")?;
    }
    if let Some(t) = update.webhook_timeout_secs {
        next.webhook_timeout_secs = in_range("webhook timeout", t, WEBHOOK_TIMEOUT_SECS, " s")?;
    }
    if let Some(t) = update.idle_stop_secs {
        next.idle_stop_secs = in_range("idle stop", t, IDLE_STOP_SECS, " s")?;
    }
    if let Some(p) = update.upgrade_max_share_percent {
        next.upgrade_max_share_percent =
            in_range("upgrade max share", p, UPGRADE_MAX_SHARE_PERCENT, " %")?;
    }
    if let Some(t) = update.pairing_ttl_secs {
        next.pairing_ttl_secs = in_range("pairing TTL", t, PAIRING_TTL_SECS, " s")?;
    }
    Ok(next)
}

fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

fn check_chain_source(source: &ChainSource) -> Result<(), InvalidSetting> {
    match &source.source {
        None => Err(invalid(
            "a chain source needs bitcoind RPC, Esplora or Electrum",
        )),
        Some(Source::BitcoindRpc(rpc)) => check_bitcoind(rpc),
        Some(Source::EsploraUrl(url)) => check_url("Esplora URL", url, &["http", "https"]),
        Some(Source::ElectrumUrl(url)) => check_url("Electrum URL", url, &["tcp", "ssl"]),
    }
}

fn check_bitcoind(rpc: &BitcoindRpc) -> Result<(), InvalidSetting> {
    let host_ok = !rpc.host.is_empty()
        && rpc.host.len() <= MAX_HOST
        && rpc
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !host_ok {
        return Err(invalid(format!(
            "bitcoind RPC host must be a host name or IP address of at most {MAX_HOST} characters"
        )));
    }
    if rpc.port == 0 || rpc.port > 65_535 {
        return Err(invalid("bitcoind RPC port must be between 1 and 65535"));
    }
    if rpc.user.is_empty() || rpc.user.len() > MAX_CREDENTIAL || rpc.password.len() > MAX_CREDENTIAL
    {
        return Err(invalid(format!(
            "bitcoind RPC user (not empty) and password are at most {MAX_CREDENTIAL} bytes"
        )));
    }
    if rpc.user.contains(':') || rpc.user.chars().any(char::is_control) {
        return Err(invalid(
            "bitcoind RPC user may not hold ':' or control characters",
        ));
    }
    Ok(())
}

fn check_url(name: &str, url: &str, schemes: &[&str]) -> Result<(), InvalidSetting> {
    let scheme_ok = url
        .split_once("://")
        .is_some_and(|(s, rest)| schemes.contains(&s) && !rest.is_empty());
    if url.len() > MAX_URL || !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(format!(
            "{name} must be a {} URL of at most {MAX_URL} characters",
            schemes.join(" or ")
        )));
    }
    Ok(())
}

/// Settings as stored, made safe to compute with: a record written before these
/// bounds existed (or by hand) is clamped into them rather than trusted.
pub fn effective(settings: Option<&ClusterSettings>) -> ClusterSettings {
    let mut s = settings.cloned().unwrap_or_else(defaults);
    let d = defaults();
    if s.heartbeat_period_ms == 0 {
        s.heartbeat_period_ms = d.heartbeat_period_ms;
    }
    if s.heartbeat_grace_multiplier == 0 {
        s.heartbeat_grace_multiplier = d.heartbeat_grace_multiplier;
    }
    s.heartbeat_period_ms = s
        .heartbeat_period_ms
        .clamp(HEARTBEAT_PERIOD_MS.0, HEARTBEAT_PERIOD_MS.1);
    s.heartbeat_grace_multiplier = s
        .heartbeat_grace_multiplier
        .clamp(HEARTBEAT_GRACE.0, HEARTBEAT_GRACE.1);
    let max_grace = (MAX_TTL.as_millis() as u64 / s.heartbeat_period_ms).max(1) as u32;
    s.heartbeat_grace_multiplier = s.heartbeat_grace_multiplier.min(max_grace);
    // Clusters from before these settings store 0.
    for (v, default) in [
        (&mut s.cert_expiry_secs, d.cert_expiry_secs),
        (&mut s.device_cert_expiry_secs, d.device_cert_expiry_secs),
    ] {
        *v = if *v == 0 {
            default
        } else {
            (*v).clamp(CERT_EXPIRY_SECS.0, CERT_EXPIRY_SECS.1)
        };
    }
    s.upgrade_max_share_percent = match s.upgrade_max_share_percent {
        0 => d.upgrade_max_share_percent,
        p => p.clamp(UPGRADE_MAX_SHARE_PERCENT.0, UPGRADE_MAX_SHARE_PERCENT.1),
    };
    s.webhook_attempts = match s.webhook_attempts {
        0 => d.webhook_attempts,
        a => a.clamp(WEBHOOK_ATTEMPTS.0, WEBHOOK_ATTEMPTS.1),
    };
    for (v, default, (lo, hi)) in [
        (
            &mut s.webhook_first_retry_secs,
            d.webhook_first_retry_secs,
            WEBHOOK_FIRST_RETRY_SECS,
        ),
        (
            &mut s.webhook_timeout_secs,
            d.webhook_timeout_secs,
            WEBHOOK_TIMEOUT_SECS,
        ),
        (
            &mut s.pairing_ttl_secs,
            d.pairing_ttl_secs,
            PAIRING_TTL_SECS,
        ),
        (&mut s.idle_stop_secs, d.idle_stop_secs, IDLE_STOP_SECS),
    ] {
        *v = if *v == 0 { default } else { (*v).clamp(lo, hi) };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> ClusterSettingsUpdate {
        ClusterSettingsUpdate::default()
    }

    #[test]
    fn bounds_are_enforced_and_nothing_changes_on_refusal() {
        let d = defaults();
        let ok = apply(
            &d,
            &ClusterSettingsUpdate {
                heartbeat_period_ms: Some(1_000),
                heartbeat_grace_multiplier: Some(5),
                network: Some("signet".into()),
                ..update()
            },
        )
        .unwrap();
        assert_eq!(
            (ok.heartbeat_period_ms, ok.heartbeat_grace_multiplier),
            (1_000, 5)
        );
        assert_eq!(ok.network, "signet");
        assert!(!ok.require_invite_code, "untouched fields keep their value");

        for bad in [
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(0),
                ..update()
            },
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(99),
                ..update()
            },
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(10_000_000_000_000),
                ..update()
            },
            ClusterSettingsUpdate {
                heartbeat_grace_multiplier: Some(4_294_967_295),
                ..update()
            },
            ClusterSettingsUpdate {
                heartbeat_grace_multiplier: Some(1),
                ..update()
            },
            ClusterSettingsUpdate {
                heartbeat_period_ms: Some(600_000),
                heartbeat_grace_multiplier: Some(100),
                ..update()
            },
            ClusterSettingsUpdate {
                network: Some("bogus".into()),
                ..update()
            },
            ClusterSettingsUpdate {
                cert_expiry_secs: Some(9),
                ..update()
            },
            ClusterSettingsUpdate {
                device_cert_expiry_secs: Some(u64::MAX),
                ..update()
            },
            ClusterSettingsUpdate {
                network: Some("mainnet".into()),
                ..update()
            },
            ClusterSettingsUpdate {
                network: Some("x".repeat(4 << 20)),
                ..update()
            },
            ClusterSettingsUpdate {
                chain_source: Some(ChainSource {
                    source: Some(Source::EsploraUrl("ftp://x".into())),
                }),
                ..update()
            },
            ClusterSettingsUpdate {
                chain_source: Some(ChainSource {
                    source: Some(Source::BitcoindRpc(BitcoindRpc {
                        host: "h".repeat(300),
                        port: 1,
                        user: "u".into(),
                        password: "p".into(),
                    })),
                }),
                ..update()
            },
        ] {
            assert!(apply(&d, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stored_junk_is_clamped_for_readers() {
        let junk = ClusterSettings {
            heartbeat_period_ms: 10_000_000_000_000,
            heartbeat_grace_multiplier: u32::MAX,
            ..defaults()
        };
        let e = effective(Some(&junk));
        assert!(e.heartbeat_period_ms <= HEARTBEAT_PERIOD_MS.1);
        assert!(
            Duration::from_millis(e.heartbeat_period_ms) * e.heartbeat_grace_multiplier <= MAX_TTL
        );
    }
}
