//! Per-client rate limiting of the client API (web chat and gRPC `ClientService` alike): a token
//! bucket per client id (`governor`'s keyed GCRA limiter), in this process's memory. Several
//! instances each apply the limit (a client behind a balancer gets up to N times the rate); a
//! shared limiter (PostgreSQL or Redis) is the upgrade when that matters.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use platform::settings::{Env, Kind, Setting, SettingError};

pub static RATE_LIMIT_BURST: Setting = Setting::new(
    "INBOX_RATE_LIMIT_BURST",
    Kind::Int,
    "30",
    "client writes (web chat, gRPC, Telegram, email) and manager actions: requests one caller may make in a burst",
);
pub static RATE_LIMIT_PER_SECOND: Setting = Setting::new(
    "INBOX_RATE_LIMIT_PER_SECOND",
    Kind::Text,
    "5",
    "client writes (web chat, gRPC, Telegram, email) and manager actions: requests per second refilled after the burst (0: no limit)",
);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests a client may make in a burst.
    pub burst: u32,
    /// Requests per second refilled after the burst is spent; 0 turns limiting off.
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 30,
            per_second: 5.0,
        }
    }
}

impl RateLimit {
    pub fn from_env(env: &Env) -> Result<Self, SettingError> {
        Ok(Self {
            burst: env.parse(&RATE_LIMIT_BURST)?,
            per_second: env.parse(&RATE_LIMIT_PER_SECOND)?,
        })
    }

    /// The limit as a quota; None when limiting is off.
    fn quota(self) -> Option<Quota> {
        if !(self.per_second > 0.0 && self.per_second.is_finite()) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period).map(|q| q.allow_burst(burst))
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
}

/// Clients kept before the idle ones (bucket full again) are swept, bounding memory.
const SWEEP_ABOVE: usize = 10_000;

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limiter: limit
                .quota()
                .map(|q| Arc::new(DefaultKeyedRateLimiter::keyed(q))),
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until the next one is allowed.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > SWEEP_ABOVE {
            limiter.retain_recent();
        }
        limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill_and_others_are_unaffected() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 3,
            per_second: 2.0,
        });
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        let wait = limiter.check("a").expect_err("burst spent");
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert_eq!(limiter.check("b"), Ok(()), "buckets are per client");
    }

    #[test]
    fn a_rate_of_zero_turns_limiting_off() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 1,
            per_second: 0.0,
        });
        for _ in 0..100 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
    }
}
