//! Rate limits on the calls anyone may make without a certificate (GetChallenge,
//! Register, Recover, Unlock): one budget per source address and one for all
//! callers together, so one caller cannot crowd out the rest, and all of them
//! together cannot swamp the managers. Refused calls get RESOURCE_EXHAUSTED with the
//! time to wait. The budgets are GCRA buckets (`governor`).

use std::{net::IpAddr, num::NonZeroU32};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota,
};
use tonic::Status;

/// Sizes of the budgets: a steady rate per second and a burst.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    pub per_addr_per_sec: u32,
    pub per_addr_burst: u32,
    pub global_per_sec: u32,
    pub global_burst: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            per_addr_per_sec: 20,
            per_addr_burst: 100,
            global_per_sec: 200,
            global_burst: 1_000,
        }
    }
}

/// Distinct addresses remembered before idle ones are dropped.
const PRUNE_AT: usize = 100_000;

pub struct AnonymousLimits {
    per_addr: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
    Quota::per_second(nz(per_sec)).allow_burst(nz(burst))
}

impl AnonymousLimits {
    pub fn new(config: LimitConfig) -> Self {
        AnonymousLimits {
            per_addr: DefaultKeyedRateLimiter::keyed(quota(
                config.per_addr_per_sec,
                config.per_addr_burst,
            )),
            global: DefaultDirectRateLimiter::direct(quota(
                config.global_per_sec,
                config.global_burst,
            )),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one call from `addr`'s budget and the global one, or says how long to
    /// wait.
    pub fn check(&self, addr: IpAddr) -> Result<(), Status> {
        if self.per_addr.len() > PRUNE_AT {
            self.per_addr.retain_recent();
        }
        if let Err(not_until) = self.per_addr.check_key(&addr) {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(Status::resource_exhausted(format!(
                "too many calls without a certificate from {addr}; retry in {} ms",
                wait.as_millis().max(1)
            )));
        }
        if let Err(not_until) = self.global.check() {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(Status::resource_exhausted(format!(
                "too many calls without a certificate; retry in {} ms",
                wait.as_millis().max(1)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_over_its_budget_does_not_stop_another() {
        let l = AnonymousLimits::new(LimitConfig {
            per_addr_per_sec: 1,
            per_addr_burst: 3,
            global_per_sec: 1,
            global_burst: 10,
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            l.check(a).unwrap();
        }
        let err = l.check(a).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        l.check(b).expect("another address is served");
    }
}
