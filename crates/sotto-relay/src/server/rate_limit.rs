//! Token buckets for the per-connection rate limit.

use std::time::{Duration, Instant};

/// Longest a single request is ever delayed.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A token bucket that may go into debt: a request always proceeds, after
/// the delay that pays its debt back at the refill rate. Delaying (instead
/// of refusing) means an over-eager client is slowed down, and because the
/// connection stops reading while it waits, TCP pushes back on the sender.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens, refilled at `per_second`.
    pub(crate) fn new(per_second: f64, burst: f64, now: Instant) -> Self {
        let capacity = burst.max(1.0);
        Self {
            capacity,
            tokens: capacity,
            per_second: per_second.max(f64::MIN_POSITIVE),
            last: now,
        }
    }

    /// Takes `cost` tokens (at most a full bucket's worth) and returns how
    /// long the caller must wait before going on.
    pub(crate) fn take(&mut self, cost: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.tokens -= cost.clamp(0.0, self.capacity);
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-self.tokens / self.per_second)
            .unwrap_or(MAX_DELAY)
            .min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_free_then_requests_are_spaced_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3.0, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take(1.0, t0), Duration::ZERO);
        }
        let wait = bucket.take(1.0, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        let wait = bucket.take(1.0, t0);
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        // A second later the debt is paid and 8 tokens are back (capped at 3).
        assert_eq!(
            bucket.take(1.0, t0 + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn one_huge_request_costs_at_most_a_full_bucket() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 100.0, t0);
        assert_eq!(bucket.take(1e12, t0), Duration::ZERO);
        let wait = bucket.take(50.0, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9);
    }
}
