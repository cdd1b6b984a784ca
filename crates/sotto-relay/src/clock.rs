//! Wall-clock time as the relay sees it: when envelopes expire.
//!
//! The relay needs the time for one thing only, expiring queued envelopes
//! (docs/relay.md §6). The server reads it through [`Clock`], so tests run
//! on a clock they move by hand instead of sleeping, and storage methods
//! take the current [`UnixTime`] as an argument instead of reading a clock
//! themselves.

use std::time::{Duration, SystemTime};

/// Seconds in the unit an envelope's expiry is stored in.
pub const SECONDS_PER_HOUR: u64 = 3600;

/// A point in time: whole seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(u64);

impl UnixTime {
    /// The time `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs)
    }

    /// Seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0
    }

    /// The system's current time (the epoch itself if the system clock is
    /// set before it).
    pub fn now() -> Self {
        Self(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    /// This time plus `duration`, saturating at the largest time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration.as_secs()))
    }

    /// The hours since the epoch that have fully begun: `secs / 3600`,
    /// rounded down.
    pub const fn hour(self) -> u64 {
        self.0 / SECONDS_PER_HOUR
    }

    /// `secs / 3600`, rounded up: the first hour boundary at or after this
    /// time.
    pub const fn hour_rounded_up(self) -> u64 {
        self.0.div_ceil(SECONDS_PER_HOUR)
    }
}

/// Where the relay gets the current time from.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The operating system's wall clock ([`UnixTime::now`]); the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_round_down_and_up_at_the_boundary() {
        assert_eq!(UnixTime::from_secs(0).hour(), 0);
        assert_eq!(UnixTime::from_secs(0).hour_rounded_up(), 0);
        assert_eq!(UnixTime::from_secs(3599).hour(), 0);
        assert_eq!(UnixTime::from_secs(3599).hour_rounded_up(), 1);
        assert_eq!(UnixTime::from_secs(3600).hour(), 1);
        assert_eq!(UnixTime::from_secs(3600).hour_rounded_up(), 1);
        assert_eq!(
            UnixTime::from_secs(u64::MAX).hour_rounded_up(),
            u64::MAX / 3600 + 1
        );
        assert_eq!(
            UnixTime::from_secs(u64::MAX - 5).saturating_add(Duration::from_secs(60)),
            UnixTime::from_secs(u64::MAX)
        );
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now() > UnixTime::from_secs(1_577_836_800));
    }
}
