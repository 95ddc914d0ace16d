//! The dispatcher's timings and batch limits. The heartbeat period and grace come from
//! the cluster settings (operators change them at run time); everything else has a
//! default here that tests and benchmarks may override.

use std::time::Duration;

use lnswarm_common::api::ClusterSettings;

/// Tunables of one dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Heartbeat period when the cluster settings name none.
    pub default_period: Duration,
    /// Heartbeat TTL is the period times this, when the settings name none.
    pub default_grace_multiplier: u32,
    /// Each period handed to an agent is the period ± this fraction.
    pub period_jitter: f64,
    /// After a leader change, how many TTLs (but at least `leader_change_grace_min`)
    /// an agent has to open a session before it is written DOWN (its status is
    /// UNKNOWN meanwhile): agents must first notice, back off and find the leader.
    pub leader_change_grace_ttls: u32,
    pub leader_change_grace_min: Duration,
    /// More than `max_registrations` sessions opened within `registration_window`
    /// by one agent are refused with UNAVAILABLE.
    pub max_registrations: usize,
    pub registration_window: Duration,
    /// Task status updates (and agent DOWN writes) are coalesced for this long, or
    /// until this many are pending, then written in one proposal.
    pub status_window: Duration,
    pub status_max_batch: usize,
    /// An Assignments stream waits this long after a change before building a
    /// message, so bursts share one message.
    pub assignments_quiet: Duration,
    /// Caps on one Assignments message (a message is cut at a store-index boundary,
    /// so a single change set may exceed them).
    pub assignments_max_items: usize,
    pub assignments_max_bytes: usize,
    /// How often the dispatcher re-reads the manager list for sessions.
    pub managers_refresh: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            default_period: Duration::from_secs(5),
            default_grace_multiplier: 3,
            period_jitter: 0.1,
            leader_change_grace_ttls: 3,
            leader_change_grace_min: Duration::from_secs(10),
            max_registrations: 3,
            registration_window: Duration::from_secs(8),
            status_window: Duration::from_millis(100),
            status_max_batch: 10_000,
            assignments_quiet: Duration::from_millis(100),
            assignments_max_items: 5_000,
            assignments_max_bytes: 2 * 1024 * 1024,
            managers_refresh: Duration::from_secs(5),
        }
    }
}

/// The heartbeat timing in force: period and TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatTiming {
    pub period: Duration,
    pub grace_multiplier: u32,
}

impl HeartbeatTiming {
    pub fn from_settings(settings: Option<&ClusterSettings>, config: &DispatcherConfig) -> Self {
        let period_ms = settings.map(|s| s.heartbeat_period_ms).unwrap_or(0);
        let grace = settings.map(|s| s.heartbeat_grace_multiplier).unwrap_or(0);
        HeartbeatTiming {
            period: if period_ms == 0 {
                config.default_period
            } else {
                Duration::from_millis(period_ms)
            },
            grace_multiplier: if grace == 0 {
                config.default_grace_multiplier
            } else {
                grace
            },
        }
    }

    /// How long after a heartbeat the session stays alive.
    pub fn ttl(&self) -> Duration {
        self.period * self.grace_multiplier
    }

    /// The period to hand an agent: the period ± `jitter`.
    pub fn jittered_period(&self, jitter: f64) -> Duration {
        use rand::Rng;
        let f = if jitter > 0.0 {
            rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        self.period.mul_f64(f)
    }
}
