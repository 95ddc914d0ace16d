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
    /// ...then stretched so the next heartbeat is due on a multiple of this on the
    /// leader's clock (zero: not aligned). See [`HeartbeatTiming::next_period`].
    pub heartbeat_slot: Duration,
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
            heartbeat_slot: Duration::from_millis(10),
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
    /// The timing the settings ask for, clamped into the settings' bounds: a value
    /// stored before those bounds existed can make no reader overflow.
    pub fn from_settings(settings: Option<&ClusterSettings>, config: &DispatcherConfig) -> Self {
        let Some(settings) = settings else {
            return HeartbeatTiming {
                period: config.default_period,
                grace_multiplier: config.default_grace_multiplier,
            };
        };
        let s = crate::cluster::settings::effective(Some(settings));
        HeartbeatTiming {
            period: Duration::from_millis(s.heartbeat_period_ms),
            grace_multiplier: s.heartbeat_grace_multiplier,
        }
    }

    /// How long after a heartbeat the session stays alive.
    pub fn ttl(&self) -> Duration {
        self.period
            .checked_mul(self.grace_multiplier)
            .unwrap_or(crate::cluster::settings::MAX_TTL)
    }

    /// The period to hand an agent at `now_ms` (Unix milliseconds): the period ±
    /// `jitter`, stretched by less than `slot` so that the next heartbeat is due on
    /// a multiple of `slot`.
    ///
    /// Jitter spreads agents over the period; the slots gather the beats due close
    /// together. The server then wakes once for the beats of a slot instead of
    /// once for each, and a wake-up costs about as much as the call it serves.
    pub fn next_period(&self, jitter: f64, slot: Duration, now_ms: u64) -> Duration {
        use rand::Rng;
        let f = if jitter > 0.0 {
            rand::thread_rng().gen_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        let period =
            Duration::try_from_secs_f64(self.period.as_secs_f64() * f).unwrap_or(self.period);
        let slot_ms = slot.as_millis() as u64;
        if slot_ms == 0 {
            return period;
        }
        let due_ms = now_ms + period.as_millis() as u64;
        Duration::from_millis(due_ms.div_ceil(slot_ms) * slot_ms - now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_heartbeat_is_due_on_a_slot_within_the_jitter() {
        let timing = HeartbeatTiming {
            period: Duration::from_secs(5),
            grace_multiplier: 3,
        };
        let slot = Duration::from_millis(10);
        for now_ms in [1_764_638_400_123, 1_764_638_400_130, 7] {
            for _ in 0..200 {
                let period = timing.next_period(0.1, slot, now_ms);
                assert_eq!((now_ms + period.as_millis() as u64) % 10, 0, "{period:?}");
                assert!(period >= Duration::from_millis(4_500), "{period:?}");
                assert!(period < Duration::from_millis(5_510), "{period:?}");
            }
        }
        let unaligned = timing.next_period(0.0, Duration::ZERO, 1_764_638_400_123);
        assert_eq!(unaligned, Duration::from_secs(5));
    }
}
