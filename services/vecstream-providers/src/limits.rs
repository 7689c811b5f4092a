//! Client-side limits of a remote provider: token buckets, backoff with jitter, a circuit
//! breaker. Pure state machines over an explicit clock, so their tests need no sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket that hands out reservations: `reserve(cost)` takes the cost now (the
/// level may go below zero) and says how long the caller must wait before its call, so
/// callers are served in order and a burst is spread at the configured rate.
#[derive(Debug)]
pub struct RateLimiter {
    /// Units per second; 0 = unlimited.
    rate: f64,
    /// Most units saved up while idle.
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `rate` units per second, bursts of up to `capacity`.
    pub fn new(rate: f64, capacity: f64, now: Instant) -> Self {
        let capacity = capacity.max(1.0);
        Self {
            rate,
            capacity,
            state: Mutex::new((capacity, now)),
        }
    }

    /// `per_second` requests per second, bursts of one second's worth.
    pub fn per_second(per_second: f64, now: Instant) -> Self {
        Self::new(per_second, per_second, now)
    }

    /// `per_minute` units per minute, bursts of one minute's worth.
    pub fn per_minute(per_minute: u64, now: Instant) -> Self {
        Self::new(per_minute as f64 / 60.0, per_minute as f64, now)
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate <= 0.0
    }

    /// Takes `cost` units and returns how long to wait before using them.
    pub fn reserve(&self, cost: f64, now: Instant) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (level, last) = *st;
        let refilled = (level + now.saturating_duration_since(last).as_secs_f64() * self.rate)
            .min(self.capacity);
        // A cost larger than the bucket still passes once the bucket is full.
        let cost = cost.min(self.capacity);
        let after = refilled - cost;
        *st = (after, now.max(last));
        if after >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-after / self.rate)
        }
    }
}

/// Exponential backoff with full jitter: attempt `n` waits a random time in
/// `[base/2, base]` where `base = initial * 2^n`, capped at `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry number `attempt` (0-based), with `jitter` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// A random number in `[0, 1)` from the OS.
    pub fn jitter() -> f64 {
        let mut b = [0u8; 4];
        if getrandom::fill(&mut b).is_err() {
            return 0.5;
        }
        f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
    }
}

/// A circuit breaker: `threshold` consecutive failures open it for `open_for`; then one
/// trial call is let through (half-open): success closes it, failure opens it again.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out since then.
    HalfOpen {
        since: Instant,
    },
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// May a call go now? `Err(wait)` while open (and while a trial call is out).
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut st = self.lock();
        match *st {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } if now >= until => {
                *st = BreakerState::HalfOpen { since: now };
                Ok(())
            }
            BreakerState::Open { until } => Err(until - now),
            // A trial that never reported (its caller was cancelled) does not hold the
            // circuit forever: another goes after `open_for`.
            BreakerState::HalfOpen { since } if now >= since + self.open_for => {
                *st = BreakerState::HalfOpen { since: now };
                Ok(())
            }
            BreakerState::HalfOpen { since } => Err(since + self.open_for - now),
        }
    }

    pub fn success(&self) {
        *self.lock() = BreakerState::Closed { failures: 0 };
    }

    /// Records a failed call; true when this failure opened the circuit.
    pub fn failure(&self, now: Instant) -> bool {
        let mut st = self.lock();
        let opens = match *st {
            BreakerState::Closed { failures } => failures + 1 >= self.threshold,
            BreakerState::HalfOpen { .. } => true,
            BreakerState::Open { .. } => false,
        };
        *st = if opens {
            BreakerState::Open {
                until: now + self.open_for,
            }
        } else if let BreakerState::Closed { failures } = *st {
            BreakerState::Closed {
                failures: failures + 1,
            }
        } else {
            *st
        };
        opens
    }

    /// Opens the circuit for `open_for` whatever its state (a refusal that will not pass by
    /// itself: a rejected key, an unknown model). True when it was not open already.
    pub fn trip(&self, now: Instant) -> bool {
        let mut st = self.lock();
        let was_open = matches!(*st, BreakerState::Open { until } if now < until);
        *st = BreakerState::Open {
            until: now + self.open_for,
        };
        !was_open
    }

    /// A trial call that ended neither in success nor in a failure (throttled): the circuit
    /// opens again rather than waiting for a report that will not come.
    pub fn settle_trial(&self, now: Instant) {
        let mut st = self.lock();
        if matches!(*st, BreakerState::HalfOpen { .. }) {
            *st = BreakerState::Open {
                until: now + self.open_for,
            };
        }
    }

    /// True while calls are refused.
    pub fn is_open(&self, now: Instant) -> bool {
        match *self.lock() {
            BreakerState::Open { until } => now < until,
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_spreads_a_burst_at_the_rate() {
        let t0 = Instant::now();
        let rl = RateLimiter::per_second(2.0, t0);
        // Two saved up, then one every half second.
        assert_eq!(rl.reserve(1.0, t0), Duration::ZERO);
        assert_eq!(rl.reserve(1.0, t0), Duration::ZERO);
        let third = rl.reserve(1.0, t0);
        let fourth = rl.reserve(1.0, t0);
        assert!((third.as_secs_f64() - 0.5).abs() < 1e-6, "{third:?}");
        assert!((fourth.as_secs_f64() - 1.0).abs() < 1e-6, "{fourth:?}");
        // A second later the debt is paid back by half.
        let later = rl.reserve(0.0, t0 + Duration::from_secs(1));
        assert_eq!(later, Duration::ZERO);
        assert!(RateLimiter::per_second(0.0, t0).is_unlimited());
    }

    #[test]
    fn tokens_per_minute_bucket_lets_a_large_call_through_when_full() {
        let t0 = Instant::now();
        let rl = RateLimiter::per_minute(600, t0);
        assert_eq!(
            rl.reserve(5_000.0, t0),
            Duration::ZERO,
            "capped at the bucket"
        );
        let wait = rl.reserve(100.0, t0);
        assert!((wait.as_secs_f64() - 10.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0, 0.999_999).as_millis(), 99);
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(10, 0.0), Duration::from_millis(500), "capped");
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_millis(500));
        let j = Backoff::jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_half_opens_once() {
        let t0 = Instant::now();
        let b = Breaker::new(3, Duration::from_secs(10));
        assert!(!b.failure(t0));
        b.success();
        assert!(!b.failure(t0));
        assert!(!b.failure(t0));
        assert!(b.failure(t0), "third consecutive failure opens");
        assert!(b.is_open(t0));
        assert_eq!(
            b.admit(t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Ok(()), "one trial call");
        assert!(b.admit(t1).is_err(), "only one while it is out");
        assert_eq!(
            b.admit(t1 + Duration::from_secs(10)),
            Ok(()),
            "a trial that never reported does not hold the circuit"
        );
        assert!(b.failure(t1), "a failed trial opens again");
        assert!(b.admit(t1 + Duration::from_secs(5)).is_err());
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(b.admit(t2), Ok(()));
        b.success();
        assert_eq!(b.admit(t2), Ok(()));
        assert!(!b.is_open(t2));
        assert!(b.trip(t2), "a refusal opens it at once");
        assert!(b.is_open(t2));
        let t3 = t2 + Duration::from_secs(10);
        assert_eq!(b.admit(t3), Ok(()));
        b.settle_trial(t3);
        assert!(b.is_open(t3), "a throttled trial opens it again");
    }
}
