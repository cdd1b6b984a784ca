//! Per-source-address connection limits.
//!
//! An IPv4 address counts as one source; an IPv6 address counts by its
//! /64 prefix, the smallest block a single host is usually given (one
//! host can pick any address inside its /64). An IPv4 address mapped into
//! IPv6 (`::ffff:a.b.c.d`) counts as that IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The source a connection is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// One IPv4 address.
    V4([u8; 4]),
    /// The /64 prefix of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl Source {
    /// The source `ip` counts against.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Self::V6Prefix(prefix)
                }
            },
        }
    }
}

/// Open connections per source, with a limit.
#[derive(Debug)]
pub(crate) struct SourceLimiter {
    max_per_source: usize,
    open: Mutex<HashMap<Source, usize>>,
}

/// Why a connection was refused: its source is at the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceFull {
    /// Connections open from that source.
    pub(crate) open: usize,
    /// The limit.
    pub(crate) max: usize,
}

impl SourceLimiter {
    pub(crate) fn new(max_per_source: usize) -> Self {
        Self {
            max_per_source,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Source, usize>> {
        // Every update is one insert, increment or removal: the map stays
        // consistent even if a holder panicked.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more connection from `ip`, or refuses it when its source
    /// already has the maximum open. The slot is given back when the
    /// returned guard is dropped.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<SourceSlot, SourceFull> {
        let source = Source::of(ip);
        let mut open = self.lock();
        let count = open.entry(source).or_insert(0);
        if *count >= self.max_per_source {
            return Err(SourceFull {
                open: *count,
                max: self.max_per_source,
            });
        }
        *count += 1;
        Ok(SourceSlot {
            limiter: self.clone(),
            source,
        })
    }

    /// Connections open from the source of `ip`.
    #[cfg(test)]
    pub(crate) fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().get(&Source::of(ip)).copied().unwrap_or(0)
    }

    fn release(&self, source: Source) {
        let mut open = self.lock();
        if let Some(count) = open.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&source);
            }
        }
    }
}

/// One connection counted against its source; released on drop.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    limiter: Arc<SourceLimiter>,
    source: Source,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.limiter.release(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:127.0.0.2")),
            Source::of(ip("127.0.0.2"))
        );
        assert_ne!(Source::of(ip("127.0.0.1")), Source::of(ip("127.0.0.2")));
    }

    #[test]
    fn each_source_has_its_own_limit_and_slots_come_back() {
        let limiter = Arc::new(SourceLimiter::new(2));
        let a = limiter.try_acquire(ip("127.0.0.2")).unwrap();
        let _b = limiter.try_acquire(ip("127.0.0.2")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("127.0.0.2")).unwrap_err(),
            SourceFull { open: 2, max: 2 }
        );
        // Another address is not affected.
        let _c = limiter.try_acquire(ip("127.0.0.1")).unwrap();
        assert_eq!(limiter.open_from(ip("127.0.0.2")), 2);
        drop(a);
        assert_eq!(limiter.open_from(ip("127.0.0.2")), 1);
        let _d = limiter.try_acquire(ip("127.0.0.2")).unwrap();
        drop(_d);
        drop(_b);
        drop(_c);
        assert!(limiter.lock().is_empty(), "nothing left behind");
    }
}
